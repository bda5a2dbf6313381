"""
Perplexity of one checkpoint at several evaluation lengths: train short, evaluate long. Every
length scores the same tokens; records merge into OUT_DIR/eval_lengths.json. The protocol, metrics
and record fields: docs/evaluation.md.

    python scripts/eval_lengths.py --out_dir=out/alibi --lengths=512,1024,4096 --split=test
    python scripts/eval_lengths.py --out_dir=out/alibi --mode=sliding --stride=256 --compile=True
"""

import itertools
import json
import math
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # repo root

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from checkpoint import ROPE_FACTOR, eval_precision, load_model, variant_label
from configurator import UserError, check_at_least, check_choice, fmt_float, parse_args, run_cli
from data.prepare import SPLITS, load_meta, write_json
from runtime import autocast, compiles, resolve_device

# defaults, overridable as --key=value
DEFAULTS = dict(
    out_dir="out",  # the run directory holding ckpt.pt
    lengths=(),  # e.g. --lengths=512,1024; empty: the training length x 1, 2, 4, 8, 16, 32
    mode="nonoverlapping",  # nonoverlapping | sliding
    stride=0,  # sliding only; 0 means length // 4
    split="val",  # val | test | train
    max_tokens=0,  # score only the split's first max_tokens tokens (the same ones at every length)
    batch_size=0,  # windows per forward pass; 0 picks it from memory_budget_gb
    memory_budget_gb=1.0,  # bound on the logits of one batch (B * T * vocab * 4 bytes)
    data_dir="",  # default: the data_dir the checkpoint was trained with
    encoding_kwargs={},  # override encoding options at evaluation time
    rope_scaling="",  # RoPE context extension: linear | dynamic | yarn | llama3 (rope, damped_rope)
    rope_factor=ROPE_FACTOR,  # its factor (how many times the training length it aims at)
    attn_backend="auto",  # auto (FlexAttention for ALiBi, T5, Shaw... on CUDA) | sdpa | flex
    variant="",  # label of an evaluation-time change (default: "yarn x8" from the options above)
    device="auto",  # auto (cuda if available, else cpu), cpu, cuda, cuda:1, mps
    dtype="",  # "": the checkpoint's (its dtype and TF32, as it trained); or float32 | bfloat16 ...
    compile=False,  # torch.compile the model (CUDA or CPU), with dynamic shapes: many lengths
    output="eval_lengths.json",  # file name inside out_dir
)
MODES = ("nonoverlapping", "sliding")
LENGTH_MULTIPLIERS = (1, 2, 4, 8, 16, 32)
MAX_BUCKETS = 256
MIN_QUERY_BLOCK = 64  # the smallest attention query block an out-of-memory retry goes down to


def windows(n_tokens, length, mode, stride):
    """The windows covering tokens[0:n_tokens] as (start, n_in, n_score): inputs tokens[start :
    start + n_in], targets one later, the last n_score scored; targets 1 .. n_tokens-1 once each."""
    n_targets = n_tokens - 1
    if mode == "nonoverlapping":
        starts = range(0, n_targets, length)
        return [(s, min(length, n_targets - s), min(length, n_targets - s)) for s in starts]
    end = min(length, n_targets)  # targets scored so far: 1 .. end
    out = [(0, end, end)]
    while end < n_targets:
        new_end = min(end + stride, n_targets)
        out.append((new_end - length, length, new_end - end))
        end = new_end
    return out


def position_edges(length):
    """Bucket edges for per-position losses: exact when short, log-spaced past position 64."""
    if length <= MAX_BUCKETS:
        return list(range(length + 1))
    tail = np.geomspace(64, length, MAX_BUCKETS - 64 + 1).round().astype(int)
    return sorted(set(range(64)) | set(tail.tolist()))


