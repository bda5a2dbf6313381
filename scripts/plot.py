"""
Plots of a length-extrapolation sweep: perplexity against evaluation length, loss at each position
of the window, training curves, and (where eval_context.json exists) perplexity, distant-context
gain and copy retrieval side by side; runs with one label are seeds (docs/evaluation.md#plots).

    python scripts/plot.py out/sweeps/demo                 # every eval_lengths.json below it
    python scripts/plot.py out/alibi out/rope --out=plots --metric=bits_per_byte
    python scripts/plot.py out/sweeps/wt103 --mode=sliding --split=test
"""

import glob
import json
import math
import os
import re
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # repo root

import matplotlib

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from configurator import UserError, check_choice, parse_args, run_cli

DEFAULTS = dict(
    out="",  # where the figures go; default: the first directory given
    mode="",  # nonoverlapping | sliding; default: nonoverlapping when present
    split="val",  # val | test | train: the records of that split
    metric="ppl",  # ppl | word_ppl | bits_per_byte | loss
    log_y="auto",  # auto (log when max/min > 5) | yes | no
)

METRIC_NAMES = {"ppl": "perplexity", "word_ppl": "word-level perplexity",
                "bits_per_byte": "bits per byte", "loss": "loss (nats/token)"}  # fmt: skip
# fixed colours per encoding so that every figure of the repo reads the same way
ENCODING_ORDER = "alibi t5 shaw rope damped_rope generator nope sinusoidal learned".split()
# 20 distinct colours: tab10, then the light halves of tab20 (a sweep easily has > 10 lines)
PALETTE = list(plt.get_cmap("tab10").colors) + list(plt.get_cmap("tab20").colors[1::2])
VARIANT_SEP = " + "  # "rope + yarn x8": a run evaluated with an evaluation-time change


def find_files(paths, name):
    """Every file called `name` below the directories given; a file given is taken as it is."""
    for p in (p for p in paths if not os.path.exists(p)):
        raise UserError(f"{p} does not exist")
    below = lambda p: glob.glob(os.path.join(p, "**", name), recursive=True)
    return [f for p in paths for f in ([p] if os.path.isfile(p) else sorted(below(p)))]


def run_label(run_dir):
    """out/sweeps/demo/alibi/seed1337 -> alibi; out/alibi -> alibi."""
    run_dir = os.path.normpath(os.path.abspath(run_dir))
    name = os.path.basename(run_dir)
    return os.path.basename(os.path.dirname(run_dir)) if re.fullmatch(r"seed\d+", name) else name


def load_runs(files):
    """{label: [(run_dir, records), ...]} in a stable, encoding-ordered label order. Records of
    an evaluation-time variant (e.g. RoPE scaling) form their own label, "<run> + <variant>"."""
    runs = {}
    for f in files:
        records = json.loads(Path(f).read_text())
        run_dir = os.path.dirname(f)
        for v in sorted({r.get("variant") or "" for r in records}):
            recs = [r for r in records if (r.get("variant") or "") == v]
            label = run_label(run_dir) + (VARIANT_SEP + v) * bool(v)
            runs.setdefault(label, []).append((run_dir, recs))
    rank = {enc: i for i, enc in enumerate(ENCODING_ORDER)}
    first = lambda label: (runs[label][0][1] or [{}])[0].get("encoding")  # of its first run
    return {k: runs[k] for k in sorted(runs, key=lambda k: (rank.get(first(k), len(rank)), k))}


def colours(labels):
    return {label: PALETTE[i % len(PALETTE)] for i, label in enumerate(labels)}


def length_label(n, _pos=None):
    return f"{n // 1024}k" if n >= 1024 and n % 1024 == 0 else f"{int(n)}"


def title_of(records, what, split="", mode=""):
    """A figure's title: dataset, split and what, over the runs' size, training length and mode."""
    r, params = records[0], records[0].get("n_params") or 0
    size = f"{params / 1e6:.1f}M" if params >= 1e6 else f"{params / 1e3:.0f}k"
    shape = f"{r.get('n_layer')}L/{r.get('n_head')}H/{r.get('n_embd')}d"
    trained = ", ".join(str(t) for t in sorted({x["block_size"] for x in records}))
    head = " ".join(filter(None, (r.get("dataset", "?"), split)))
    tail = f"{size} params ({shape}), trained at L={trained}" + f", {mode} evaluation" * bool(mode)
    return f"{head}: {what}\n{tail}"


