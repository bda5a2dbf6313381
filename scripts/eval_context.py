"""
Does a checkpoint use the context past its training length L_train? Two probes beyond perplexity;
the protocol, its costs and the record fields: docs/context.md.

    python scripts/eval_context.py --out_dir=out/alibi                  # L_train x 1, 2, ..., 32
    python scripts/eval_context.py --out_dir=out/rope --lengths=1024,4096 --tau=1.0 --span=16

Distant-context gain, per evaluation length L (nonoverlapping windows, as eval_lengths.py):
    gain(t) = NLL(t | its last L_train tokens) - NLL(t | its whole window)   (nats)
for targets t with at least L_train tokens of context in their window. The short context is a
window of its own, data[t - L_train : t] at positions 0 .. L_train - 1; a context of exactly
L_train tokens is not cut. > 0: the far context helps; 0: it is ignored; < 0: it hurts. Key
tokens: gain > tau (LongPPL's long-short difference, with the model under test as its own judge).
Targets: t whose q = (t - 1) mod 2 L_train is L_train - 1 + k target_stride (k >= 0): windows of
L_train x 2^j (j >= 1) start at multiples of 2 L_train, so these lengths all score the same
targets, and the short NLLs are computed once.

Copy probe (after Olsson et al. 2022), per distance D: in a window of real text, a span of R
random tokens (drawn from the evaluated tokens: ones the model has read) follows R tokens of text
and repeats D tokens after its start; ratio = mean NLL of the repeat's tokens 2..R / that of the
first occurrence's. Retrieval horizon: the largest D with ratio < 1/2.

Records merge into OUT_DIR/eval_context.json as eval_lengths.py merges its own.
"""

import itertools
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # repo root

import numpy as np
import torch

from configurator import UserError, check_at_least, fmt_float, parse_args, run_cli
from runtime import autocast, resolve_device
from scripts import eval_lengths
from scripts.eval_lengths import batch_for, cannot_run, finite_or_none, load, per_token_nll, windows

LONG_PASS = dict(mode="nonoverlapping", stride=0)  # the gain's long pass, for eval_lengths.load
# defaults, overridable as --key=value: eval_lengths.py's (but LONG_PASS's), and these
DEFAULTS = {k: v for k, v in eval_lengths.DEFAULTS.items() if k not in LONG_PASS} | dict(
    tau=0.5,  # key tokens: helped by the far context by more than tau nats
    target_stride=0,  # gain targets every target_stride tokens; 0: the training length // 4
    span=0,  # copy probe: random tokens repeated; 0: min(32, training length // 4)
    distances=(),  # copy probe: D between the span and its repeat; (): L_train x 1/4 ... 32
    placements=8,  # copy probe: windows of real text per distance and seed
    probe_seeds=3,  # copy probe: seeds 0 .. probe_seeds - 1 (spans and placements)
    output="eval_context.json",  # file name inside out_dir
)
# a figure for the table (fmt_float: a diverged model's perplexity has dozens of digits)
fmt = lambda x, spec="": "-" if x is None else format(x, spec) if spec else fmt_float(x, 3)


@torch.no_grad()
def batched_nll(run, rows, bsz, ctx, dev, index=None):
    """Per-token NLL (N, T - 1) of rows (N, T) or of rows[index]: inputs row[:-1], targets row[1:],
    bsz rows per forward of run (any module with GPT's forward)."""
    index = torch.arange(len(rows)) if index is None else index
    out = []
    for i in range(0, len(index), bsz):
        xy = rows[index[i : i + bsz]].to(dev)
        with ctx:
            logits, _ = run(xy[:, :-1])
        out.append(per_token_nll(logits, xy[:, 1:]).cpu())
    return torch.cat(out)


def long_nll(run, data, length, bsz, ctx, dev):
    """NLL of data[t] for t = 1 .. n (at index t - 1) in nonoverlapping windows of `length`."""
    out, wins = [], windows(len(data), length, "nonoverlapping", length)
    for n_in, group in itertools.groupby(wins, lambda w: w[1]):  # full windows, then the tail
        rows = torch.stack([data[s : s + n_in + 1] for s, _, _ in group])
        out.append(batched_nll(run, rows, bsz, ctx, dev).reshape(-1))
    return torch.cat(out)


