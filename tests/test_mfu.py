"""MFU: runtime.flops_per_token against a count of the model's matmuls by hand, the peak-TFLOPS
lookup by GPU name (faked on CPU) or --peak_tflops, and the MFU train.py prints."""

import re

import pytest
import torch
from test_train import run_train, tiny_args, write_corpus

import runtime
from model import GPT, GPTConfig


@pytest.mark.parametrize("encoding", ["nope", "learned"])
def test_flops_per_token_counts_matmuls_and_causal_attention(encoding):
    """Training = 3 x forward (the backward takes the gradients of inputs and of weights). The
    forward: 2 FLOPs per multiply-add of every Linear (the tied output head included; a learned
    position table is a lookup, not a matmul), and per layer, for a query at position t, q.k and
    the weighted sum of v over its t keys: 2 * 2 * n_embd * t, summed over t = 1..T exactly."""
    L, d, T, V = 2, 64, 512, 64  # attention is ~40% of the total: counting it twice shows
    m = GPT(GPTConfig(n_layer=L, n_head=4, n_embd=d, block_size=T, vocab_size=V, bias=False,
                      encoding=encoding))  # fmt: skip
    linears = sum(2 * x.in_features * x.out_features for x in m.modules()
                  if isinstance(x, torch.nn.Linear))  # fmt: skip
    attention = L * sum(2 * 2 * d * t for t in range(1, T + 1)) / T
    by_hand = 3 * (linears + attention)
    got = runtime.flops_per_token(m.get_num_params(), L, d, T)
    # what 6N adds (LayerNorm weights) and T/2 for (T + 1)/2 keys: well under 1%
    assert got == pytest.approx(by_hand, rel=0.01)
    palm = got + 6 * L * d * T  # the full T x T square: not what a causal kernel computes
    assert palm != pytest.approx(by_hand, rel=0.1)


@pytest.mark.parametrize(
    "name, tflops",
    [
        ("NVIDIA A100-SXM4-80GB", 312),
        ("NVIDIA A100-PCIE-40GB", 312),
        ("NVIDIA H100 80GB HBM3", 989),  # SXM
        ("NVIDIA H100 PCIe", 756),  # not the SXM figure, though it says H100
        ("NVIDIA L40S", 362),  # not L4's
        ("NVIDIA L4", 121),
        ("NVIDIA GeForce RTX 4090", 165),
    ],
)
def test_peak_from_the_device_name(monkeypatch, name, tflops):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
    assert runtime.peak_tflops("cuda:0") == (tflops, None)
    assert runtime.peak_tflops("cuda:0", 100.0) == (100.0, None)  # --peak_tflops wins


def test_unknown_gpu_has_no_peak_and_says_so(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Some GPU 9000")
    peak, note = runtime.peak_tflops("cuda")
    assert peak is None and "Some GPU 9000" in note and "--peak_tflops" in note
    assert runtime.peak_tflops("cpu") == (None, None)  # no table for CPUs, and nothing to say


def test_progress_line_shows_mfu(tmp_path, capsys, one_thread):
    """On CPU with --peak_tflops: MFU = FLOPs per token x tok/s / peak, as the line prints them;
    the note about an unknown device is not printed."""
    data = str(tmp_path / "data")
    write_corpus(data)
    argv = tiny_args(data, str(tmp_path / "out"), max_iters=5, eval_interval=5, peak_tflops=1e-3)
    assert run_train(argv) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("iter 5 |"))
    tok_s = float(re.search(r"\| ([\d,]+) tok/s \|", line).group(1).replace(",", ""))
    mfu = float(re.search(r"\| MFU ([\d.]+)% \| ETA", line).group(1))
    m = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=32, block_size=32, vocab_size=256, bias=False))
    flops = runtime.flops_per_token(m.get_num_params(), 1, 32, 32)
    assert mfu == pytest.approx(100 * flops * tok_s / 1e9, rel=0.01, abs=0.06)
    assert "note: no peak" not in out
    assert run_train(argv[:-1] + ["--peak_tflops=-1"]) == 2
    assert "peak_tflops must be >= 0" in capsys.readouterr().err
