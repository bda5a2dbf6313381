"""
What each attention head does with position, at and past the training length, and what it
learned about distance; the statistics, the kernel and the figures: docs/analysis.md.

    python scripts/analyze.py --out_dir=out/wikitext103/alibi
    python scripts/analyze.py --out_dir=out/alibi --lengths=512,2048,4096 --windows=8
    python scripts/analyze.py out/sweeps/demo          # every finished run below the directory

A hook on each layer's attention takes the q, k and positions (token index or learned clock) of
the model's own forward and recomputes softmax(pe.scores(q, k, pos, pos) + causal mask) in
float32, in blocks of queries. STATISTICS are per layer and head, a_ts the attention of query t
on key s, averaged over the windows and the queries t = 1 .. T-1.
"""

import itertools
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # repo root

import matplotlib

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.colors import LogNorm

from checkpoint import load_model
from configurator import UserError, check_at_least, check_choice, parse_args, run_cli
from data.prepare import SPLITS, PrepareError, write_json
from encoding import hp_dtype
from runtime import resolve_device
from scripts.eval_lengths import bucketed, cannot_run, load_split, position_edges
from scripts.plot import colours, log_length_axis, mark_training_lengths, run_label, save
from scripts.runs import train_state

DEFAULTS = dict(
    sweep="",  # a sweep directory (or give it as the bare argument): every finished run below it
    out_dir="",  # one run directory holding ckpt.pt
    lengths=(),  # e.g. --lengths=512,2048; empty: block_size x 1, 4, 8, at most max_length
    max_length=4096,  # cap of the default lengths (the analysis costs O(T^2) per head)
    windows=4,  # text windows per length (at least 2: the positional score compares pairs)
    split="val",  # val | test | train
    data_dir="",  # default: the data_dir the checkpoint was trained with
    device="auto",  # auto (cuda if available, else cpu), cpu, cuda, cuda:1, mps
    memory_budget_gb=0.5,  # bound on one block of queries' attention tensors
)

STATISTICS = {  # written into analysis.json
    "mean_distance": "sum_s a_ts (t - s), tokens",
    "entropy": "-sum_s a_ts ln a_ts, nats",
    "entropy_ratio": "entropy / ln(t + 1): 1 = uniform over the visible keys",
    "beyond_training": "attention on keys at distance >= block_size",  # distances never trained
    "positional_score": "1 - total variation between the rows of query t in two text windows",
    "sink_share": "attention on the window's first token",
}
LENGTH_MULTIPLIERS = (1, 4, 8)
MAP_SIZE = 256  # attention maps larger than this are averaged over squares of tokens


# -----------------------------------------------------------------------------
# the statistics of one layer


def kernel_is_bias(pe):
    """True when the positional part of the logit is pe.scores - q.k/sqrt(d) (a bias only)."""
    return pe.has_bias and not pe.has_rotate and not pe.explicit