def short_nll(run, data, targets, block, bsz, ctx, dev):
    """NLL of data[t] given exactly data[t - block : t] (positions 0 .. block - 1), per target."""
    rows = data.unfold(0, block + 1, 1)  # a view: row s is data[s : s + block + 1]
    return batched_nll(run, rows, bsz, ctx, dev, targets - block)[:, -1]


def gain_targets(n, block, every):
    """The gain probe's targets t in 1 .. n (see the module docstring)."""
    q = torch.arange(n) % (2 * block)  # (t - 1) mod 2 block for t = 1 .. n
    return torch.nonzero((q >= block - 1) & ((q - block + 1) % every == 0))[:, 0] + 1


def gain_stats(long, short, cut, tau):
    """Per-length figures from the targets' long and short NLLs; cut: their context was cut."""
    short = torch.where(cut, short, long).double()  # a context of <= L_train tokens is not cut
    long = long.double()
    diff = short - long
    helped = diff > tau
    key = math.exp(min(long[helped].mean().item(), 700.0)) if helped.any() else None
    mean = lambda x: finite_or_none(x.double().mean().item())
    return dict(tokens=len(long), gain=mean(diff), loss_long=mean(long), loss_short=mean(short),
                helped=mean(helped), hurt=mean(diff < -tau), key_tokens=int(helped.sum()),
                key_ppl=finite_or_none(key))  # fmt: skip


@torch.no_grad()
def copy_probe(run, data, distance, span, placements, seed, bsz, ctx, dev):
    """(first, repeat): NLLs (placements, span - 1) of tokens 2..span of a random span placed after
    `span` tokens of real text, and of its repeat `distance` tokens after its start."""
    rng = np.random.default_rng(seed)
    spans = data[torch.from_numpy(rng.integers(0, len(data), (placements, span)))]
    width = 2 * span + distance  # text, span, text up to the repeat, repeat
    starts = rng.integers(0, len(data) - width + 1, placements)
    rows = torch.stack([data[s : s + width] for s in starts])  # a copy: safe to write into
    rows[:, span : 2 * span] = rows[:, span + distance :] = spans
    nll = batched_nll(run, rows, bsz, ctx, dev)  # nll[:, i]: of rows[:, i + 1]
    return nll[:, span : 2 * span - 1], nll[:, span + distance :]


def copy_stats(runs):
    """Mean NLLs of the first occurrences and of the repeats over [(first, repeat) per seed], and
    ratio = repeat / first, in all and per seed."""
    mean = lambda xs: torch.cat([x.reshape(-1) for x in xs]).double().mean().item()
    ratio = lambda r, f: finite_or_none(mean(r) / mean(f)) if mean(f) > 0 else None
    first, repeat = [f for f, _ in runs], [r for _, r in runs]
    return dict(first_loss=finite_or_none(mean(first)), repeat_loss=finite_or_none(mean(repeat)),
                ratio=ratio(repeat, first),
                ratio_by_seed=[ratio([r], [f]) for f, r in runs])  # fmt: skip


def attempt(rec, why, what, *args):
    """what(*args), unless there is a reason `why` not to; None, with rec marked skipped and the
    reason printed, if so or if it fails: out of memory, or the model refuses the length."""
    try:
        if not why:
            rec["skipped"] = False
            return what(*args)
    except torch.OutOfMemoryError:
        why = "out of memory (lower --batch_size or --memory_budget_gb)"
    except ValueError as e:  # e.g. past a position table
        why = str(e)
    rec.update(skipped=True, reason=why)
    print(f"  {rec['mode']} at {rec['length']:>6}: skipped ({why})")
    return None


