"""
Perplexity of one checkpoint at several evaluation lengths: train short, evaluate long.

    python scripts/eval_lengths.py --out_dir=out/alibi
    python scripts/eval_lengths.py --out_dir=out/alibi --lengths=512,1024,4096 --split=test
    python scripts/eval_lengths.py --out_dir=out/alibi --mode=sliding --stride=256
    python scripts/eval_lengths.py --out_dir=out/alibi --compile=True    # torch.compile, CUDA/CPU

Protocol (what is scored, and how it is normalized):
- The evaluated range is the split's first `max_tokens + 1` tokens (the whole split when max_tokens
  is 0). Token 0 has no context and is never scored; every other token of the range is scored
  exactly once, at every length, so all lengths score the *same* tokens and are comparable.
- nonoverlapping (the ALiBi paper's default, fairseq's eval_lm): the range is cut into windows of
  `length` tokens; every token of a window is scored. The tail that does not fill a whole window
  is scored in one shorter final window (as fairseq does), so nothing is dropped.
- sliding: window ends advance by `stride`; the first window scores all of its tokens, every
  later one only its last `stride` tokens (the last window scores what is left). Every scored
  token except those of the first window sees at least `length - stride` tokens of context.
- loss = total NLL / tokens scored (nats), ppl = exp(loss). For byte tokenizers bits_per_byte =
  loss / ln 2. word_ppl = exp(total NLL / word_level_tokens of the split) is written only when
  the whole split is evaluated (max_tokens=0): a prefix has no exact word count. That count
  (data/prepare.py's meta.json) is whitespace words + one end-of-line per line, what fairseq's
  eval_lm scores on the word-level WikiText-103 (217,646 validation tokens): the ALiBi paper's
  normalization. Records name it (word_ppl_denominator, word_ppl_count); with a meta.json that
  predates it, word_ppl falls back to whitespace words and says so.
- per_position_loss[i] is the mean loss of the tokens scored at window positions
  [per_position_edges[i], per_position_edges[i+1]): exact positions up to 256, beyond that
  positions 0..63 exactly and log-spaced buckets after, at most 256 buckets in all;
  per_position_tokens[i] is the number of tokens scored in that bucket.
- Lengths the model cannot run (learned absolute positions past their table) are recorded with
  skipped=true and the reason, and so are lengths longer than the evaluated range. A length that
  runs out of memory is retried with half the batch (down to 1), then half the attention query
  block (down to 64); if it still does not fit it is skipped with reason "out of memory".

Results are merged into OUT_DIR/eval_lengths.json (a list of records, one per split, mode, stride
and length; every record repeats the run's context so plots need nothing else). Records of an
earlier checkpoint (different iter_num), and of the same split with another max_tokens, are
dropped.
"""

import json
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # repo root

import numpy as np
import torch
import torch.nn.functional as F

from checkpoint import ROPE_FACTOR, load_model, variant_label
from configurator import UserError, parse_args, run_cli
from data.prepare import load_meta, write_json
from runtime import autocast, resolve_device

# defaults, overridable as --key=value
DEFAULTS = dict(
    out_dir="out",  # the run directory holding ckpt.pt
    lengths=(),  # e.g. --lengths=512,1024; empty: the training length x 1, 2, 4, 8, 16, 32
    mode="nonoverlapping",  # nonoverlapping | sliding
    stride=0,  # sliding only; 0 means length // 4
    split="val",  # val | test
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
    dtype="bfloat16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "float32",
    compile=False,  # torch.compile the model (CUDA or CPU), with dynamic shapes: many lengths
    output="eval_lengths.json",  # file name inside out_dir
)

MODES = ("nonoverlapping", "sliding")
LENGTH_MULTIPLIERS = (1, 2, 4, 8, 16, 32)
MAX_BUCKETS = 256
MIN_QUERY_BLOCK = 64  # the smallest attention query block an out-of-memory retry goes down to


