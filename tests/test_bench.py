"""scripts/bench.py: runs end to end, writes its figures as JSON, and its memory figures mean
something (exact peaks; linear growth with query blocks, quadratic without)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import load_script

import runtime

ROOT = Path(__file__).resolve().parent.parent
TINY = [
    "--n_layer=1",
    "--n_head=2",
    "--n_embd=16",
    "--vocab_size=32",
    "--train_length=16",
    "--batch_size=2",
    "--steps=1",
    "--warmup=0",
    "--device=cpu",
]


bench = load_script("bench")


def run(*args):
    cmd = [sys.executable, "scripts/bench.py", *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_end_to_end_table_and_json(tmp_path):
    out = tmp_path / "bench.json"
    p = run("--encodings=alibi,learned", "--eval_lengths=16,64", f"--json={out}", *TINY)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].startswith("nanoPE bench | cpu | float32 | 1 layers x 16 wide x 2 heads")
    assert f"torch {torch.__version__}" in lines[0] and "threads" in lines[0]
    header = next(line for line in lines if line.startswith("encoding"))
    assert "train tok/s" in header and "tok/s@64" in header and "MB@64" in header
    alibi = next(line for line in lines if line.startswith("alibi "))
    learned = next(line for line in lines if line.startswith("learned "))
    assert "skipped" not in alibi and learned.count("skipped") == 1
    assert "learned @ 64: skipped (table of 16 positions)" in lines
    assert any(line.startswith("full (T,T) fp32 matrix") for line in lines)

    report = json.loads(out.read_text())
    assert report["device"] == "cpu" and report["dtype"] == "float32"
    assert report["model"] == {"n_layer": 1, "n_head": 2, "n_embd": 16, "vocab_size": 32}
    assert report["train_length"] == 16 and report["eval_lengths"] == [16, 64]
    assert [r["encoding"] for r in report["results"]] == ["alibi", "learned"]
    for r in report["results"]:
        assert r["params"] > 0 and r["train_tokens_per_s"] > 0
        assert [e["length"] for e in r["eval"]] == [16, 64]
        assert r["eval"][0]["skipped"] is False
        assert r["eval"][0]["tokens_per_s"] > 0 and r["eval"][0]["peak_mb"] > 0
    alibi, learned = report["results"]
    assert alibi["eval"][1]["skipped"] is False and alibi["memory_exponent"] is not None
    assert learned["eval"][1] == {
        "length": 64,
        "full_attention_matrix_mb": 64 * 64 * 4 / 2**20,
        "skipped": True,
        "reason": "table of 16 positions",
    }


def test_bad_encoding_is_one_line_and_exit_2():
    p = run("--encodings=alibi,rop", *TINY)
    assert p.returncode == 2
    assert p.stderr.count("\n") == 1
    assert p.stderr.startswith(
        "error: --encodings=rop: unknown encoding 'rop' (did you mean 'rope'?)"
    )
    assert "available: " in p.stderr and "Traceback" not in p.stderr


def test_cpu_peak_counts_what_is_held_at_once():
    mb = 2**20

    def two_in_turn():  # 4 MB, freed, then 4 MB again: the peak is 4 MB, not 8
        a = torch.ones(mb)
        del a
        b = torch.ones(mb)
        del b

    def two_at_once():
        a = torch.ones(mb)
        b = torch.ones(mb)
        del a, b

    held = [torch.ones(mb)]  # allocated before: neither counted nor confused by its free

    def free_old_then_allocate():
        held.pop()
        c = torch.ones(mb // 2)
        del c

    assert bench.cpu_peak_bytes(two_in_turn) == 4 * mb
    assert bench.cpu_peak_bytes(two_at_once) == 8 * mb
    assert bench.cpu_peak_bytes(free_old_then_allocate) == 2 * mb


def test_blockwise_attention_memory_is_linear_in_length(capsys):
    """The claim the memory columns exist for: with query blocks, doubling T doubles the peak;
    with one block as long as T (the full matrix), it grows ~4x. ALiBi takes the block path."""
    args = ["--encodings=alibi", "--eval_lengths=128,256", *TINY]
    blocked = bench.main(args + ["--attn_block_size=16"])["results"][0]
    full = bench.main(args + ["--attn_block_size=256"])["results"][0]
    capsys.readouterr()
    assert blocked["memory_exponent"] < 1.3
    assert full["memory_exponent"] > 1.7


def test_compile_runs_on_cpu(monkeypatch, capsys):
    """--compile=True compiles on CPU too (inductor): the timed steps must not recompile (else
    tok/s would collapse); without a C++ compiler it runs eager and says so, as train.py does."""
    from torch._dynamo.utils import counters

    counters.clear()
    report = bench.main(["--compile=True", "--encodings=nope", "--eval_lengths=16", *TINY])
    title = capsys.readouterr().out.splitlines()[0]
    assert title.startswith("nanoPE bench | cpu | float32 | compiled | 1 layers")
    assert counters["stats"]["unique_graphs"] == 2 and not counters["graph_break"]  # train, eval
    (r,) = report["results"]
    assert report["compile"] is True and r["train_tokens_per_s"] > 0
    monkeypatch.setattr(runtime, "has_cpp_compiler", lambda: False)
    cfg = bench.settings(["--compile=True", *TINY])
    assert cfg["compile"] is False and "needs a C++ compiler" in cfg["compile_note"]


def test_generate_table(capsys, tmp_path):
    """--generate times model.generate (KV cache) and, with --uncached, a full forward per token:
    both greedy, so they must give the same tokens (learned crops its context: also the same)."""
    out = tmp_path / "gen.json"
    args = ["--generate=24", "--prompt_length=4", "--uncached=True", "--encodings=alibi,learned"]
    report = bench.main([*args, f"--json={out}", *TINY])
    assert [r["encoding"] for r in report["results"]] == ["alibi", "learned"]
    for r in report["results"]:
        assert r["same_tokens"] is True and r["new_tokens"] == 24
        assert r["cached_s"] > 0 and r["uncached_s"] > 0
    assert json.loads(out.read_text())["generate"] == 24
    assert "speed-up" in capsys.readouterr().out


def test_relative_table_against_nope_with_mfu(tmp_path):
    """--relative: NoPE first (the reference, even when not asked for), each encoding's step time
    over NoPE's; with a peak (--peak_tflops, here on CPU) an MFU column, in the JSON too."""
    out = tmp_path / "relative.json"
    args = ("--relative=True", "--encodings=rope,alibi", "--peak_tflops=0.001", f"--json={out}")
    p = run(*args, *TINY, "--steps=3")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    header = next(line for line in lines if line.startswith("encoding"))
    assert header.split() == ["encoding", "params", "ms/step", "relative", "MFU"]
    rows = [line.split() for line in lines[lines.index(header) + 2 :] if line.strip()]
    assert [r[0] for r in rows[:3]] == ["nope", "rope", "alibi"] and rows[0][3] == "1.000"
    report = json.loads(out.read_text())
    assert report["relative"] is True and "eval_lengths" not in report
    results = {r["encoding"]: r for r in report["results"]}
    assert results["nope"]["relative"] == 1.0
    for r in results.values():
        assert r["step_s"] > 0 and r["relative"] > 0 and r["mfu"] > 0
        tokens_per_s = 2 * 16 / r["step_s"]  # batch 2 x length 16 (TINY)
        params = r["params"]
        assert r["mfu"] == pytest.approx(
            (6 * params + 6 * 1 * 16 * 16) * tokens_per_s / 1e9, rel=1e-6
        )


def test_learned_time_applies_where_an_encoding_takes_a_clock():
    """--time=learned: rope and fox get a learned clock per layer; NoPE, the floor, and the
    absolute table do not; a bad --time is one line."""
    cfg = bench.settings(["--time=learned", *TINY])
    assert bench.model_config("rope", cfg).time == "learned"
    assert bench.model_config("fox", cfg).time == "learned"
    assert bench.model_config("nope", cfg).time == "index"
    assert bench.model_config("learned", cfg).time == "index"
    assert bench.build_model("rope", cfg).transformer.h[0].attn.clock is not None
    p = run("--time=clock", *TINY)
    assert p.returncode == 2 and p.stderr.strip().splitlines() == [
        "error: time must be one of index, learned; got 'clock'"
    ]
