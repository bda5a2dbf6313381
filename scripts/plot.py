"""
Plots of a length-extrapolation sweep: perplexity against evaluation length, loss at each position
of the window, and training curves.

    python scripts/plot.py out/sweeps/demo
    python scripts/plot.py out/alibi out/rope --out=plots --metric=bits_per_byte
    python scripts/plot.py out/sweeps/wt103 --mode=sliding --split=test

Arguments are sweep directories, run directories or eval_lengths.json files; every
eval_lengths.json below a directory is used. A run's label is its directory name (for sweep runs
out/sweeps/NAME/<run>/seed<k>/ the <run> part); runs with the same label are seeds of one
configuration: lines show their mean, the band their standard deviation. Writes
ppl_vs_length, per_position_loss and training_curves, each as .png and .svg, into the first
directory given (or --out).
"""

import glob
import json
import math
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # repo root

import matplotlib

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from configurator import UserError, parse_args, run_cli

DEFAULTS = dict(
    out="",  # where the figures go; default: the first directory given
    mode="",  # nonoverlapping | sliding; default: nonoverlapping when present
    split="val",
    metric="ppl",  # ppl | word_ppl | bits_per_byte | loss
    log_y="auto",  # auto (log when max/min > 5) | yes | no
)

METRIC_NAMES = {
    "ppl": "perplexity",
    "word_ppl": "word-level perplexity",
    "bits_per_byte": "bits per byte",
    "loss": "loss (nats/token)",
}
# fixed colours per encoding so that every figure of the repo reads the same way
ENCODING_ORDER = ["alibi", "t5", "shaw", "rope", "damped_rope", "generator", "nope", "sinusoidal"]
ENCODING_ORDER += ["learned"]
# 20 distinct colours: tab10, then the light halves of tab20 (a sweep easily has > 10 lines)
PALETTE = list(plt.get_cmap("tab10").colors) + list(plt.get_cmap("tab20").colors[1::2])


def find_eval_files(paths):
    files = []
    for p in paths:
        if os.path.isfile(p):
            files.append(p)
        elif os.path.isdir(p):
            files += sorted(glob.glob(os.path.join(p, "**", "eval_lengths.json"), recursive=True))
        else:
            raise UserError(f"{p} does not exist")
    if not files:
        raise UserError(
            f"no eval_lengths.json under {' '.join(paths)}: run scripts/sweep.py or "
            "scripts/eval_lengths.py first"
        )
    return files


def run_label(run_dir):
    """out/sweeps/demo/alibi/seed1337 -> alibi; out/alibi -> alibi."""
    run_dir = os.path.normpath(os.path.abspath(run_dir))
    name = os.path.basename(run_dir)
    return os.path.basename(os.path.dirname(run_dir)) if re.fullmatch(r"seed\d+", name) else name


VARIANT_SEP = " + "  # "rope + yarn x8": a run evaluated with an evaluation-time change


def load_runs(files):
    """{label: [(run_dir, records), ...]} in a stable, encoding-ordered label order. Records of
    an evaluation-time variant (e.g. RoPE scaling) form their own label, "<run> + <variant>"."""
    runs = {}
    for f in files:
        with open(f) as fh:
            records = json.load(fh)
        run_dir = os.path.dirname(f)
        variants = sorted({r.get("variant") or "" for r in records})
        for v in variants:
            label = run_label(run_dir) + (VARIANT_SEP + v if v else "")
            recs = [r for r in records if (r.get("variant") or "") == v]
            runs.setdefault(label, []).append((run_dir, recs))

    def order(label):
        enc = runs[label][0][1][0].get("encoding") if runs[label][0][1] else None
        rank = ENCODING_ORDER.index(enc) if enc in ENCODING_ORDER else len(ENCODING_ORDER)
        return (rank, label)

    return {k: runs[k] for k in sorted(runs, key=order)}


def colours(labels):
    return {label: PALETTE[i % len(PALETTE)] for i, label in enumerate(labels)}


def length_label(n, _pos=None):
    return f"{n // 1024}k" if n >= 1024 and n % 1024 == 0 else f"{int(n)}"


def describe(records):
    """Dataset, model size and training length of the runs, for titles."""
    r = records[0]
    params = r.get("n_params") or 0
    size = f"{params / 1e6:.1f}M" if params >= 1e6 else f"{params / 1e3:.0f}k"
    shape = f"{r.get('n_layer')}L/{r.get('n_head')}H/{r.get('n_embd')}d"
    train = sorted({x["block_size"] for x in records})
    trained = "trained at L=" + ", ".join(str(t) for t in train)
    return r.get("dataset", "?"), f"{size} params ({shape})", trained, train


def select(records, split, mode):
    return [r for r in records if r.get("split") == split and r.get("mode") == mode]


def pick_mode(runs, split, mode):
    modes = {r["mode"] for v in runs.values() for _, recs in v for r in recs if r["split"] == split}
    if not modes:
        have = sorted({r["split"] for v in runs.values() for _, recs in v for r in recs})
        raise UserError(f"no results for split '{split}'; the results have: {', '.join(have)}")
    if mode:
        if mode not in modes:
            raise UserError(f"no '{mode}' results; found: {', '.join(sorted(modes))}")
        return mode
    return "nonoverlapping" if "nonoverlapping" in modes else sorted(modes)[0]


