"""scripts/eval_lengths.py: the numbers equal a direct per-token computation on a tiny model."""

import dataclasses
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import load_script, write_token_dataset

from model import GPT, GPTConfig

ROOT = Path(__file__).resolve().parent.parent


ev = load_script("eval_lengths")
VOCAB = 32
pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: faster, and deterministic


def make_dataset(root, n_val=300, n_test=200, words=None):
    """A byte-tokenized dataset dir with random tokens, as data/prepare.py would write it."""
    rng = np.random.default_rng(0)
    sizes = (("train", 400), ("val", n_val), ("test", n_test))
    splits = {split: rng.integers(0, VOCAB, n).astype(np.uint16) for split, n in sizes}
    return write_token_dataset(root, splits, VOCAB, words)


def make_run(root, encoding="alibi", block_size=16, iter_num=10, attn_block_size=8, dtype=None):
    torch.manual_seed(0)
    cfg = GPTConfig(
        vocab_size=VOCAB,
        n_layer=2,
        n_head=2,
        n_embd=16,
        block_size=block_size,
        encoding=encoding,
        attn_block_size=attn_block_size,
    )
    model = GPT(cfg)
    out = root / f"run_{encoding}{dtype or ''}"
    out.mkdir()
    config = {"dataset": "tiny", "data_dir": str(root / "data"), "seed": 1, "encoding": encoding}
    config |= {"dtype": dtype} if dtype else {}
    torch.save(
        {
            "model": model.state_dict(),
            "model_args": dataclasses.asdict(cfg),
            "config": config,
            "iter_num": iter_num,
            "finished": True,
        },
        out / "ckpt.pt",
    )
    return out, model.eval()


def direct_nll(model, data, length, mode, stride):
    """Per-token NLL the obvious way: for every target t, run the model on exactly the context
    the protocol gives it and read the last logit. Returns {t: (nll, position in window)}."""
    n_targets = len(data) - 1
    out = {}
    for t in range(1, n_targets + 1):
        if mode == "nonoverlapping":
            start = (t - 1) // length * length
        elif t <= length:
            start = 0
        else:  # the window whose end is the first of length, length + stride, ... reaching t
            end = length + math.ceil((t - length) / stride) * stride
            start = min(end, n_targets) - length
        x = torch.tensor(data[start:t], dtype=torch.long)[None]
        with torch.no_grad():
            logits, _ = model(x)
        nll = F.cross_entropy(logits[0, -1].float()[None], torch.tensor([int(data[t])]))
        out[t] = (nll.item(), t - 1 - start)
    return out


@pytest.mark.parametrize(
    "n_tokens,length,mode,stride",
    [
        (101, 16, "nonoverlapping", 16),
        (100, 16, "nonoverlapping", 16),
        (17, 16, "nonoverlapping", 16),
        (101, 16, "sliding", 4),
        (100, 16, "sliding", 5),
        (30, 16, "sliding", 16),
        (17, 16, "sliding", 1),
    ],
)
def test_windows_score_every_token_once(n_tokens, length, mode, stride):
    hits = np.zeros(n_tokens, dtype=int)
    for start, n_in, n_score in ev.windows(n_tokens, length, mode, stride):
        assert 0 <= start and start + n_in <= n_tokens - 1 and 1 <= n_score <= n_in <= length
        if mode == "sliding":
            assert n_in == length  # sliding windows are always full
        hits[start + 1 + n_in - n_score : start + 1 + n_in] += 1
    assert hits[0] == 0 and (hits[1:] == 1).all()