def pick_mode(runs, split, mode):
    modes = {r["mode"] for v in runs.values() for _, recs in v for r in recs if r["split"] == split}
    if not modes:
        have = sorted({r["split"] for v in runs.values() for _, recs in v for r in recs})
        raise UserError(f"no results for split '{split}'; the results have: {', '.join(have)}")
    if mode and mode not in modes:
        raise UserError(f"no '{mode}' results; found: {', '.join(sorted(modes))}")
    return mode or ("nonoverlapping" if "nonoverlapping" in modes else sorted(modes)[0])


def log_length_axis(ax, lengths):
    ax.set_xscale("log", base=2)
    ax.set_xticks(lengths)
    ax.xaxis.set_major_formatter(FuncFormatter(length_label))
    ax.xaxis.set_minor_formatter(NullFormatter())


def mark_training_lengths(ax, train_lengths):
    for t in train_lengths:
        ax.axvline(t, color="0.35", ls="--", lw=1, zorder=0)
        where = dict(xycoords=("data", "axes fraction"), xytext=(4, -4), textcoords="offset points")
        ax.annotate(f"train length {t}", (t, 1), **where, va="top", fontsize=8, color="0.3")


def save(fig, out_dir, name):
    paths = [os.path.join(out_dir, f"{name}.{ext}") for ext in ("png", "svg")]
    for path in paths:
        fig.savefig(path, dpi=160, bbox_inches="tight")
    plt.close(fig)
    print("wrote " + " ".join(paths))
    return paths


def finish(fig, ax, title, xlabel, ylabel, out_dir, name):
    """Labels, grid and legend (right of the axes), then save(); nothing without a title."""
    if title is None:
        print(f"nothing to plot in {name}")
        plt.close(fig)
        return []
    ax.set(xlabel=xlabel, ylabel=ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1))
    return save(fig, out_dir, name)


def band_line(ax, by_x, colour, **kw):
    """Mean over seeds at each x of {x: [value per seed]}, +-1 sample std band if one has >= 2."""
    xs = sorted(by_x)
    mean = np.array([np.mean(by_x[x]) for x in xs])
    std = np.array([np.std(by_x[x], ddof=1) if len(by_x[x]) > 1 else 0.0 for x in xs])
    ax.plot(xs, mean, color=colour, **kw)
    if max(map(len, by_x.values()), default=0) > 1:
        ax.fill_between(xs, mean - std, mean + std, color=colour, alpha=0.18, lw=0)
    return mean


def seed_values(seeds, mode, values):
    """{length: values(record) of each seed} over the records of a mode that ran (None dropped)."""
    out = {}
    for r in (r for _, rs in seeds for r in rs if r["mode"] == mode and not r.get("skipped")):
        out.setdefault(r["length"], []).extend(v for v in values(r) if v is not None)
    return {x: v for x, v in out.items() if v}


def draw_metric(ax, runs, split, mode, metric, log_y, col):
    """The metric vs evaluation length, one line per run; returns (records, notes, what, log y)."""
    all_recs, all_vals, notes, lengths = [], [], [], set()
    for rank, (label, seeds) in enumerate(runs.items()):
        all_recs += [r for _, rs in seeds for r in rs]
        by_len = seed_values(seeds, mode, lambda r: [r.get(metric)])
        skipped = {r["length"] for _, rs in seeds for r in rs if r.get("skipped")}
        if not by_len:
            notes += [f"{label}: every length skipped"] * bool(skipped)
            continue
        lengths.update(by_len, skipped)
        n_seeds = max(len(v) for v in by_len.values())
        name = label + f" ({n_seeds} seeds)" * (n_seeds > 1)
        name += f" (none past {max(by_len)})" * bool(skipped)
        # one point (a learned table: nothing past it) gets a bigger marker; later runs are drawn
        # thinner and on top, so that identical curves both stay visible
        marker, ms = ("D", 7) if len(by_len) == 1 else ("o", 4)
        mean = band_line(ax, by_len, col[label], marker=marker, ms=ms, label=name,
                         lw=2.8 - 1.6 * rank / max(1, len(runs) - 1), zorder=3 + 0.01 * rank,
                         ls="--" if VARIANT_SEP in label else "-")  # fmt: skip
        all_vals += list(mean)
    if not all_vals:
        raise UserError(f"no '{metric}' values to plot for {split}/{mode} (try --metric=ppl)")
    log_length_axis(ax, sorted(lengths))
    mark_training_lengths(ax, sorted({r["block_size"] for r in all_recs}))
    wide = bool(max(all_vals) / max(min(all_vals), 1e-9) > 5)
    log = log_y == "yes" or (log_y == "auto" and wide and metric != "loss")
    if log:
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())
    unit = "byte-level " if all_recs[0].get("tokenizer") == "bytes" and metric == "ppl" else ""
    return all_recs, notes, unit + METRIC_NAMES.get(metric, metric), log