def log_length_axis(ax, lengths):
    ax.set_xscale("log", base=2)
    ax.set_xticks(lengths)
    ax.xaxis.set_major_formatter(FuncFormatter(length_label))
    ax.xaxis.set_minor_formatter(NullFormatter())


def mark_training_lengths(ax, train_lengths):
    for t in train_lengths:
        ax.axvline(t, color="0.35", ls="--", lw=1, zorder=0)
        ax.annotate(
            f"train length {t}",
            (t, 1),
            xycoords=("data", "axes fraction"),
            xytext=(4, -4),
            textcoords="offset points",
            va="top",
            fontsize=8,
            color="0.3",
        )


def save(fig, out_dir, name):
    paths = []
    for ext in ("png", "svg"):
        path = os.path.join(out_dir, f"{name}.{ext}")
        fig.savefig(path, dpi=160, bbox_inches="tight")
        paths.append(path)
    plt.close(fig)
    print("wrote " + " ".join(paths))
    return paths


def plot_ppl_vs_length(runs, split, mode, metric, log_y, out_dir):
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    col = colours(runs)
    all_recs, all_vals, notes, lengths = [], [], [], set()
    for rank, (label, seeds) in enumerate(runs.items()):
        by_len, skipped = {}, {}
        for _, recs in seeds:
            for r in select(recs, split, mode):
                all_recs.append(r)
                if r.get("skipped"):
                    skipped[r["length"]] = r.get("reason", "")
                elif r.get(metric) is not None:
                    by_len.setdefault(r["length"], []).append(r[metric])
        if not by_len:
            if skipped:
                notes.append(f"{label}: every length skipped")
            continue
        xs = sorted(by_len)
        lengths.update(xs)
        lengths.update(skipped)
        mean = np.array([np.mean(by_len[x]) for x in xs])
        std = np.array([np.std(by_len[x]) for x in xs])
        n_seeds = max(len(v) for v in by_len.values())
        name = label + (f" ({n_seeds} seeds)" if n_seeds > 1 else "")
        if skipped:
            name += f" (none past {max(xs)})"
        # a run with one point (learned absolute: nothing past its table) gets a bigger marker
        marker, ms = ("D", 7) if len(xs) == 1 else ("o", 4)
        ls = "--" if VARIANT_SEP in label else "-"
        ax.plot(
            xs,
            mean,
            marker=marker,
            ms=ms,
            # later runs are drawn thinner and on top, so identical curves both stay visible
            lw=2.8 - 1.6 * rank / max(1, len(runs) - 1),
            ls=ls,
            color=col[label],
            label=name,
            zorder=3 + 0.01 * rank,
        )
        if n_seeds > 1:
            ax.fill_between(xs, mean - std, mean + std, color=col[label], alpha=0.18, lw=0)
        all_vals += list(mean)
    if not all_vals:
        raise UserError(f"no '{metric}' values to plot for {split}/{mode} (try --metric=ppl)")
    dataset, size, trained, train_lengths = describe(all_recs)
    log_length_axis(ax, sorted(lengths))
    mark_training_lengths(ax, train_lengths)
    wide = max(all_vals) / max(min(all_vals), 1e-9) > 5
    if log_y == "yes" or (log_y == "auto" and wide and metric != "loss"):
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())
    unit = "byte-level " if all_recs[0].get("tokenizer") == "bytes" and metric == "ppl" else ""
    ax.set_xlabel("evaluation length (tokens)")
    ax.set_ylabel(unit + METRIC_NAMES.get(metric, metric) + (" (log scale)" if wide else ""))
    ax.set_title(
        f"{dataset} {split}: {unit}{METRIC_NAMES.get(metric, metric)} vs evaluation length\n"
        f"{size}, {trained}, {mode} evaluation",
        fontsize=10,
    )
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1))
    if notes:
        fig.text(0.01, -0.02, "; ".join(notes), fontsize=7, color="0.4")
    return save(fig, out_dir, "ppl_vs_length")


def pooled_positions(recs, bins_per_octave=6):
    """Mean loss per position bin, pooling every evaluated length of a run: under a causal mask
    the prediction at position p depends only on the p tokens before it, not on the window
    length, so pooling only adds samples (weighted by the tokens scored). Positions 1..8 are
    exact, then `bins_per_octave` log-spaced bins. Returns (bin centres, means), 1-based."""
    longest = max(r["length"] for r in recs)
    n_log = max(2, int(bins_per_octave * math.log2(max(longest, 16) / 8)))
    log_edges = np.geomspace(8, max(longest, 16), n_log).round().astype(int).tolist()
    edges = sorted(set(range(8)) | set(log_edges))
    edges = [e for e in edges if e < longest] + [longest]
    num, den = np.zeros(len(edges) - 1), np.zeros(len(edges) - 1)
    for r in recs:
        counts = r.get("per_position_tokens") or [1] * len(r["per_position_loss"])
        for a, b, m, c in zip(
            r["per_position_edges"], r["per_position_edges"][1:], r["per_position_loss"], counts
        ):
            if m is None or not c:
                continue
            k = int(np.searchsorted(edges, (a + b - 1) / 2, side="right")) - 1
            num[k] += m * c
            den[k] += c
    centres = np.array([math.sqrt((a + 1) * b) for a, b in zip(edges[:-1], edges[1:])])
    ok = den > 0
    return centres[ok], num[ok] / den[ok]