@torch.no_grad()
def layer_statistics(pe, q, k, pos, block_size, budget_gb):
    """From q, k (N windows, H, T, d) and pos ((T,) or a clock (N|1, H|1, T), read by pe.scores
    only; distances are in tokens): each statistic (H,), kernel_sum (H, T) the positional logit
    summed per distance, map (H, m, m) the first window's attention over f x f squares (CPU)."""
    N, H, T, d = q.shape
    dev, acc = q.device, hp_dtype(q.device)
    # queries per block within the budget: scores() of a rotation makes ~d floats per (query,
    # key) pair (pair products), plus the logits, probabilities and masks
    qb = max(1, min(T, int(budget_gb * 2**30 // (N * H * T * 4 * (d + 16)))))
    qb = min(qb, pe.max_query_block or qb)
    tok = torch.arange(T, device=dev)
    sums = {name: torch.zeros(H, dtype=acc, device=dev) for name in STATISTICS}
    kernel_sum = torch.zeros(H, T, dtype=acc, device=dev)
    f = math.ceil(T / MAP_SIZE)  # map pooling factor
    m = math.ceil(T / f)
    att_map = torch.zeros(H, m, m, dtype=acc, device=dev)
    pairs = list(itertools.combinations(range(N), 2))
    for t0 in range(0, T, qb):
        t1 = min(T, t0 + qb)
        qs, ks = q[:, :, t0:t1], k[:, :, :t1]
        logits = pe.scores(qs, ks, pos[..., t0:t1], pos[..., :t1]).float()
        dist = tok[t0:t1, None] - tok[None, :t1]  # (b, t1): t - s in tokens
        seen = dist >= 0
        att = F.softmax(logits.masked_fill(~seen, float("-inf")), dim=-1)  # (N, H, b, t1)
        rows = (tok[t0:t1] >= 1).to(acc)  # query 0 sees only itself: left out
        entropy = -torch.special.xlogy(att, att).sum(-1).to(acc)  # (N, H, b); 0 ln 0 = 0
        per_row = {
            "mean_distance": (att * dist.clamp(min=0)).sum(-1),
            "entropy": entropy,
            "entropy_ratio": entropy / (tok[t0:t1] + 1).to(acc).log().clamp(min=1e-30),
            "beyond_training": (att * (dist >= block_size)).sum(-1),
            "sink_share": att[..., 0],
        }
        for name, v in per_row.items():
            sums[name] += (v.to(acc) * rows).sum((0, 2))
        for i, j in pairs:
            same = 1 - 0.5 * (att[i] - att[j]).abs().sum(-1)  # (H, b)
            sums["positional_score"] += (same.to(acc) * rows).sum(-1)
        if kernel_is_bias(pe):  # the positional part: the logit less the content q.k / sqrt(d)
            logits -= qs.float() @ ks.float().transpose(-2, -1) / math.sqrt(d)
        kernel_sum.index_add_(1, dist[seen], logits.sum(0)[:, seen].to(acc))
        # the first window's map: summed over f columns here, averaged over f rows below
        cols = F.pad(att[0], (0, m * f - t1)).view(H, t1 - t0, m, f).sum(-1).to(acc)
        att_map.index_add_(1, tok[t0:t1] // f, cols)
        del logits, att, per_row
    att_map /= torch.bincount(tok // f, minlength=m).to(acc)[None, :, None]
    n_rows = N * (T - 1)
    out = {name: (v / n_rows).cpu() for name, v in sums.items()}
    out["positional_score"] = sums["positional_score"].cpu() / (n_rows * (N - 1) / 2)
    out.update(kernel_sum=kernel_sum.cpu(), map=att_map.float().cpu())
    return out


class _LastLayerSeen(Exception):
    """Stops the forward at the last layer's hook: the logits (3.3 GB at 4 x 4096 GPT-2 tokens)."""


@torch.no_grad()
def analyze_length(model, idx, block_size, budget_gb):
    """Per layer, layer_statistics of the windows idx (N, T), from the q, k and positions the
    model's own forward gives that layer's attention (its inspect hook, removed afterwards)."""
    blocks, layers = model.transformer.h, []

    def record(q, k, pos, pe):
        layers.append(layer_statistics(pe, q, k, pos, block_size, budget_gb))
        if len(layers) == len(blocks):
            raise _LastLayerSeen

    try:
        for block in blocks:
            block.attn.inspect = record
        model(idx)
    except _LastLayerSeen:
        pass
    finally:
        for block in blocks:
            block.attn.inspect = None
    return layers


def bucket_kernel(kernel_sum, n_windows, edges):
    """Mean positional logit per distance bucket [a, b) of edges, (H, buckets): distance delta
    occurs in T - delta pairs of each window."""
    T = kernel_sum.size(-1)
    count = n_windows * (T - torch.arange(T, dtype=kernel_sum.dtype))
    return [bucketed(row, count, edges)[0] for row in kernel_sum]


# -----------------------------------------------------------------------------
# one run


def analyze_run(out_dir, cfg):
    """Analyse the checkpoint in out_dir at every length; write analysis.json and the per-run
    figures. Returns the analysis dict."""
    model, ckpt = load_model(out_dir, device=cfg["device"])
    margs, tcfg, n_win = ckpt["model_args"], ckpt.get("config", {}), cfg["windows"]
    L, encoding = margs["block_size"], margs.get("encoding")
    result = dict(
        encoding=encoding, encoding_kwargs=margs.get("encoding_kwargs") or {}, block_size=L,
        n_layer=margs["n_layer"], n_head=margs["n_head"], dataset=tcfg.get("dataset"),
        split=cfg["split"], windows=n_win, iter_num=ckpt.get("iter_num"), out_dir=out_dir,
        statistics=STATISTICS,
        kernel_definition="bias" if kernel_is_bias(model.pe[0]) else "logit", lengths=[],
    )  # fmt: skip
    lens = cfg["lengths"] or sorted({min(L * m, cfg["max_length"]) for m in LENGTH_MULTIPLIERS})
    _, data = load_split(cfg["data_dir"], cfg["split"], tcfg)
    print(f"{out_dir}: {encoding}, trained at {L}, {n_win} windows per length")
    done = {}  # length: per layer, the statistics, kernel sums and map
    for T in lens:
        rec, t0 = {"length": T}, time.time()
        result["lengths"].append(rec)
        reason = cannot_run(model, T, math.inf, encoding)  # positions past a table
        if not reason and n_win * T > len(data) - 1:  # the last token is only a target
            reason = f"the {cfg['split']} split has fewer than {n_win} windows of {T} tokens"
        if not reason:
            idx = torch.from_numpy(data[: n_win * T].astype(np.int64)).view(n_win, T)
            try:
                done[T] = analyze_length(model, idx.to(cfg["device"]), L, cfg["memory_budget_gb"])
            except ValueError as e:  # the model refuses this length
                reason = str(e)
        if reason:
            rec.update(skipped=True, reason=reason)
            print(f"  length {T:>6}: skipped ({reason})")
            continue
        stats = {name: [layer[name].tolist() for layer in done[T]] for name in STATISTICS}
        rec.update(skipped=False, **stats, elapsed_s=round(time.time() - t0, 2))  # [layer][head]
        ps = np.array(rec["positional_score"])
        print(
            f"  length {T:>6}: mean distance {np.mean(rec['mean_distance']):.1f}, beyond training"
            f" {np.mean(rec['beyond_training']):.3f}, positional score {ps.min():.2f}.."
            f"{ps.max():.2f} ({rec['elapsed_s']:.1f}s)"
        )
    if done:  # the kernel at the longest length
        T = max(done)
        edges = position_edges(T)
        values = [bucket_kernel(layer["kernel_sum"], n_win, edges) for layer in done[T]]
        result["kernel"] = dict(length=T, distance_edges=edges, values=values)  # [layer][head][b]
        plot_heads(result, out_dir)
        plot_maps(result, {T: [layer["map"] for layer in done[T]] for T in done}, out_dir)
        plot_kernel(result, out_dir)
    path = os.path.join(out_dir, "analysis.json")
    write_json(path, result, indent=1)
    print(f"wrote {path}")
    return result


# -----------------------------------------------------------------------------
# figures


def analysed(result):
    return [r for r in result["lengths"] if not r.get("skipped")]


def first_and_last(items):
    return [items[0], items[-1]] if len(items) > 1 else items


def title(result):
    kw = f" {result['encoding_kwargs']}" if result["encoding_kwargs"] else ""
    return f"{result['encoding']}{kw}, trained at L={result['block_size']} ({result['dataset']})"


def style(ax, title, xlabel, ylabel=None, size=6):
    ax.set_title(title, fontsize=8)
    ax.set_xlabel(xlabel, fontsize=7)
    ax.set_ylabel(ylabel, fontsize=7)
    ax.tick_params(labelsize=size)


def plot_heads(result, out_dir):
    """Layer x head heatmap of every statistic, the first length analysed left of the longest
    (one colour scale for both)."""
    recs = first_and_last(analysed(result))
    L, H = result["n_layer"], result["n_head"]
    gap = np.full((L, 1), np.nan)  # a blank column between the two lengths
    fig, axes = plt.subplots(3, 2, figsize=(2 * (1.6 + 0.3 * H * len(recs)), 3 * (1.2 + 0.3 * L)))
    lens = " | ".join(f"length {r['length']}" for r in recs)
    for ax, name in zip(axes.flat, STATISTICS):
        parts = [np.array(r[name]) for r in recs]
        image = np.hstack([x for p in parts for x in (gap, p)][1:])
        im = ax.imshow(image, aspect="auto", cmap="viridis", vmin=0, vmax=np.max(parts) or 1)
        ticks = [x for x in range(image.shape[1]) if x != H]
        ax.set_xticks(ticks, [str(x % (H + 1)) for x in ticks])
        ax.set_yticks(range(L))
        style(ax, f"{name}: {lens}", "head", "layer")
        fig.colorbar(im, ax=ax, fraction=0.05, pad=0.02).ax.tick_params(labelsize=6)
    fig.suptitle(title(result), fontsize=9)
    fig.tight_layout()
    return save(fig, out_dir, "analysis_heads")


def plot_maps(result, maps, out_dir):
    """Attention on the first window of the most positional and the most content-driven head
    (by positional score at the first length), at the first and the longest length."""
    ps, L = np.array(analysed(result)[0]["positional_score"]), result["block_size"]
    heads = [("most positional", ps.argmax()), ("most content-driven", ps.argmin())]
    lens = first_and_last(sorted(maps))
    fig, axes = plt.subplots(2, len(lens), squeeze=False, figsize=(4 * len(lens) + 1, 8))
    fig.subplots_adjust(hspace=0.4, wspace=0.3)  # no layout engine: it doubled the drawing time
    for (row, (label, flat)), (col, T) in itertools.product(enumerate(heads), enumerate(lens)):
        layer, head = np.unravel_index(flat, ps.shape)
        a = np.ma.masked_less_equal(maps[T][layer][head].numpy(), 0)  # above the diagonal
        f = math.ceil(T / a.shape[0])
        ax = axes[row, col]
        im = ax.imshow(a, cmap="magma", norm=LogNorm(vmin=1e-4, vmax=1), extent=(0, T, T, 0))
        avg = f", {f}x{f} averages" if f > 1 else ""
        name = f"{label}: layer {layer} head {head} (score {ps[layer, head]:.2f})\nlength {T}{avg}"
        style(ax, name, "key position s", "query position t")
        if T > L:  # keys farther than the training length lie below this line
            ax.plot([0, T - L], [L, T], color="c", lw=0.8, ls="--")
    fig.colorbar(im, ax=axes, fraction=0.04, label="attention (log scale)")
    fig.suptitle(title(result) + "; dashed: distance = training length", fontsize=9)
    return save(fig, out_dir, "analysis_maps")


def plot_kernel(result, out_dir):
    """The distance kernel of every head, one panel per layer, training length marked."""
    kern, what = result["kernel"], result["kernel_definition"]
    edges = np.array(kern["distance_edges"])
    xs = (edges[:-1] + edges[1:] - 1) / 2  # bucket centres (exact distances up to 256)
    n = len(kern["values"])
    ncol, nrow = min(n, 4), math.ceil(n / 4)
    fig, axes = plt.subplots(nrow, ncol, squeeze=False, figsize=(3.4 * ncol, 2.8 * nrow))
    for ax, (layer, heads) in zip(axes.flat, enumerate(kern["values"])):
        for h, ys in enumerate(heads):
            ax.plot(xs, ys, lw=1.1, label=f"head {h}")
        ax.axvline(result["block_size"], color="0.35", ls="--", lw=1)
        ax.set_xlim(0, kern["length"])
        style(ax, f"layer {layer}", "distance t - s")
        ax.grid(True, alpha=0.3)
    for ax in axes.flat[n:]:
        ax.axis("off")
    axes[0, 0].set_ylabel(f"mean positional {what}", fontsize=7)
    if result["n_head"] <= 16:
        axes[0, 0].legend(fontsize=6, frameon=False)
    what = f"distance kernel: mean pre-softmax {what} at each distance over real q, k"
    fig.suptitle(f"{title(result)}\n{what}; dashed: training length", fontsize=9)
    fig.tight_layout()
    return save(fig, out_dir, "analysis_kernel")


def plot_compare(results, out_dir):
    """Each statistic against length, one line per run (mean over heads; band: min to max)."""
    labels = [run_label(r["out_dir"]) for r in results]
    col = colours(labels)
    fig, axes = plt.subplots(2, 3, figsize=(14, 7.5))
    lengths, train = set(), set()
    for label, r in zip(labels, results):
        xs = [x["length"] for x in analysed(r)]
        if not xs:
            continue
        lengths.update(xs)
        train.add(r["block_size"])
        for ax, name in zip(axes.flat, STATISTICS):
            vals = [np.array(x[name]) for x in analysed(r)]
            ax.plot(xs, [v.mean() for v in vals], "D" if len(xs) == 1 else "o-", ms=4, lw=1.6,
                    color=col[label], label=label)  # fmt: skip
            lo, hi = [v.min() for v in vals], [v.max() for v in vals]
            ax.fill_between(xs, lo, hi, color=col[label], alpha=0.12)
    for ax, name in zip(axes.flat, STATISTICS):
        log_length_axis(ax, sorted(lengths))
        mark_training_lengths(ax, sorted(train))
        style(ax, f"{name}: {STATISTICS[name]}", "length", size=7)
        ax.grid(True, alpha=0.3)
    axes[0, 2].legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.suptitle("per-head attention statistics against length (mean over heads, band: min-max)")
    fig.tight_layout()
    return save(fig, out_dir, "analysis_compare")


# -----------------------------------------------------------------------------


def finished_runs(sweep_dir):
    """Every directory below sweep_dir (itself included) holding a finished checkpoint."""
    runs = []
    for root, dirs, files in os.walk(sweep_dir):
        dirs.sort()
        state = train_state(root)[0] if "ckpt.pt" in files else None
        if state == "finished":
            runs.append(root)
        elif state:
            print(f"{root}: not finished ({state}); skipped")
    return runs


def check_args(cfg):
    """A one-line UserError for a bad option; the lengths sorted, the device resolved."""
    lens, budget = cfg["lengths"], cfg["memory_budget_gb"]
    for bad, message in [
        (bool(cfg["sweep"]) == bool(cfg["out_dir"]), "usage: python scripts/analyze.py "
         "--out_dir=RUN [--lengths=...] [--windows=N], or python scripts/analyze.py SWEEP_DIR"),
        (not all(type(n) is int and n > 1 for n in lens),
         f"--lengths must be integers > 1 like --lengths=512,2048, got {lens}"),
        (budget <= 0, f"--memory_budget_gb must be positive, got {budget}"),
    ]:  # fmt: skip
        if bad:
            raise UserError(message)
    check_choice("--split", cfg["split"], SPLITS)
    check_at_least(cfg, dict(windows=2, max_length=2), dict(windows="a pair to compare"))
    cfg["lengths"] = sorted(set(lens))
    cfg["device"] = resolve_device(cfg["device"])


def main(argv=None):
    cfg = parse_args(sys.argv[1:] if argv is None else argv, DEFAULTS, positional="sweep")
    check_args(cfg)
    if cfg["out_dir"]:
        return [analyze_run(cfg["out_dir"], cfg)]
    if not os.path.isdir(cfg["sweep"]):
        raise UserError(f"{cfg['sweep']} is not a directory")
    runs = finished_runs(cfg["sweep"])
    if not runs:
        raise UserError(f"no finished checkpoint (ckpt.pt) below {cfg['sweep']}")
    results = []
    for run in runs:
        try:
            results.append(analyze_run(run, cfg))
        except (UserError, PrepareError) as e:  # one broken run must not cost the others
            print(f"{run}: skipped ({e})")
    if not results:
        raise UserError(f"no run below {cfg['sweep']} could be analysed")
    plot_compare(results, cfg["sweep"])
    return results


if __name__ == "__main__":
    run_cli(main)