def windows(n_tokens, length, mode, stride):
    """The windows covering tokens[0:n_tokens], as (start, n_in, n_score) triples: the inputs are
    tokens[start : start + n_in], the targets are shifted by one, and the last n_score targets are
    scored. Targets 1 .. n_tokens-1 are each scored exactly once."""
    n_targets = n_tokens - 1
    out = []
    if mode == "nonoverlapping":
        for start in range(0, n_targets, length):
            n = min(length, n_targets - start)
            out.append((start, n, n))
    else:
        end = min(length, n_targets)  # targets scored so far: 1 .. end
        out.append((0, end, end))
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
    """NLL of every target, float32, (B, T). Done in slices of rows so the float32 copy of the
    logits never exceeds ~256 MB even for a 50k vocabulary."""
    B, T, V = logits.shape
    flat, tgt = logits.reshape(B * T, V), targets.reshape(B * T)
    rows = max(1, (256 << 20) // (4 * V))
    nll = torch.cat(
        [
            F.cross_entropy(flat[i : i + rows].float(), tgt[i : i + rows], reduction="none")
            for i in range(0, B * T, rows)
        ]
    )
    return nll.view(B, T)


@torch.no_grad()
def evaluate_length(model, data, length, mode, stride, bsz, ctx, dev, progress=None):
    """Score data (1-D int64 tensor) at one length: total NLL, tokens, NLL/count by position."""
    wins = windows(len(data), length, mode, stride)
    sum_pos = torch.zeros(length, dtype=torch.float64)
    cnt_pos = torch.zeros(length, dtype=torch.int64)
    total = 0.0
    # windows of equal size go through the model together; only the last one can be shorter
    i = 0
    while i < len(wins):
        n_in = wins[i][1]
        batch = [wins[i]]
        while len(batch) < bsz and i + len(batch) < len(wins) and wins[i + len(batch)][1] == n_in:
            batch.append(wins[i + len(batch)])
        i += len(batch)
        x = torch.stack([data[s : s + n_in] for s, _, _ in batch]).to(dev)
        y = torch.stack([data[s + 1 : s + 1 + n_in] for s, _, _ in batch]).to(dev)
        with ctx:
            logits, _ = model(x)
        nll = per_token_nll(logits, y).double().cpu()
        # score only the last n_score positions of each window
        scored = (
            torch.arange(n_in)[None, :] >= torch.tensor([n_in - k for _, _, k in batch])[:, None]
        )
        nll = nll * scored
        total += nll.sum().item()
        sum_pos[:n_in] += nll.sum(0)
        cnt_pos[:n_in] += scored.sum(0)
        if progress is not None:
            progress.update(sum(k for _, _, k in batch))
    return total, int(cnt_pos.sum()), sum_pos, cnt_pos


def load_split(data_dir, split, tcfg):
    """(meta, tokens as a read-only memmap) of the split of the dataset the run trained on (tcfg:
    its saved config), in data_dir or, if that is empty, where the run found its data."""
    dataset_dir = os.path.join(data_dir or tcfg.get("data_dir", "data"), tcfg["dataset"])
    meta = load_meta(dataset_dir)
    path = os.path.join(dataset_dir, f"{split}.bin")
    return meta, np.memmap(path, dtype=meta["dtype"], mode="r")


def evaluate_fitting(model, run, data, rec, bsz, ctx, dev, progress=None, say=print):
    """evaluate_length of model (called as `run`, e.g. compiled) at rec's length; after running
    out of memory, again with half the batch (down to 1), then with half the attention query
    block (down to MIN_QUERY_BLOCK; memory O(block * length)). None if even that does not fit.
    The model's query blocks are restored afterwards, for the next length."""
    attns = [m for m in model.modules() if hasattr(m, "query_block")]
    saved = [m.query_block for m in attns]
    qb = min(saved, default=MIN_QUERY_BLOCK)
    done = progress.n if progress is not None else 0
    try:
        while True:
            try:
                args = rec["length"], rec["mode"], rec["stride"], bsz, ctx, dev, progress
                return evaluate_length(run, data, *args)
            except torch.OutOfMemoryError:
                pass  # leave the except block first: its traceback holds the batch's tensors
            if dev.startswith("cuda"):
                torch.cuda.empty_cache()
            if progress is not None:
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
            say(f"  length {rec['length']:>6}: out of memory; retrying with {what}")
    finally:
        for m, q in zip(attns, saved):
            m.query_block = q


def bucketed(sum_pos, cnt_pos, edges):
    """Mean loss and number of scored tokens in each bucket of positions."""
    means, counts = [], []
    for a, b in zip(edges[:-1], edges[1:]):
        c = int(cnt_pos[a:b].sum())
        means.append(float(sum_pos[a:b].sum()) / c if c else None)
        counts.append(c)
    return means, counts


def finite_or_none(x):
    return x if x is not None and math.isfinite(x) else None


def record_key(r):
    kwargs = json.dumps(r.get("encoding_kwargs"), sort_keys=True)
    return (r["split"], r["mode"], r["stride"], r["length"], kwargs, r.get("variant") or "")


def main(argv=None):
    cfg = parse_args(sys.argv[1:] if argv is None else argv, DEFAULTS)
    if cfg["mode"] not in MODES:
        raise UserError(f"--mode must be one of {', '.join(MODES)}, got '{cfg['mode']}'")
    if cfg["split"] not in ("val", "test", "train"):
        raise UserError(f"--split must be val or test, got '{cfg['split']}'")

    cfg["device"] = resolve_device(cfg["device"])
    model, ckpt = load_model(
        cfg["out_dir"],
        device=cfg["device"],
        encoding_kwargs_override=cfg["encoding_kwargs"] or None,
        rope_scaling=cfg["rope_scaling"] or None,
        rope_factor=cfg["rope_factor"],
        attn_backend=cfg["attn_backend"],
    )
    run = model  # what evaluation calls: the model, or the compiled model
    if cfg["compile"] and cfg["device"] == "mps":
        print("note: --compile is not used on MPS (experimental there); evaluating eager")
    elif cfg["compile"]:
        run = torch.compile(model, dynamic=True)  # dynamic: not one graph per length and batch
    margs, tcfg = ckpt["model_args"], ckpt.get("config", {})
    block_size = margs["block_size"]
    lens = cfg["lengths"]
    lens = (lens,) if isinstance(lens, int) else tuple(lens)
    lens = lens or tuple(block_size * m for m in LENGTH_MULTIPLIERS)
    if not all(isinstance(n, int) and n > 0 for n in lens):
        raise UserError(f"--lengths must be positive integers like --lengths=512,1024, got {lens}")
    if cfg["mode"] == "sliding" and cfg["stride"] < 0:
        raise UserError("--stride must be positive (or 0 for length // 4)")

    meta, data = load_split(cfg["data_dir"], cfg["split"], tcfg)
    whole_split = cfg["max_tokens"] <= 0 or cfg["max_tokens"] + 1 >= len(data)
    n_tokens = len(data) if whole_split else cfg["max_tokens"] + 1
    data = torch.from_numpy(data[:n_tokens].astype(np.int64))

    dev = cfg["device"]
    ctx = autocast(dev, cfg["dtype"])
    max_len = getattr(model, "max_len", None)
    context = {
        "encoding": margs.get("encoding"),
        "encoding_kwargs": model.config.encoding_kwargs,  # as evaluated, overrides included
        "rope_scaling": cfg["rope_scaling"] or None,
        "rope_factor": cfg["rope_factor"] if cfg["rope_scaling"] else None,
        "variant": cfg["variant"]
        or variant_label(cfg["rope_scaling"], cfg["rope_factor"], cfg["encoding_kwargs"]),
        "block_size": block_size,
        "dataset": tcfg.get("dataset"),
        "tokenizer": meta.get("tokenizer"),
        "n_params": model.get_num_params(),
        "n_layer": margs.get("n_layer"),
        "n_head": margs.get("n_head"),
        "n_embd": margs.get("n_embd"),
        "iter_num": ckpt.get("iter_num"),
        "seed": tcfg.get("seed"),
        "max_tokens": 0 if whole_split else cfg["max_tokens"],
        "out_dir": cfg["out_dir"],
    }
    print(
        f"{cfg['out_dir']}: {context['encoding']}, trained at {block_size}, "
        f"{cfg['split']} split, {n_tokens - 1:,} tokens scored per length, mode {cfg['mode']}"
    )

    results = []
    todo = []
    for length in lens:
        st = length if cfg["mode"] == "nonoverlapping" else (cfg["stride"] or max(1, length // 4))
        rec = {"length": length, "mode": cfg["mode"], "stride": st, "split": cfg["split"]}
        rec.update(context)
        if max_len is not None and length > max_len:
            reason = f"{context['encoding']} has positions only up to {max_len}"
        elif n_tokens - 1 < length:
            reason = f"the evaluated range has only {n_tokens - 1} tokens (raise --max_tokens)"
        elif st > length:
            reason = f"stride {st} is longer than the window"
        else:
            todo.append(rec)
            continue
        rec.update(skipped=True, reason=reason)
        results.append(rec)
        print(f"  length {length:>6}: skipped ({reason})")

    progress = None
    try:
        from tqdm import tqdm

        # the bar appears on a terminal only; in a sweep's log one line per length is enough
        progress = tqdm(total=len(todo) * (n_tokens - 1), unit="tok", unit_scale=True, disable=None)
    except ImportError:
        pass
    say = progress.write if progress is not None else print  # lines that do not break the bar
    vocab = margs["vocab_size"]
    for rec in todo:
        length = rec["length"]
        # bound the logits of a batch; at least one window, at most 64
        bsz = cfg["batch_size"] or int(
            max(1, min(64, cfg["memory_budget_gb"] * 2**30 // (length * vocab * 4)))
        )
        t0 = time.time()
        try:
            scored = evaluate_fitting(model, run, data, rec, bsz, ctx, dev, progress, say)
        except ValueError as e:  # the model refuses this length (e.g. past a position table)
            rec.update(skipped=True, reason=str(e))
            results.append(rec)
            say(f"  length {length:>6}: skipped ({e})")
            continue
        if scored is None:  # never fail the whole evaluation: the other lengths still count
            rec.update(skipped=True, reason="out of memory")
            results.append(rec)
            say(f"  length {length:>6}: skipped (out of memory, even at batch 1)")
            continue
        total, tokens, sum_pos, cnt_pos = scored
        loss = total / tokens
        edges = position_edges(length)
        rec.update(
            skipped=False,
            loss=finite_or_none(loss),
            ppl=finite_or_none(math.exp(min(loss, 700.0))),
            tokens=tokens,
        )
        if meta.get("tokenizer") == "bytes":
            rec["bits_per_byte"] = finite_or_none(loss / math.log(2))
        # fairseq's word-level count (words + one end-of-line per line); a meta.json written
        # before it has only whitespace words, a few % fewer: the record says which it used
        split_counts = meta.get("splits", {}).get(cfg["split"], {})
        per = "word_level_tokens" if split_counts.get("word_level_tokens") else "words"
        if whole_split and split_counts.get(per):
            rec["word_ppl"] = finite_or_none(math.exp(min(total / split_counts[per], 700.0)))
            rec.update(word_ppl_denominator=per, word_ppl_count=split_counts[per])
        means, counts = bucketed(sum_pos, cnt_pos, edges)
        rec.update(per_position_loss=means, per_position_edges=edges, per_position_tokens=counts)
        rec["elapsed_s"] = round(time.time() - t0, 2)
        results.append(rec)
        extra = f"  bpb {rec['bits_per_byte']:.4f}" if "bits_per_byte" in rec else ""
        if "word_ppl" in rec:
            old = " (per whitespace word: an old meta.json, rerun data/prepare.py)"
            extra += f"  word ppl {rec['word_ppl']:.2f}{old if per == 'words' else ''}"
        msg = f"  length {length:>6}: loss {loss:.4f}  ppl {rec['ppl']:.3f}{extra}"
        msg += f"  ({tokens:,} tokens, {rec['elapsed_s']:.1f}s)"
        say(msg)
    if progress is not None:
        progress.close()

    # merge with earlier results of the same checkpoint; ours replace those with the same key
    out_path = os.path.join(cfg["out_dir"], cfg["output"])
    old = []
    if os.path.exists(out_path):
        with open(out_path) as f:
            old = json.load(f)
        stale = [r for r in old if r.get("iter_num") != context["iter_num"]]
        if stale:
            print(f"dropping {len(stale)} records of an earlier checkpoint from {out_path}")
        # one evaluated range per split, so that every record of a split scores the same tokens
        other_range = [
            r
            for r in old
            if r not in stale
            and r.get("split") == cfg["split"]
            and r.get("max_tokens") != context["max_tokens"]
        ]
        if other_range:
            print(f"dropping {len(other_range)} records of another --max_tokens from {out_path}")
        stale += other_range
        new_keys = {record_key(r) for r in results}
        old = [r for r in old if r not in stale and record_key(r) not in new_keys]
    merged = sorted(old + results, key=lambda r: (r["split"], r["mode"], r["length"], r["stride"]))
    write_json(out_path, merged, indent=1)
    print(f"wrote {out_path}")
    return results


if __name__ == "__main__":
    run_cli(main)