def plot_per_position(runs, split, mode, out_dir):
    """Mean loss at each position of the evaluation window, one line per run."""
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    col = colours(runs)
    all_recs, drawn, longest = [], [], 0
    for label, seeds in runs.items():
        recs = [
            r
            for _, rs in seeds
            for r in select(rs, split, mode)
            if not r.get("skipped") and r.get("per_position_loss")
        ]
        if not recs:
            continue
        all_recs += recs
        xs, ys = pooled_positions(recs)
        if len(xs) == 0:
            continue
        length = max(r["length"] for r in recs)
        ls = "--" if VARIANT_SEP in label else "-"
        name = f"{label} (up to {length_label(length)})"
        ax.plot(xs, ys, lw=1.6, ls=ls, color=col[label], label=name)
        drawn.append(ys)
        longest = max(longest, length)
    if not drawn:
        print("no per-position losses to plot")
        plt.close(fig)
        return []
    dataset, size, trained, train_lengths = describe(all_recs)
    log_length_axis(ax, [2**k for k in range(0, int(math.log2(longest)) + 1, 2)] + [longest])
    mark_training_lengths(ax, train_lengths)
    # keep the models that extrapolate readable: the ones that collapse may leave the plot
    inside = np.concatenate(drawn)
    lo, hi = np.nanmin(inside), np.nanpercentile(inside, 90)
    ax.set_ylim(lo - 0.05 * (hi - lo), hi + 0.5 * (hi - lo))
    ax.set_xlabel("position in the evaluation window (1 = first token scored)")
    ax.set_ylabel("mean loss (nats/token)")
    ax.set_title(
        f"{dataset} {split}: loss at each position of the window, all lengths pooled\n"
        f"{size}, {trained}, {mode} evaluation",
        fontsize=10,
    )
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1))
    return save(fig, out_dir, "per_position_loss")


def plot_training_curves(runs, out_dir):
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    col = colours(runs)
    any_curve, all_recs = False, []
    for label, seeds in runs.items():
        if VARIANT_SEP in label:  # same training run as its base label
            continue
        for i, (run_dir, recs) in enumerate(seeds):
            all_recs += recs
            log = os.path.join(run_dir, "log.jsonl")
            if not os.path.exists(log):
                continue
            with open(log) as f:
                rows = [json.loads(line) for line in f if line.strip()]
            rows = [r for r in rows if r.get("val_loss") is not None]
            if not rows:
                continue
            its = [r["iter"] for r in rows]
            ax.plot(
                its,
                [r["val_loss"] for r in rows],
                color=col[label],
                lw=1.6,
                label=label if i == 0 else None,
            )
            if all(r.get("train_loss") is not None for r in rows):
                ax.plot(its, [r["train_loss"] for r in rows], color=col[label], lw=0.9, ls=":")
            any_curve = True
    if not any_curve:
        print("no training logs (log.jsonl) found; skipping training curves")
        plt.close(fig)
        return []
    dataset, size, trained, _ = describe(all_recs) if all_recs else ("?", "", "", [])
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss (nats/token)")
    ax.set_title(
        f"{dataset}: training curves (solid: val, dotted: train)\n{size}, {trained}", fontsize=10
    )
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1))
    return save(fig, out_dir, "training_curves")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    # several bare paths are allowed, so they are split off before the --key=value options
    paths = [a for a in argv if not a.startswith("-")]
    cfg = parse_args([a for a in argv if a.startswith("-")], DEFAULTS)
    if not paths:
        raise UserError("usage: python scripts/plot.py SWEEP_DIR|RUN_DIR|eval_lengths.json ...")
    if cfg["metric"] not in METRIC_NAMES:
        raise UserError(f"--metric must be one of {', '.join(METRIC_NAMES)}")
    if cfg["log_y"] not in ("auto", "yes", "no"):
        raise UserError("--log_y must be auto, yes or no")
    runs = load_runs(find_eval_files(paths))
    out_dir = cfg["out"] or next((p for p in paths if os.path.isdir(p)), os.path.dirname(paths[0]))
    os.makedirs(out_dir or ".", exist_ok=True)
    mode = pick_mode(runs, cfg["split"], cfg["mode"])
    written = plot_ppl_vs_length(runs, cfg["split"], mode, cfg["metric"], cfg["log_y"], out_dir)
    written += plot_per_position(runs, cfg["split"], mode, out_dir)
    written += plot_training_curves(runs, out_dir)
    return written


if __name__ == "__main__":
    run_cli(main)