@pytest.mark.parametrize("mode,stride", [("nonoverlapping", 0), ("sliding", 5)])
def test_numbers_equal_direct_computation(tmp_path, mode, stride):
    make_dataset(tmp_path)
    out, model = make_run(tmp_path)
    max_tokens = 90  # a prefix of the 300-token split: 90 scored tokens at every length
    args = [
        f"--out_dir={out}",
        "--lengths=8,16,32",
        f"--mode={mode}",
        f"--max_tokens={max_tokens}",
        "--batch_size=3",
        "--device=cpu",
    ]
    if stride:
        args.append(f"--stride={stride}")
    ev.main(args)
    records = json.loads((out / "eval_lengths.json").read_text())
    assert [r["length"] for r in records] == [8, 16, 32]
    data = np.fromfile(tmp_path / "data" / "tiny" / "val.bin", dtype=np.uint16)[: max_tokens + 1]
    for r in records:
        assert not r["skipped"] and r["tokens"] == max_tokens
        assert r["mode"] == mode and r["stride"] == (stride or r["length"])
        direct = direct_nll(model, data, r["length"], mode, r["stride"])
        loss = sum(v for v, _ in direct.values()) / len(direct)
        assert r["loss"] == pytest.approx(loss, rel=1e-5)
        assert r["ppl"] == pytest.approx(math.exp(loss), rel=1e-5)
        assert r["bits_per_byte"] == pytest.approx(loss / math.log(2), rel=1e-5)
        assert "word_ppl" not in r  # a prefix has no exact word count
        assert r["encoding"] == "alibi" and r["block_size"] == 16 and r["dataset"] == "tiny"
        # per-position means (lengths <= 256: one bucket per position)
        assert r["per_position_edges"] == list(range(r["length"] + 1))
        for p, got in enumerate(r["per_position_loss"]):
            vals = [v for v, q in direct.values() if q == p]
            assert r["per_position_tokens"][p] == len(vals)
            if vals:
                assert got == pytest.approx(sum(vals) / len(vals), rel=1e-5)
            else:
                assert got is None


def test_whole_split_word_ppl_and_test_split(tmp_path):
    make_dataset(tmp_path, words=37)
    out, model = make_run(tmp_path)
    ev.main([f"--out_dir={out}", "--lengths=16", "--split=test", "--device=cpu"])
    (r,) = json.loads((out / "eval_lengths.json").read_text())
    assert r["split"] == "test" and r["tokens"] == 199 and r["max_tokens"] == 0
    assert r["word_ppl"] == pytest.approx(math.exp(r["loss"] * r["tokens"] / 37), rel=1e-6)


def test_learned_skipped_past_its_table_and_too_long(tmp_path):
    make_dataset(tmp_path)
    out, _ = make_run(tmp_path, encoding="learned", block_size=16)
    ev.main([f"--out_dir={out}", "--max_tokens=40", "--device=cpu"])  # default: 16 x 1..32
    records = {r["length"]: r for r in json.loads((out / "eval_lengths.json").read_text())}
    assert sorted(records) == [16, 32, 64, 128, 256, 512]
    assert not records[16]["skipped"] and records[16]["loss"] > 0
    for n in (32, 64, 128, 256, 512):
        assert records[n]["skipped"] and "16" in records[n]["reason"]
        assert records[n].get("loss") is None


def test_length_longer_than_range_is_skipped_and_results_merge(tmp_path):
    make_dataset(tmp_path)
    out, _ = make_run(tmp_path)
    ev.main([f"--out_dir={out}", "--lengths=16,64", "--max_tokens=40", "--device=cpu"])
    ev.main(
        [
            f"--out_dir={out}",
            "--lengths=16",
            "--mode=sliding",
            "--stride=8",
            "--max_tokens=40",
            "--device=cpu",
        ]
    )
    records = json.loads((out / "eval_lengths.json").read_text())
    got = {(r["mode"], r["length"]): r for r in records}
    assert set(got) == {("nonoverlapping", 16), ("nonoverlapping", 64), ("sliding", 16)}
    assert (
        got[("nonoverlapping", 64)]["skipped"]
        and "max_tokens" in got[("nonoverlapping", 64)]["reason"]
    )
    # a new checkpoint (different iter_num) replaces every earlier record
    ckpt = torch.load(out / "ckpt.pt", weights_only=True)
    ckpt["iter_num"] = 20
    torch.save(ckpt, out / "ckpt.pt")
    ev.main([f"--out_dir={out}", "--lengths=16", "--max_tokens=40", "--device=cpu"])
    records = json.loads((out / "eval_lengths.json").read_text())
    assert [(r["mode"], r["length"], r["iter_num"]) for r in records] == [
        ("nonoverlapping", 16, 20)
    ]