def plot_ppl_vs_length(runs, split, mode, metric, log_y, out_dir):
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    all_recs, notes, what, log = draw_metric(ax, runs, split, mode, metric, log_y, colours(runs))
    if notes:
        fig.text(0.01, -0.02, "; ".join(notes), fontsize=7, color="0.4")
    title = title_of(all_recs, f"{what} vs evaluation length", split, mode)
    ylabel = what + " (log scale)" * log
    return finish(fig, ax, title, "evaluation length (tokens)", ylabel, out_dir, "ppl_vs_length")


def plot_context(runs, context, split, mode, metric, log_y, out_dir):
    """Side by side: (a) the metric, (b) the distant-context gain vs evaluation length, (c) the
    copy probe's ratio vs distance D, with each run's retrieval horizon (docs/context.md)."""
    fig, (a, b, c) = plt.subplots(1, 3, figsize=(15, 4.2))
    col = colours(list(runs) + [k for k in context if k not in runs])  # ppl_vs_length's colours
    shown = {k: v for k, v in runs.items() if k in context} or runs
    recs, _, what, log = draw_metric(a, shown, split, mode, metric, log_y, col)
    kw = dict(marker="o", ms=4, lw=1.6)
    for label, seeds in context.items():
        by_len = seed_values(seeds, "gain", lambda r: [r.get("gain")])
        by_d = seed_values(seeds, "copy", lambda r: r.get("ratio_by_seed") or [r.get("ratio")])
        hs = sorted({r.get("horizon") or 0 for _, rs in seeds for r in rs if r["mode"] == "copy"})
        hs = [length_label(h) if h else "none" for h in hs] or ["not run"]  # 0: no horizon
        horizon = hs[0] + f" to {hs[-1]}" * (len(hs) > 1)  # the range over seeds
        band_line(b, by_len, col[label], **kw)
        band_line(c, by_d, col[label], **kw, label=f"{label}: horizon {horizon}")
        recs += [r for _, rs in seeds for r in rs]
    for ax in (b, c):
        log_length_axis(ax, sorted({int(x) for line in ax.lines for x in line.get_xdata()}))
        mark_training_lengths(ax, sorted({r["block_size"] for r in recs}))
    b.axhline(0, color="0.35", lw=1, zorder=0)
    c.axhline(0.5, color="0.35", ls=":", lw=1, zorder=0)
    for ax, t in ((a, "(a) " + what + " (log scale)" * log), (b, "(b) distant-context gain")):
        ax.set_title(t, fontsize=10)
        ax.set(xlabel="evaluation length (tokens)", ylabel="nats" if ax is b else what)
        ax.grid(True, which="major", alpha=0.3)
    what = f"{what}, distant-context gain and retrieval"
    fig.suptitle(title_of(recs, what, split, mode), fontsize=10, y=1.06)
    title, xlabel = "(c) copy probe: retrieval below 0.5", "distance D (tokens)"
    return finish(fig, c, title, xlabel, "repeat loss / first loss", out_dir, "context")


def pooled_positions(recs, bins_per_octave=6):
    """(bin centres, 1-based; mean loss) per position bin, every length of a run pooled (causal: a
    position's loss does not depend on the window length): 1..8 exact, then log-spaced bins."""
    longest = max(r["length"] for r in recs)
    n_log = max(2, int(bins_per_octave * math.log2(max(longest, 16) / 8)))
    log_edges = np.geomspace(8, max(longest, 16), n_log).round().astype(int).tolist()
    edges = [e for e in sorted(set(range(8)) | set(log_edges)) if e < longest] + [longest]
    num, den = np.zeros(len(edges) - 1), np.zeros(len(edges) - 1)
    for r in recs:
        e = r["per_position_edges"]
        counts = r.get("per_position_tokens") or [1] * len(r["per_position_loss"])
        for a, b, m, c in zip(e, e[1:], r["per_position_loss"], counts):
            if m is not None and c:
                k = int(np.searchsorted(edges, (a + b - 1) / 2, side="right")) - 1
                num[k] += m * c
                den[k] += c
    centres, ok = np.array([math.sqrt((a + 1) * b) for a, b in zip(edges, edges[1:])]), den > 0
    return centres[ok], num[ok] / den[ok]