def gain_records(cfg, model, run, data, context, lens, ctx):
    """One record per evaluation length: the distant-context gain, or skipped with the reason."""
    block, dev = context["block_size"], cfg["device"]
    every = cfg["target_stride"] or max(1, block // 4)
    targets, short, records = gain_targets(len(data) - 1, block, every), None, []
    for length in lens:
        rec = dict(length=length, mode="gain", stride=length, split=cfg["split"], tau=cfg["tau"],
                   target_stride=every, **context)  # fmt: skip
        records.append(rec)
        pos, t0 = (targets - 1) % length, time.time()  # the targets' positions in their windows
        use = pos >= block - 1
        cut = pos[use] >= block
        why = cannot_run(model, length, len(data) - 1)
        if not why and not use.any():
            why = f"no target has {block} tokens of context in windows of {length}"
        bsz = batch_for(cfg, model, length)
        long = attempt(rec, why, long_nll, run, data, length, bsz, ctx, dev)
        if long is not None and short is None and cut.any():
            args = run, data, targets, block, batch_for(cfg, model, block), ctx, dev
            short = attempt(rec, None, short_nll, *args)
        if rec["skipped"]:
            continue
        long = long[targets[use] - 1]
        rec.update(gain_stats(long, short[use] if cut.any() else long, cut, cfg["tau"]))
        rec["elapsed_s"] = round(time.time() - t0, 2)
        print(f"  gain at {length:>6}: {fmt(rec['gain'], '+.4f')} nats  helped {rec['helped']:.3f}"
              f"  hurt {rec['hurt']:.3f}  key ppl {fmt(rec['key_ppl'])}  ({rec['tokens']:,} "
              "targets)")  # fmt: skip
    return records


def copy_records(cfg, model, run, data, context, ctx):
    """One record per distance D: the copy probe's losses and ratio, every record carrying the
    retrieval horizon (the largest D with ratio < 1/2; None: at no distance measured)."""
    block, dev = context["block_size"], cfg["device"]
    span = cfg["span"] or min(32, max(2, block // 4))
    dists = cfg["distances"] or tuple(sorted({max(1, block * 2**k // 4) for k in range(8)}))
    records = []
    for d in dists:
        rec = dict(length=d, mode="copy", stride=d, split=cfg["split"], distance=d, span=span,
                   placements=cfg["placements"], probe_seeds=cfg["probe_seeds"],
                   **context)  # fmt: skip
        records.append(rec)
        why = cannot_run(model, 2 * span + d - 1, len(data) - 1)
        if d < span:
            why = f"the repeat would overlap the span (distance {d} < span {span})"
        args = run, data, d, span, cfg["placements"]
        bsz, t0, runs = batch_for(cfg, model, 2 * span + d - 1), time.time(), []
        for seed in range(cfg["probe_seeds"]):
            runs.append(attempt(rec, why, copy_probe, *args, seed, bsz, ctx, dev))
            if runs[-1] is None:
                break
        if rec["skipped"]:
            continue
        rec.update(copy_stats(runs), elapsed_s=round(time.time() - t0, 2))
        first, repeat, ratio = (fmt(rec[k]) for k in ("first_loss", "repeat_loss", "ratio"))
        print(f"  copy at {d:>6}: first {first}  repeat {repeat}  ratio {ratio}")
    done = [r for r in records if not r["skipped"] and r["ratio"] is not None]
    horizon = max((r["distance"] for r in done if r["ratio"] < 0.5), default=None)
    for r in records:
        r["horizon"] = horizon
    print(f"  retrieval horizon: {fmt(horizon, 'd')} (span {span})")
    return records


def check_args(cfg):
    """The options' own rules (eval_lengths' and these), checked before a checkpoint is read."""
    eval_lengths.check_args(cfg | LONG_PASS)
    check_at_least(cfg, dict(target_stride=0, span=0, placements=1, probe_seeds=1))
    if cfg["span"] == 1:
        raise UserError("--span must be at least 2 (its tokens 2.. are scored), or 0 (default)")
    if cfg["tau"] <= 0:
        raise UserError(f"--tau must be positive (nats), got {cfg['tau']}")
    if not all(isinstance(d, int) and d > 0 for d in cfg["distances"]):
        raise UserError("--distances must be positive integers like --distances=64,256")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    cfg = parse_args(argv, DEFAULTS, sources=[__file__, eval_lengths.__file__])
    check_args(cfg)
    cfg["device"] = resolve_device(cfg["device"])
    cfg |= LONG_PASS
    model, run, data, meta, context, lens = load(cfg)
    ctx = autocast(cfg["device"], cfg["dtype"])
    results = gain_records(cfg, model, run, data, context, lens, ctx)
    results += copy_records(cfg, model, run, data, context, ctx)
    eval_lengths.write(cfg, results, context)
    return results


if __name__ == "__main__":
    run_cli(main)