def test_long_lengths_are_bucketed():
    edges = ev.position_edges(4096)
    assert edges[0] == 0 and edges[-1] == 4096 and len(edges) - 1 <= 256
    assert edges[:65] == list(range(65)) and all(b > a for a, b in zip(edges, edges[1:]))
    s = torch.arange(4096, dtype=torch.float64)
    c = torch.ones(4096, dtype=torch.int64)
    means, counts = ev.bucketed(s, c, edges)
    assert sum(counts) == 4096 and counts[3] == 1
    assert means[3] == 3.0 and means[-1] == pytest.approx((edges[-2] + 4095) / 2)


def test_bad_mode_is_one_clear_line(tmp_path):
    make_dataset(tmp_path)
    out, _ = make_run(tmp_path)
    p = subprocess.run(
        [sys.executable, "scripts/eval_lengths.py", f"--out_dir={out}", "--mode=slide"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ},
    )
    assert p.returncode == 2
    assert p.stderr.strip().startswith("error:") and "sliding" in p.stderr
    assert "Traceback" not in p.stderr


@pytest.mark.parametrize(
    "arg, message",
    [
        ("--max_tokens=-5", "--max_tokens must be >= 0 (0: the whole split), got -5"),
        ("--batch_size=-1", "--batch_size must be >= 0 (0: auto), got -1"),
    ],
)
def test_bad_options_fail_before_the_checkpoint_is_read(tmp_path, arg, message):
    with pytest.raises(ev.UserError) as e:
        ev.main([f"--out_dir={tmp_path}/missing", arg, "--device=cpu"])
    assert str(e.value) == message


def test_an_unwritable_run_directory_fails_before_evaluating(tmp_path, monkeypatch):
    monkeypatch.setattr(ev.os, "access", lambda path, mode: False)  # a read-only mount
    with pytest.raises(ev.UserError, match="cannot write eval_lengths.json into"):
        ev.main([f"--out_dir={tmp_path}", "--device=cpu"])


