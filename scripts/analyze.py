"""
Looking inside a model: what each attention head does with position, at and past the training
length, and what it learned about distance.

    python scripts/analyze.py --out_dir=out/wikitext103/alibi
    python scripts/analyze.py --out_dir=out/alibi --lengths=512,2048,4096 --windows=8
    python scripts/analyze.py out/sweeps/demo          # every finished run below the directory

Protocol. At each length T (default: the training length L x 1, 4, 8, at most max_length tokens
= 4096: the time grows as T^2) the model reads the first `windows` nonoverlapping windows of T
tokens of the split: the windows scripts/eval_lengths.py scores first at that length. The
residual stream goes through the model's own blocks; from each layer's q and k the attention
probabilities are recomputed the explicit, reference way, softmax(pe.scores(q, k, pos, pos) +
causal mask), in float32 and in blocks of queries (memory O(block x T), never (T, T, d)).
Lengths the encoding cannot run (learned and axial tables past their size) are recorded as
skipped, as eval_lengths does.

Statistics, per layer and head, with a_ts the attention of query t on key s <= t (positions in
the window, 0-based), averaged over the windows and over the queries t = 1 .. T-1 (query 0 sees
only itself: nothing to measure):
- mean_distance      sum_s a_ts (t - s): how far back the head looks, in tokens.
- entropy            -sum_s a_ts ln a_ts (nats);
  entropy_ratio      entropy / ln(t + 1), per query, then averaged: 1 = uniform over the t + 1
                     visible keys, 0 = one key.
- beyond_training    sum of a_ts over keys with t - s >= L (block_size): distances the model never
                     saw in training (the largest it saw is L - 1). 0 at T = L by definition.
- positional_score   1 - TV, with TV = 1/2 sum_s |a_ts - a'_ts| the total-variation distance
                     between the attention rows of the same query position t in two different
                     text windows, averaged over t and over every pair of windows. 1: the head
                     attends the same way whatever the text (position only; a uniform head also
                     scores 1); near 0: where it looks is decided by the tokens. This is this
                     repo's definition. It measures, across two texts, the distinction Urrutia et
                     al. draw ("Decoupling Positional and Symbolic Attention Behavior in
                     Transformers", arXiv 2511.11579, ICLR 2026): a head is positional when its
                     logits do not change when the keys' tokens are permuted, symbolic when they
                     follow the tokens; their metric permutes keys within one context. Their
                     follow-up (arXiv 2605.31558) finds symbolic mechanisms extrapolate more
                     reliably than positional ones, which this score lets one check per encoding.
- sink_share         a_t0: the mass on the window's first token (an attention sink).

The distance kernel, per layer and head: the mean, over every pair (t, s) of the windows at
distance t - s = delta (and over the windows), of the positional part of the pre-softmax logit,
through the Encoding interface alone:
- an encoding that only adds a bias (ALiBi, T5, Shaw, KERPLE, FIRE, ...): the bias, i.e.
  pe.scores(q, k) - q.k / sqrt(d). For a bias that uses q (Shaw, Transformer-XL) this is the bias
  under the real queries;
- every other encoding (rotations, multiplicative, absolute, NoPE): the logit pe.scores(q, k)
  itself, i.e. E[q^T A(t - s) k] / sqrt(d) over real q, k for a rotation; for NoPE and absolute
  encodings whatever position the logit carries on average.
It is taken at the longest length analysed, exact per distance up to 256 and averaged over
log-spaced distance buckets beyond (eval_lengths' position buckets).

Writes RUN/analysis.json and, as .png and .svg: analysis_heads (layer x head heatmaps of every
statistic at the first and the longest length), analysis_maps (attention of the most positional
and the most content-driven head, by positional score at the first length, on the first window,
at the first and the longest length; averaged over squares of tokens past 256), analysis_kernel
(the distance kernels, training length marked). Given a sweep directory: all of that for each
finished run below it, and SWEEP_DIR/analysis_compare (each statistic against length, mean over
heads, one line per run, the band from the lowest to the highest head).
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
from configurator import UserError, parse_args, run_cli
from data.prepare import PrepareError, write_json
from encoding import hp_dtype
from runtime import resolve_device
from scripts.eval_lengths import load_split, position_edges, windows
from scripts.plot import colours, log_length_axis, mark_training_lengths, run_label, save
from scripts.sweep import train_state

DEFAULTS = dict(
    sweep="",  # a sweep directory (or give it as the bare argument): every finished run below it
    out_dir="",  # one run directory holding ckpt.pt
    lengths=(),  # e.g. --lengths=512,2048; empty: block_size x 1, 4, 8, at most max_length
    max_length=4096,  # cap of the default lengths (the analysis costs O(T^2) per head)
    windows=4,  # text windows per length (at least 2: the positional score compares pairs)
    split="val",  # val | test
    data_dir="",  # default: the data_dir the checkpoint was trained with
    device="auto",  # auto (cuda if available, else cpu), cpu, cuda, cuda:1, mps
    memory_budget_gb=0.5,  # bound on one block of queries' attention tensors
)

STATISTICS = {
    "mean_distance": "sum_s a_ts (t - s), tokens",
    "entropy": "-sum_s a_ts ln a_ts, nats",
    "entropy_ratio": "entropy / ln(t + 1): 1 = uniform over the visible keys",
    "beyond_training": "attention on keys at distance >= block_size",
    "positional_score": "1 - total variation between the rows of query t in two text windows",
    "sink_share": "attention on the window's first token",
}
LENGTH_MULTIPLIERS = (1, 4, 8)
MAP_SIZE = 256  # attention maps larger than this are averaged over squares of tokens


# -----------------------------------------------------------------------------
# the statistics of one layer


def kernel_is_bias(pe):
    """True when the positional part of the logit is pe.scores - q.k/sqrt(d) (the encoding only
    adds a bias); otherwise it is the logit itself (see the module docstring)."""
    return pe.has_bias and not pe.has_rotate and not pe.explicit


def query_block_size(n_win, n_head, T, head_dim, pe, budget_gb):
    """Queries per block so that a block's tensors fit the budget: scores() of a rotation makes
    ~d floats per (query, key) pair (pair products), plus the logits, probabilities and masks."""
    per_query = n_win * n_head * T * 4 * (head_dim + 16)
    qb = max(1, min(T, int(budget_gb * 2**30 // per_query)))
    return min(qb, pe.max_query_block or qb)


@torch.no_grad()
def layer_statistics(pe, q, k, block_size, budget_gb):
    """Statistics of one layer from its q, k (N windows, H, T, d), as float64 CPU tensors: each
    statistic (H,) summed over windows and queries 1..T-1 (positional_score over window pairs),
    kernel_sum (H, T) the positional logit summed over the pairs at each distance, and map
    (H, m, m) the first window's attention averaged over squares of f x f tokens."""
    N, H, T, d = q.shape
    dev, acc = q.device, hp_dtype(q.device)
    pos = torch.arange(T, device=dev)
    sums = {name: torch.zeros(H, dtype=acc, device=dev) for name in STATISTICS}
    kernel_sum = torch.zeros(H, T, dtype=acc, device=dev)
    f = math.ceil(T / MAP_SIZE)  # map pooling factor
    m = math.ceil(T / f)
    att_map = torch.zeros(H, m, m, dtype=acc, device=dev)
    pairs = list(itertools.combinations(range(N), 2))
    bias_only = kernel_is_bias(pe)
    qb = query_block_size(N, H, T, d, pe, budget_gb)
    for t0 in range(0, T, qb):
        t1 = min(T, t0 + qb)
        logits = pe.scores(q[:, :, t0:t1], k[:, :, :t1], pos[t0:t1], pos[:t1]).float()
        dist = pos[t0:t1, None] - pos[None, :t1]  # (b, t1): t - s
        seen = dist >= 0
        att = F.softmax(logits.masked_fill(~seen, float("-inf")), dim=-1)  # (N, H, b, t1)
        rows = (pos[t0:t1] >= 1).to(acc)  # query 0 sees only itself: left out
        n_keys = (pos[t0:t1] + 1).to(acc)  # keys query t sees
        entropy = -torch.special.xlogy(att, att).sum(-1).to(acc)  # (N, H, b); 0 ln 0 = 0
        per_row = {
            "mean_distance": (att * dist.clamp(min=0)).sum(-1),
            "entropy": entropy,
            "entropy_ratio": entropy / n_keys.log().clamp(min=1e-30),
            "beyond_training": (att * (dist >= block_size)).sum(-1),
            "sink_share": att[..., 0],
        }
        for name, v in per_row.items():
            sums[name] += (v.to(acc) * rows).sum((0, 2))
        for i, j in pairs:
            same = 1 - 0.5 * (att[i] - att[j]).abs().sum(-1)  # (H, b)
            sums["positional_score"] += (same.to(acc) * rows).sum(-1)
        # the distance kernel: positional logits of every seen pair, summed per distance
        pos_logits = logits
        if bias_only:
            ct = logits.dtype
            content = q[:, :, t0:t1].to(ct) @ k[:, :, :t1].to(ct).transpose(-2, -1) / math.sqrt(d)
            pos_logits = logits - content
        kernel_sum.index_add_(1, dist[seen], pos_logits.sum(0)[:, seen].to(acc))
        # the first window's map, averaged over f x f squares (sum over columns, mean over rows)
        cols = F.pad(att[0], (0, m * f - t1)).view(H, t1 - t0, m, f).sum(-1).to(acc)
        att_map.index_add_(1, pos[t0:t1] // f, cols)
        del logits, att, pos_logits, per_row
    rows_per_group = torch.bincount(pos // f, minlength=m).to(acc)
    att_map /= rows_per_group[None, :, None]
    out = {name: v.cpu() for name, v in sums.items()}
    out.update(kernel_sum=kernel_sum.cpu(), map=att_map.float().cpu())
    return out


@torch.no_grad()
def analyze_length(model, idx, block_size, budget_gb):
    """Run the windows idx (N, T) through the model's blocks and return, per layer, the
    statistics of that layer's attention (layer_statistics, averaged), its kernel sums and map."""
    N, T = idx.shape
    pos = torch.arange(T, device=idx.device)
    for pe in model.pe:  # context extension (dynamic NTK) depends on the sequence length
        pe.context_len = T
    # the residual stream as GPT.forward builds it (model.eval(): no dropout); no output head
    x = model.transformer.wte(idx)
    if model.pe[0].has_embed:
        x = x + model.pe[0].embed(pos).to(x.dtype)
    layers = []
    for i, block in enumerate(model.transformer.h):
        pe = model.layer_encoding(i)
        C, H = x.size(-1), block.attn.n_head
        q, k, _ = block.attn.c_attn(block.ln_1(x)).split(C, dim=2)
        q, k = (t.view(N, T, H, C // H).transpose(1, 2) for t in (q, k))
        s = layer_statistics(pe, q, k, block_size, budget_gb)
        n_rows = N * (T - 1)
        for name in STATISTICS:
            s[name] = s[name] / (n_rows * (N - 1) / 2 if name == "positional_score" else n_rows)
        layers.append(s)
        x = block(x, pos, pe)
    return layers


def bucket_kernel(kernel_sum, n_windows, T):
    """Mean positional logit per distance bucket (eval_lengths' position buckets): (edges,
    values (H, buckets)). Distance delta occurs in (T - delta) pairs of each window."""
    edges = position_edges(T)
    count = n_windows * (T - torch.arange(T, dtype=kernel_sum.dtype))
    values = [
        (kernel_sum[:, a:b].sum(-1) / count[a:b].sum()).tolist() for a, b in zip(edges, edges[1:])
    ]
    return edges, np.array(values).T.tolist()


# -----------------------------------------------------------------------------
# one run


def default_lengths(block_size, max_length):
    lens = [min(block_size * m, max_length) for m in LENGTH_MULTIPLIERS]
    return sorted(set(n for n in lens if n > 0))


def load_windows(data, length, n_windows):
    """The first n_windows nonoverlapping windows of `length` tokens, (N, length) int64, or
    None if the split is too short."""
    starts = [s for s, n, _ in windows(len(data), length, "nonoverlapping", length) if n == length]
    if len(starts) < n_windows:
        return None
    return torch.stack(
        [torch.from_numpy(data[s : s + length].astype(np.int64)) for s in starts[:n_windows]]
    )


def analyze_run(out_dir, cfg):
    """Analyse the checkpoint in out_dir at every length; write analysis.json and the per-run
    figures. Returns the analysis dict."""
    model, ckpt = load_model(out_dir, device=cfg["device"])
    margs, tcfg = ckpt["model_args"], ckpt.get("config", {})
    block_size = margs["block_size"]
    lens = cfg["lengths"] or default_lengths(block_size, cfg["max_length"])
    _, data = load_split(cfg["data_dir"], cfg["split"], tcfg)
    n_win = cfg["windows"]
    result = {
        "encoding": margs.get("encoding"),
        "encoding_kwargs": margs.get("encoding_kwargs") or {},
        "block_size": block_size,
        "n_layer": margs["n_layer"],
        "n_head": margs["n_head"],
        "dataset": tcfg.get("dataset"),
        "split": cfg["split"],
        "windows": n_win,
        "iter_num": ckpt.get("iter_num"),
        "out_dir": out_dir,
        "statistics": STATISTICS,
        "kernel_definition": "bias" if kernel_is_bias(model.pe[0]) else "logit",
        "lengths": [],
    }
    print(f"{out_dir}: {result['encoding']}, trained at {block_size}, {n_win} windows per length")
    maps, kernel = {}, None
    for T in lens:
        rec = {"length": T}
        idx = load_windows(data, T, n_win)
        if model.max_len is not None and T > model.max_len:
            rec.update(
                skipped=True,
                reason=f"{result['encoding']} has positions only up to {model.max_len}",
            )
        elif idx is None:
            rec.update(
                skipped=True,
                reason=f"the {cfg['split']} split has fewer than {n_win} windows of {T} tokens",
            )
        if rec.get("skipped"):
            print(f"  length {T:>6}: skipped ({rec['reason']})")
            result["lengths"].append(rec)
            continue
        t0 = time.time()
        try:
            layers = analyze_length(
                model, idx.to(cfg["device"]), block_size, cfg["memory_budget_gb"]
            )
        except ValueError as e:  # the model refuses this length
            rec.update(skipped=True, reason=str(e))
            print(f"  length {T:>6}: skipped ({e})")
            result["lengths"].append(rec)
            continue
        rec["skipped"] = False
        for name in STATISTICS:
            rec[name] = [layer[name].tolist() for layer in layers]  # [layer][head]
        rec["elapsed_s"] = round(time.time() - t0, 2)
        result["lengths"].append(rec)
        maps[T] = [layer["map"] for layer in layers]
        kernel = (T, [layer["kernel_sum"] for layer in layers])
        ps = np.array(rec["positional_score"])
        print(
            f"  length {T:>6}: mean distance {np.mean(rec['mean_distance']):.1f}, beyond"
            f" training {np.mean(rec['beyond_training']):.3f}, positional score"
            f" {ps.min():.2f}..{ps.max():.2f}"
            f" ({rec['elapsed_s']:.1f}s)"
        )
    if kernel is not None:
        T, sums = kernel
        per_layer = [bucket_kernel(s, n_win, T) for s in sums]
        result["kernel"] = {
            "length": T,
            "distance_edges": per_layer[0][0],
            "values": [v for _, v in per_layer],  # [layer][head][bucket]
        }
    path = os.path.join(out_dir, "analysis.json")
    write_json(path, result, indent=1)
    print(f"wrote {path}")
    if maps:
        plot_heads(result, out_dir)
        plot_maps(result, maps, out_dir)
        plot_kernel(result, out_dir)
    return result


# -----------------------------------------------------------------------------
# figures


def analysed(result):
    return [r for r in result["lengths"] if not r.get("skipped")]


def plot_heads(result, out_dir):
    """Layer x head heatmap of every statistic: the first length analysed on the left, the
    longest on the right (one panel per statistic, one colour scale for both lengths)."""
    recs = analysed(result)
    recs = [recs[0], recs[-1]] if len(recs) > 1 else recs
    L, H = result["n_layer"], result["n_head"]
    gap = np.full((L, 1), np.nan)  # a blank column between the two lengths
    fig, axes = plt.subplots(3, 2, figsize=(2 * (1.6 + 0.3 * H * len(recs)), 3 * (1.2 + 0.3 * L)))
    for ax, name in zip(axes.flat, STATISTICS):
        parts = [np.array(r[name]) for r in recs]
        image = np.hstack([parts[0], gap, parts[1]]) if len(parts) > 1 else parts[0]
        im = ax.imshow(image, aspect="auto", cmap="viridis", vmin=0, vmax=np.max(parts) or 1)
        lens = " | ".join(f"length {r['length']}" for r in recs)
        ax.set_title(f"{name}: {lens}", fontsize=8)
        ticks = [x for x in range(image.shape[1]) if x != H or len(parts) == 1]
        ax.set_xticks(ticks, [str(x % (H + 1)) for x in ticks])
        ax.set_yticks(range(L))
        ax.set_xlabel("head", fontsize=7)
        ax.set_ylabel("layer", fontsize=7)
        ax.tick_params(labelsize=6)
        fig.colorbar(im, ax=ax, fraction=0.05, pad=0.02).ax.tick_params(labelsize=6)
    fig.suptitle(title(result), fontsize=9)
    fig.tight_layout()
    return save(fig, out_dir, "analysis_heads")


def title(result):
    kw = result["encoding_kwargs"]
    opts = f" {kw}" if kw else ""
    return f"{result['encoding']}{opts}, trained at L={result['block_size']} ({result['dataset']})"


def chosen_heads(result):
    """(label, layer, head) of the most positional and the most content-driven head, by
    positional score at the first length analysed."""
    ps = np.array(analysed(result)[0]["positional_score"])
    hi, lo = np.unravel_index(ps.argmax(), ps.shape), np.unravel_index(ps.argmin(), ps.shape)
    return [("most positional", *hi, ps[hi]), ("most content-driven", *lo, ps[lo])]


def plot_maps(result, maps, out_dir):
    """Attention of the chosen heads on the first window, at the first and the longest length."""
    lens = sorted(maps)
    lens = [lens[0], lens[-1]] if len(lens) > 1 else lens
    heads = chosen_heads(result)
    fig, axes = plt.subplots(len(heads), len(lens), squeeze=False, figsize=(4 * len(lens) + 1, 8))
    fig.subplots_adjust(hspace=0.4, wspace=0.3)  # no layout engine: it doubled the drawing time
    for row, (label, layer, head, score) in enumerate(heads):
        for col, T in enumerate(lens):
            a = maps[T][layer][head].numpy()
            f = math.ceil(T / a.shape[0])
            a = np.ma.masked_less_equal(a, 0)  # above the diagonal: not seen
            ax = axes[row, col]
            im = ax.imshow(a, cmap="magma", norm=LogNorm(vmin=1e-4, vmax=1), extent=(0, T, T, 0))
            ax.set_title(
                f"{label}: layer {layer} head {head} (score {score:.2f})\nlength {T}"
                + (f", {f}x{f} averages" if f > 1 else ""),
                fontsize=8,
            )
            ax.set_xlabel("key position s", fontsize=7)
            ax.set_ylabel("query position t", fontsize=7)
            ax.tick_params(labelsize=6)
            if T > result["block_size"]:  # keys farther than the training length lie below this
                xs = np.array([0, T - result["block_size"]])
                ax.plot(xs, xs + result["block_size"], color="c", lw=0.8, ls="--")
    fig.colorbar(im, ax=axes, fraction=0.04, label="attention (log scale)")
    fig.suptitle(title(result) + "; dashed: distance = training length", fontsize=9)
    return save(fig, out_dir, "analysis_maps")


def plot_kernel(result, out_dir):
    """The distance kernel of every head, one panel per layer, training length marked."""
    kern = result["kernel"]
    edges = np.array(kern["distance_edges"])
    xs = (edges[:-1] + edges[1:] - 1) / 2  # bucket centres (exact distances up to 256)
    L = len(kern["values"])
    ncol = min(L, 4)
    nrow = math.ceil(L / ncol)
    fig, axes = plt.subplots(nrow, ncol, squeeze=False, figsize=(3.4 * ncol, 2.8 * nrow))
    for layer, heads in enumerate(kern["values"]):
        ax = axes[layer // ncol, layer % ncol]
        for h, ys in enumerate(heads):
            ax.plot(xs, ys, lw=1.1, label=f"head {h}")
        ax.axvline(result["block_size"], color="0.35", ls="--", lw=1)
        ax.set_xlim(0, kern["length"])
        ax.set_title(f"layer {layer}", fontsize=8)
        ax.set_xlabel("distance t - s", fontsize=7)
        ax.tick_params(labelsize=6)
        ax.grid(True, alpha=0.3)
    for ax in axes.flat[L:]:
        ax.axis("off")
    what = "bias" if result["kernel_definition"] == "bias" else "logit"
    axes[0, 0].set_ylabel(f"mean positional {what}", fontsize=7)
    if result["n_head"] <= 16:
        axes[0, 0].legend(fontsize=6, frameon=False)
    fig.suptitle(
        f"{title(result)}\ndistance kernel: mean pre-softmax {what} at each distance over real q, k"
        f"; dashed: training length",
        fontsize=9,
    )
    fig.tight_layout()
    return save(fig, out_dir, "analysis_kernel")


def plot_compare(results, out_dir):
    """Each statistic against length, one line per run (mean over heads; band: min to max)."""
    labels = [run_label(r["out_dir"]) for r in results]
    col = colours(labels)
    names = list(STATISTICS)
    fig, axes = plt.subplots(2, 3, figsize=(14, 7.5))
    lengths, train = set(), set()
    for label, r in zip(labels, results):
        recs = analysed(r)
        if not recs:
            continue
        xs = [x["length"] for x in recs]
        lengths.update(xs)
        train.add(r["block_size"])
        for ax, name in zip(axes.flat, names):
            vals = [np.array(x[name]) for x in recs]
            mean = [v.mean() for v in vals]
            marker = "D" if len(xs) == 1 else "o"
            ax.plot(xs, mean, marker=marker, ms=4, lw=1.6, color=col[label], label=label)
            ax.fill_between(
                xs, [v.min() for v in vals], [v.max() for v in vals], color=col[label], alpha=0.12
            )
    for ax, name in zip(axes.flat, names):
        log_length_axis(ax, sorted(lengths))
        mark_training_lengths(ax, sorted(train))
        ax.set_title(f"{name}: {STATISTICS[name]}", fontsize=8)
        ax.set_xlabel("length", fontsize=7)
        ax.tick_params(labelsize=7)
        ax.grid(True, alpha=0.3)
    axes[0, 2].legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.suptitle(
        "per-head attention statistics against length (line: mean over heads, band: min-max)"
    )
    fig.tight_layout()
    return save(fig, out_dir, "analysis_compare")


# -----------------------------------------------------------------------------


def finished_runs(sweep_dir):
    """Every directory below sweep_dir (itself included) holding a finished checkpoint."""
    runs = []
    for root, dirs, files in os.walk(sweep_dir):
        dirs.sort()
        if "ckpt.pt" in files:
            state, _ = train_state(root)
            if state == "finished":
                runs.append(root)
            else:
                print(f"{root}: not finished ({state}); skipped")
    return runs


def main(argv=None):
    cfg = parse_args(sys.argv[1:] if argv is None else argv, DEFAULTS, positional="sweep")
    if bool(cfg["sweep"]) == bool(cfg["out_dir"]):
        raise UserError(
            "usage: python scripts/analyze.py --out_dir=RUN [--lengths=...] [--windows=N], "
            "or python scripts/analyze.py SWEEP_DIR"
        )
    lens = cfg["lengths"]
    if not all(isinstance(n, int) and not isinstance(n, bool) and n > 1 for n in lens):
        raise UserError(f"--lengths must be integers > 1 like --lengths=512,2048, got {lens}")
    cfg["lengths"] = sorted(set(lens))
    if cfg["windows"] < 2:
        raise UserError(
            f"--windows must be at least 2 (the positional score compares pairs), got"
            f" {cfg['windows']}"
        )
    if cfg["max_length"] < 2:
        raise UserError(f"--max_length must be at least 2, got {cfg['max_length']}")
    if cfg["memory_budget_gb"] <= 0:
        raise UserError(f"--memory_budget_gb must be positive, got {cfg['memory_budget_gb']}")
    if cfg["split"] not in ("val", "test", "train"):
        raise UserError(f"--split must be val or test, got '{cfg['split']}'")
    cfg["device"] = resolve_device(cfg["device"])
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