def per_token_nll(logits, targets):
    """NLL of every target, float32, (B, T); by rows, so a float32 copy of logits stays < 256 MB."""
    B, T, V = logits.shape
    flat, tgt = logits.reshape(B * T, V), targets.reshape(B * T)
    rows = max(1, (256 << 20) // (4 * V))
    nll = [F.cross_entropy(flat[i : i + rows].float(), tgt[i : i + rows], reduction="none")
           for i in range(0, B * T, rows)]  # fmt: skip
    return torch.cat(nll).view(B, T)


@torch.no_grad()
def evaluate_length(model, data, length, mode, stride, bsz, ctx, dev, progress):
    """Score data (1-D int64 tensor) at one length: total NLL, tokens, NLL/count by position."""
    sum_pos, total = torch.zeros(length, dtype=torch.float64), 0.0
    cnt_pos = torch.zeros(length, dtype=torch.int64)
    # windows of equal size go through the model together; only the last one can be shorter
    for n_in, group in itertools.groupby(windows(len(data), length, mode, stride), lambda w: w[1]):
        group = list(group)
        for batch in (group[i : i + bsz] for i in range(0, len(group), bsz)):
            xy = torch.stack([data[s : s + n_in + 1] for s, _, _ in batch]).to(dev)
            with ctx:
                logits, _ = model(xy[:, :-1])
            # score only the last n_score positions of each window
            scored = torch.arange(n_in) >= torch.tensor([n_in - k for _, _, k in batch])[:, None]
            nll = per_token_nll(logits, xy[:, 1:]).double().cpu() * scored
            total += nll.sum().item()
            sum_pos[:n_in] += nll.sum(0)
            cnt_pos[:n_in] += scored.sum(0)
            progress.update(sum(k for _, _, k in batch))
    return total, int(cnt_pos.sum()), sum_pos, cnt_pos


def load_split(data_dir, split, tcfg):
    """(meta, read-only memmap of the tokens) of a split of the dataset of training config tcfg."""
    dataset_dir = os.path.join(data_dir or tcfg.get("data_dir", "data"), tcfg["dataset"])
    meta = load_meta(dataset_dir)
    path = os.path.join(dataset_dir, f"{split}.bin")
    return meta, np.memmap(path, dtype=meta["dtype"], mode="r")


def evaluate_fitting(model, run, data, rec, bsz, ctx, dev, progress):
    """evaluate_length of `run` (model, or it compiled) at rec's length; out of memory, again at
    half the batch (down to 1), then half the query block (down to MIN_QUERY_BLOCK), else None."""
    attns = [m for m in model.modules() if hasattr(m, "query_block")]
    saved = [m.query_block for m in attns]
    qb, done = min(saved, default=MIN_QUERY_BLOCK), progress.n
    try:
        while True:
            try:
                args = rec["length"], rec["mode"], rec["stride"], bsz, ctx, dev, progress
                return evaluate_length(run, data, *args)
            except torch.OutOfMemoryError:
                pass  # leave the except block first: its traceback holds the batch's tensors
            torch.cuda.empty_cache()  # (a no-op without CUDA)
            progress.update(done - progress.n)  # the next attempt scores those tokens again
            if bsz > 1:
                bsz //= 2
                what = f"batch {bsz}"
            elif qb > MIN_QUERY_BLOCK:
                qb = max(MIN_QUERY_BLOCK, qb // 2)
                for m in attns:
                    m.query_block = qb
                what = f"attention query block {qb}"
            else:
                return None
            progress.write(f"  length {rec['length']:>6}: out of memory; retrying with {what}")
    finally:
        for m, q in zip(attns, saved):
            m.query_block = q


def batch_for(cfg, model, length):
    """Windows per forward: --batch_size, or what keeps one batch's logits in the memory budget."""
    fit = cfg["memory_budget_gb"] * 2**30 // (length * model.config.vocab_size * 4)
    return cfg["batch_size"] or int(max(1, min(64, fit)))


def cannot_run(model, length, n_scored, encoding="the encoding"):
    """Why windows of `length` inputs cannot be evaluated on n_scored targets (None: they can)."""
    max_len = getattr(model, "max_len", None)  # a stand-in for a GPT may have none
    if max_len is not None and length > max_len:
        return f"{encoding} has positions only up to {max_len}"
    if n_scored < length:
        return (
            f"the evaluated range has only {n_scored} tokens (--max_tokens, if set, or the split)"
        )
    return None


def bucketed(sum_pos, cnt_pos, edges):
    """Mean loss and number of scored tokens in each bucket of positions."""
    counts = [int(cnt_pos[a:b].sum()) for a, b in zip(edges[:-1], edges[1:])]
    sums = [float(sum_pos[a:b].sum()) for a, b in zip(edges[:-1], edges[1:])]
    return [s / c if c else None for s, c in zip(sums, counts)], counts


def finite_or_none(x):
    return x if x is not None and math.isfinite(x) else None


# -----------------------------------------------------------------------------
# the steps of main: load, evaluate the lengths, write


def load(cfg):
    """(model, what evaluation calls (it, or compiled), the evaluated tokens, the split's meta, the
    context every record repeats, the lengths)."""
    if os.path.isdir(cfg["out_dir"]) and not os.access(cfg["out_dir"], os.W_OK):
        raise UserError(f"cannot write {cfg['output']} into {cfg['out_dir']}: make it writable")
    scaling, factor = cfg["rope_scaling"] or None, cfg["rope_factor"]
    model, ckpt = load_model(cfg["out_dir"], cfg["device"], cfg)
    cfg["dtype"], tf32 = eval_precision(ckpt, cfg["device"], cfg["dtype"])
    compiled, note = compiles(cfg["compile"], torch.device(cfg["device"]).type)
    if note:
        print(f"note: {note}")
    run = torch.compile(model, dynamic=True) if compiled else model  # dynamic: no graph per length
    margs, tcfg = ckpt["model_args"], ckpt.get("config", {})
    lens = cfg["lengths"] or tuple(margs["block_size"] * m for m in LENGTH_MULTIPLIERS)
    meta, data = load_split(cfg["data_dir"], cfg["split"], tcfg)
    whole_split = cfg["max_tokens"] <= 0 or cfg["max_tokens"] + 1 >= len(data)
    data = torch.from_numpy(data[: None if whole_split else cfg["max_tokens"] + 1].astype(np.int64))
    context = dict(
        encoding=margs["encoding"],
        encoding_kwargs=model.config.encoding_kwargs,  # as evaluated, overrides included
        rope_scaling=scaling, rope_factor=factor if scaling else None,
        variant=cfg["variant"] or variant_label(cfg),
        block_size=margs["block_size"], dataset=tcfg.get("dataset"),
        tokenizer=meta.get("tokenizer"), n_params=model.get_num_params(),
        **{k: margs.get(k) for k in ("n_layer", "n_head", "n_embd")},
        iter_num=ckpt.get("iter_num"), seed=tcfg.get("seed"),
        max_tokens=0 if whole_split else cfg["max_tokens"], out_dir=cfg["out_dir"],
        dtype=cfg["dtype"], tf32=tf32,
    )  # fmt: skip
    print(f"{cfg['out_dir']}: {margs['encoding']}, trained at {margs['block_size']}, {cfg['split']}"
          f" split, {len(data) - 1:,} tokens scored per length, mode {cfg['mode']}, {cfg['dtype']}"
          f"{' + TF32' * tf32}")  # fmt: skip
    return model, run, data, meta, context, lens


def score(rec, scored, meta):
    """Fill rec from scored = (total NLL, tokens, NLL and count by position); returns a summary."""
    total, tokens, sum_pos, cnt_pos = scored
    loss = total / tokens
    ppl = math.exp(min(loss, 700.0))
    rec.update(skipped=False, loss=finite_or_none(loss), ppl=finite_or_none(ppl), tokens=tokens)
    by_byte = meta.get("tokenizer") == "bytes"
    text = f"loss {fmt_float(loss, 4)}  ppl {fmt_float(ppl, 3)}"
    if by_byte:
        rec["bits_per_byte"] = finite_or_none(loss / math.log(2))
        text += f"  bpb {fmt_float(loss / math.log(2), 4)}"
    # fairseq's word-level count (words + one end-of-line per line), else whitespace words
    counts = meta.get("splits", {}).get(rec["split"], {})
    per = "word_level_tokens" if counts.get("word_level_tokens") else "words"
    if rec["max_tokens"] == 0 and counts.get(per):  # a prefix has no exact word count
        word_ppl = math.exp(min(total / counts[per], 700.0))
        rec.update(word_ppl=finite_or_none(word_ppl), word_ppl_denominator=per)
        rec["word_ppl_count"] = counts[per]
        old = " (per whitespace word: an old meta.json, rerun data/prepare.py)" * (per == "words")
        # recorded, printed for subword tokenizers: of a byte model, bits per byte says it
        text += f"  word ppl {fmt_float(word_ppl)}{old}" * (not by_byte)
    edges = position_edges(rec["length"])
    means, counts = bucketed(sum_pos, cnt_pos, edges)
    rec.update(per_position_loss=means, per_position_edges=edges, per_position_tokens=counts)
    return text


def evaluate_lengths(cfg, model, run, data, meta, context, lens):
    """One record per length: its figures, or skipped with the reason."""
    n_scored, records = len(data) - 1, []
    # a bar on a terminal only (in a sweep's log one line per length is enough); lines above it
    progress = tqdm(total=len(lens) * n_scored, unit="tok", unit_scale=True, disable=None)
    say = progress.write
    ctx, dev = autocast(cfg["device"], cfg["dtype"]), cfg["device"]
    for length in lens:
        st = length if cfg["mode"] == "nonoverlapping" else (cfg["stride"] or max(1, length // 4))
        rec = dict(length=length, mode=cfg["mode"], stride=st, split=cfg["split"], **context)
        records.append(rec)
        t0, start, scored = time.time(), progress.n, None
        reason = cannot_run(model, length, n_scored, context["encoding"])
        if not reason and st > length:
            reason = f"stride {st} is longer than the window"
        if not reason:
            bsz = batch_for(cfg, model, length)
            try:
                scored = evaluate_fitting(model, run, data, rec, bsz, ctx, dev, progress)
                reason = "out of memory"  # if scored is None: not even at batch 1
            except ValueError as e:  # the model refuses this length (e.g. past a position table)
                reason = str(e)
        if scored is None:  # skipped: the other lengths still count
            rec.update(skipped=True, reason=reason)
            progress.update(start + n_scored - progress.n)
            say(f"  length {length:>6}: skipped ({reason})")
            continue
        text = score(rec, scored, meta)
        rec["elapsed_s"] = round(time.time() - t0, 2)
        say(f"  length {length:>6}: {text}  ({rec['tokens']:,} tokens, {rec['elapsed_s']:.1f}s)")
    progress.close()
    return records


def write(cfg, results, context):
    """Merge results into out_dir's JSON: ours replace records with the same key; records of an
    earlier checkpoint, and of this split with another max_tokens, are dropped."""
    out_path = os.path.join(cfg["out_dir"], cfg["output"])
    old = json.loads(Path(out_path).read_text()) if os.path.exists(out_path) else []
    stale = [r for r in old if r.get("iter_num") != context["iter_num"]]
    other = [r for r in old if r not in stale and r.get("split") == cfg["split"]
             and r.get("max_tokens") != context["max_tokens"]]  # fmt: skip
    for dropped, what in ((stale, "of an earlier checkpoint"), (other, "of another --max_tokens")):
        if dropped:
            print(f"dropping {len(dropped)} records {what} from {out_path}")
    var = lambda r: (json.dumps(r.get("encoding_kwargs"), sort_keys=True), r.get("variant") or "")
    key = lambda r: (r["split"], r["mode"], r["stride"], r["length"], *var(r))
    new_keys = {key(r) for r in results}
    old = [r for r in old if r not in stale + other and key(r) not in new_keys]
    merged = sorted(old + results, key=lambda r: (r["split"], r["mode"], r["length"], r["stride"]))
    write_json(out_path, merged, indent=1)
    print(f"wrote {out_path}")


def check_args(cfg):
    """The options' own rules, checked before a checkpoint is read (and by a sweep, up front)."""
    check_choice("--mode", cfg["mode"], MODES)
    check_choice("--split", cfg["split"], SPLITS)
    zero = dict(stride="length // 4", max_tokens="the whole split", batch_size="auto")
    check_at_least(cfg, dict.fromkeys(zero, 0), zero)
    if not all(isinstance(n, int) and n > 0 for n in cfg["lengths"]):
        lens = cfg["lengths"]
        raise UserError(f"--lengths must be positive integers like --lengths=512,1024, got {lens}")


def main(argv=None):
    cfg = parse_args(sys.argv[1:] if argv is None else argv, DEFAULTS)
    check_args(cfg)
    cfg["device"] = resolve_device(cfg["device"])
    model, run, data, meta, context, lens = load(cfg)
    results = evaluate_lengths(cfg, model, run, data, meta, context, lens)
    write(cfg, results, context)
    return results


if __name__ == "__main__":
    run_cli(main)