def test_rope_scaling_is_evaluated_as_a_variant(tmp_path):
    from scripts.eval_lengths import main

    make_dataset(tmp_path)
    out, model = make_run(tmp_path, encoding="rope")
    args = [f"--out_dir={out}", "--lengths=16,64", "--device=cpu", "--max_tokens=64"]
    main(args)
    main(args + ["--rope_scaling=linear"])
    records = json.loads((out / "eval_lengths.json").read_text())
    base = {r["length"]: r for r in records if r["variant"] == ""}
    scaled = {r["length"]: r for r in records if r["variant"] == "linear x8"}
    assert sorted(base) == sorted(scaled) == [16, 64]  # both kept, side by side
    assert scaled[64]["encoding_kwargs"] == {"scaling": "linear", "factor": 8.0}
    assert scaled[64]["rope_scaling"] == "linear" and scaled[64]["rope_factor"] == 8.0
    # one window of 64: the number is the model's with positions divided by 8
    data = torch.from_numpy(np.fromfile(tmp_path / "data/tiny/val.bin", dtype=np.uint16)[:65])
    x, y = data[:64].long()[None], data[1:65].long()[None]
    with torch.no_grad():
        logits, _ = model(x, pos=torch.arange(64) / 8)
    expected = F.cross_entropy(logits[0].float(), y[0]).item()
    assert scaled[64]["tokens"] == 64
    assert scaled[64]["loss"] == pytest.approx(expected, rel=1e-6)
    # (the tiny untrained model barely uses positions: the difference is small but real)
    assert base[64]["loss"] != pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--rope_scaling=yarn"], "applies to damped_rope and rope; this checkpoint uses alibi"),
        (["--rope_scaling=ntk"], "--rope_scaling must be one of linear, dynamic, yarn, llama3"),
    ],
)
def test_rope_scaling_errors_are_one_line(tmp_path, args, message):
    make_dataset(tmp_path)
    out, _ = make_run(tmp_path, encoding="alibi")
    p = subprocess.run(
        [sys.executable, "scripts/eval_lengths.py", f"--out_dir={out}", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert message in p.stderr


def test_records_of_another_token_range_are_dropped(tmp_path):
    """All records of a split score the same tokens: a new --max_tokens replaces the old ones."""
    from scripts.eval_lengths import main

    make_dataset(tmp_path)
    out, _ = make_run(tmp_path)
    main([f"--out_dir={out}", "--lengths=16,32", "--device=cpu", "--max_tokens=100"])
    main([f"--out_dir={out}", "--lengths=16", "--device=cpu", "--max_tokens=200"])
    records = json.loads((out / "eval_lengths.json").read_text())
    assert [(r["length"], r["max_tokens"]) for r in records] == [(16, 200)]


def as_on_cuda(monkeypatch, module):
    """Precision picked as on a CUDA GPU, its autocast emulated on CPU; returns the dtypes run."""
    import checkpoint
    from runtime import DTYPES, pick_dtype

    seen = []
    monkeypatch.setattr(checkpoint, "pick_dtype", lambda dtype, _: pick_dtype(dtype, "cuda"))
    on = lambda d: torch.autocast("cpu", dtype=DTYPES[d], enabled=d != "float32")
    monkeypatch.setattr(module, "autocast", lambda dev, d: seen.append(d) or on(d))
    return seen


def test_evaluates_in_the_checkpoints_dtype(tmp_path, monkeypatch):
    make_dataset(tmp_path)
    seen = as_on_cuda(monkeypatch, ev)
    runs = {d: make_run(tmp_path, dtype=d)[0] for d in ("float32", "bfloat16")}  # same weights
    args = ["--lengths=16", "--max_tokens=64", "--device=cpu"]
    (f32,) = ev.main([f"--out_dir={runs['float32']}", *args])
    (bf16,) = ev.main([f"--out_dir={runs['bfloat16']}", *args])
    (told,) = ev.main([f"--out_dir={runs['bfloat16']}", *args, "--dtype=float32"])
    assert seen == ["float32", "bfloat16", "float32"]
    assert (f32["dtype"], bf16["dtype"], told["dtype"]) == ("float32", "bfloat16", "float32")
    assert told["loss"] == f32["loss"] != bf16["loss"]
    (saved,) = json.loads((runs["bfloat16"] / "eval_lengths.json").read_text())
    assert saved["dtype"] == "float32" and saved["tf32"] is False  # the last run replaced it


def test_eval_precision_rule(monkeypatch):
    import checkpoint

    tf32 = []
    monkeypatch.setattr(checkpoint, "set_tf32", tf32.append)
    ckpt = {"config": {"dtype": "float32", "tf32": True}}
    assert checkpoint.eval_precision(ckpt, "cuda") == ("float32", True)  # as trained
    assert checkpoint.eval_precision(ckpt, "cuda", "bfloat16") == ("bfloat16", False)  # told
    assert checkpoint.eval_precision({"config": {"dtype": "bfloat16"}}, "cpu") == ("float32", False)
    assert tf32 == [True, False]  # set on CUDA only


# -----------------------------------------------------------------------------
# out of memory at long lengths, injected: forward raises above some batch size or length


def oom_when(monkeypatch, too_big):
    """GPT.forward raises torch.OutOfMemoryError when too_big(T, B) holds; returns the list of
    (T, B, attention query block) of every call."""
    calls, forward = [], GPT.forward

    def tight(self, idx, *args, **kwargs):
        (block,) = {m.query_block for m in self.modules() if hasattr(m, "query_block")}
        calls.append((idx.size(1), idx.size(0), block))
        if too_big(idx.size(1), idx.size(0)):
            raise torch.OutOfMemoryError("out of memory (injected by the test)")
        return forward(self, idx, *args, **kwargs)

    monkeypatch.setattr(GPT, "forward", tight)
    return calls


def numbers(records):
    return {r["length"]: (r["loss"], r["ppl"], r["per_position_loss"]) for r in records}


def test_out_of_memory_retries_with_a_smaller_batch(tmp_path, monkeypatch, capsys):
    make_dataset(tmp_path)
    out, _ = make_run(tmp_path)
    args = [f"--out_dir={out}", "--lengths=8,16", "--max_tokens=90", "--device=cpu"]
    direct = ev.main(args + ["--batch_size=2"])
    calls = oom_when(monkeypatch, lambda T, B: B > 2)
    got = ev.main(args + ["--batch_size=8"])
    assert numbers(got) == numbers(direct)  # the same numbers as a run at batch 2
    printed = capsys.readouterr().out
    assert "length      8: out of memory; retrying with batch 4" in printed
    assert "length      8: out of memory; retrying with batch 2" in printed
    # each length starts again from the batch asked for (16: 5 full windows of the 90 tokens)
    assert [B for T, B, _ in calls if T == 16][:3] == [5, 4, 2]


def test_out_of_memory_at_every_batch_skips_that_length_only(tmp_path, monkeypatch, capsys):
    make_dataset(tmp_path)
    out, _ = make_run(tmp_path, attn_block_size=256)
    args = [f"--out_dir={out}", "--lengths=8,32,16", "--max_tokens=90", "--device=cpu"]
    args.append("--batch_size=4")
    direct = numbers(ev.main(args))
    calls = oom_when(monkeypatch, lambda T, B: T >= 32)
    got = {r["length"]: r for r in ev.main(args)}
    assert got[32]["skipped"] and got[32]["reason"] == "out of memory" and "loss" not in got[32]
    assert {n: numbers([got[n]])[n] for n in (8, 16)} == {8: direct[8], 16: direct[16]}
    # batch 2 (the two full windows of 32), 1, then query blocks 128 and 64, then it gives up;
    # length 16 (after it) runs with the batch and query block it started with
    assert [c for c in calls if c[0] == 32] == [
        (32, 2, 256), (32, 2, 256), (32, 1, 256), (32, 1, 128), (32, 1, 64)
    ]  # fmt: skip
    assert [c for c in calls if c[0] == 16][0] == (16, 4, 256)
    printed = capsys.readouterr().out
    assert "retrying with attention query block 64" in printed
    assert "length     32: skipped (out of memory" in printed
    saved = json.loads((out / "eval_lengths.json").read_text())
    assert [(r["length"], r["skipped"]) for r in saved] == [(8, False), (16, False), (32, True)]


@pytest.mark.parametrize("cpp", [True, False])
def test_compile_as_runtime_compiles_says(tmp_path, monkeypatch, capsys, cpp):
    """--compile=True compiles (dynamic shapes) where runtime.compiles says torch.compile runs;
    on a CPU without a C++ compiler the evaluation runs eager, with its note."""
    import runtime

    calls = []
    monkeypatch.setattr(runtime, "has_cpp_compiler", lambda: cpp)
    monkeypatch.setattr(torch, "compile", lambda model, **kw: calls.append(kw) or model)
    make_dataset(tmp_path)
    out, _ = make_run(tmp_path)
    ev.main([f"--out_dir={out}", "--lengths=16", "--device=cpu", "--compile=True"])
    assert calls == ([dict(dynamic=True)] if cpp else [])
    note = "note: torch.compile on CPU needs a C++ compiler (g++); none found: running eager"
    assert (note in capsys.readouterr().out) == (not cpp)


def test_compile_matches_eager(tmp_path):
    """--compile=True (inductor on CPU, dynamic shapes: both lengths share one graph for this
    encoding) gives eager's numbers. Compiling costs ~5-15 s."""
    make_dataset(tmp_path)
    out, _ = make_run(tmp_path, encoding="nope")
    # 96 targets: 6 windows of 16 and 3 of 32, every batch full (a batch of 1 would recompile)
    args = [f"--out_dir={out}", "--lengths=16,32", "--max_tokens=96", "--batch_size=3"]
    args.append("--device=cpu")
    eager = numbers(ev.main(args))
    compiled = numbers(ev.main(args + ["--compile=True"]))
    assert sorted(compiled) == [16, 32]
    for n, (loss, _, per_position) in eager.items():
        assert compiled[n][0] == pytest.approx(loss, rel=1e-5)
        assert compiled[n][2] == pytest.approx(per_position, rel=1e-4)