def plot_per_position(runs, split, mode, out_dir):
    """Mean loss at each position of the evaluation window, one line per run."""
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    col = colours(runs)
    all_recs = []
    for label, seeds in runs.items():
        recs = [r for _, rs in seeds for r in rs if r.get("per_position_loss")]
        if not recs:
            continue
        xs, ys = pooled_positions(recs)
        all_recs += recs
        length = max(r["length"] for r in recs)
        name, ls = f"{label} (up to {length_label(length)})", "--" if VARIANT_SEP in label else "-"
        ax.plot(xs, ys, lw=1.6, ls=ls, color=col[label], label=name)
    if not all_recs:
        return finish(fig, ax, None, "", "", out_dir, "per_position_loss")
    inside = np.concatenate([line.get_ydata() for line in ax.lines])
    longest = max(r["length"] for r in all_recs)
    log_length_axis(ax, [2**k for k in range(0, int(math.log2(longest)) + 1, 2)] + [longest])
    mark_training_lengths(ax, sorted({r["block_size"] for r in all_recs}))
    # keep the models that extrapolate readable: the ones that collapse may leave the plot
    lo, hi = np.nanmin(inside), np.nanpercentile(inside, 90)
    ax.set_ylim(lo - 0.05 * (hi - lo), hi + 0.5 * (hi - lo))
    what = "loss at each position of the window, all lengths pooled"
    title = title_of(all_recs, what, split, mode)
    xlabel = "position in the evaluation window (1 = first token scored)"
    return finish(fig, ax, title, xlabel, "mean loss (nats/token)", out_dir, "per_position_loss")


def plot_training_curves(runs, out_dir):
    """Validation (solid) and training (dotted) loss of every run's log.jsonl."""
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    col = colours(runs)
    all_recs = []
    for label, seeds in runs.items():
        if VARIANT_SEP in label:  # same training run as its base label
            continue
        for i, (run_dir, recs) in enumerate(seeds):
            all_recs += recs
            log = Path(run_dir, "log.jsonl")
            lines = filter(str.strip, log.read_text().splitlines() if log.exists() else [])
            rows = [r for r in map(json.loads, lines) if r.get("val_loss") is not None]
            if not rows:
                continue
            its, val = zip(*((r["iter"], r["val_loss"]) for r in rows))
            ax.plot(its, val, color=col[label], lw=1.6, label=label if i == 0 else None)
            if all(r.get("train_loss") is not None for r in rows):
                ax.plot(its, [r["train_loss"] for r in rows], color=col[label], lw=0.9, ls=":")
    title = title_of(all_recs, "training curves (solid: val, dotted: train)") if ax.lines else None
    return finish(fig, ax, title, "iteration", "loss (nats/token)", out_dir, "training_curves")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    # several bare paths are allowed, so they are split off before the --key=value options
    paths = [a for a in argv if not a.startswith("-")]
    usage = "SWEEP_DIR|RUN_DIR|eval_lengths.json ... [--key=value ...]"
    cfg = parse_args([a for a in argv if a.startswith("-")], DEFAULTS, usage=usage)
    if not paths:
        raise UserError(f"usage: python scripts/plot.py {usage}")
    check_choice("--metric", cfg["metric"], METRIC_NAMES)
    check_choice("--log_y", cfg["log_y"], ("auto", "yes", "no"))
    if not (files := find_files(paths, "eval_lengths.json")):
        hint = "run sweep.py or eval_lengths.py first"
        raise UserError(f"no eval_lengths.json under {' '.join(paths)}: {hint}")
    runs = load_runs(files)
    dirs = [p if os.path.isdir(p) else os.path.dirname(os.path.abspath(p)) for p in paths]
    context = load_runs(find_files(dirs, "eval_context.json"))
    out_dir = cfg["out"] or next((p for p in paths if os.path.isdir(p)), os.path.dirname(paths[0]))
    os.makedirs(out_dir or ".", exist_ok=True)
    split, mode = cfg["split"], pick_mode(runs, cfg["split"], cfg["mode"])
    of = lambda recs, modes: [r for r in recs if r.get("split") == split and r["mode"] in modes]
    chosen = {label: [(d, of(recs, [mode])) for d, recs in seeds] for label, seeds in runs.items()}
    written = plot_ppl_vs_length(chosen, split, mode, cfg["metric"], cfg["log_y"], out_dir)
    written += plot_per_position(chosen, split, mode, out_dir)
    context = {k: [(d, of(rs, ("gain", "copy"))) for d, rs in v] for k, v in context.items()}
    if context := {k: v for k, v in context.items() if any(rs for _, rs in v)}:
        written += plot_context(chosen, context, split, mode, cfg["metric"], cfg["log_y"], out_dir)
    return written + plot_training_curves(runs, out_dir)


if __name__ == "__main__":
    run_cli(main)
