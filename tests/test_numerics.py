"""Precision and compilation: what the GPU paths (bf16/fp16 autocast, TF32 matmuls,
torch.compile) rely on, checked on CPU with the same math."""

import pytest
import torch
from helpers import ENCODING_CASES, ENCODING_IDS, EmulateTF32, fewer_terms, round_to_tf32

from attention import causal_attention
from encoding import Encoding, available_encodings, build_encoding
from model import GPT, GPTConfig

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: faster, and deterministic

H, D = 4, 32
CASES = [(n, k) for n, k in ENCODING_CASES if n != "learned"]  # learned: no rows past 64
IDS = [i for i, (n, _) in zip(ENCODING_IDS, ENCODING_CASES) if n != "learned"]


def encoding(name, kwargs):
    cfg = GPTConfig(n_head=H, n_embd=H * D, block_size=64, encoding=name, encoding_kwargs=kwargs)
    torch.manual_seed(0)
    pe = build_encoding(cfg)
    with torch.no_grad():  # move learned tables away from their init so that they matter
        for p in pe.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    return pe


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("name, kwargs", CASES, ids=IDS)
def test_half_precision_attention_is_finite_and_close(name, kwargs, dtype):
    """Half-precision inputs at 8x the training length, against float64 attention of the same
    (rounded) inputs: the error must stay of the order of the inputs' own rounding."""
    pe = encoding(name, kwargs)
    T = 512
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(1, H, T, D, generator=g).to(dtype) for _ in range(3))
    pos = torch.arange(T)
    out = causal_attention(q, k, v, pos, pe, query_block=128)
    assert out.dtype == dtype and torch.isfinite(out).all()
    ref = causal_attention(
        q.double(), k.double(), v.double(), pos, pe.double(), query_block=128, explicit=True
    )
    # bf16 keeps 8 bits of mantissa (~4e-3 relative), fp16 11 bits
    tol = 0.03 if dtype == torch.bfloat16 else 0.005
    assert (out.double() - ref).abs().max() < tol


def relative_error(got, ref, where=...):
    return ((got.double() - ref)[where].norm() / ref[where].norm()).item()


@pytest.mark.parametrize("name, kwargs", CASES, ids=IDS)
def test_tf32_logits_match_float64(name, kwargs):
    """The logits the fast path forms (rotate() at block-relative times, q.k, plus bias(): what
    Encoding.scores composes) with every matmul input rounded to TF32, as a GPU with
    allow_tf32 does: within 1e-3 of float64, over all keys and over the query block's own keys.
    Jordan blocks applied as A(t)^T q and A(-s) k cancelled terms of size t^3/6 there: 8e-3."""
    pe = encoding(name, kwargs)
    T, Tq = 1024, 128  # the last block of queries, 896 keys behind its reference time
    g = torch.Generator().manual_seed(1)
    q, k = (torch.randn(1, H, T, D, generator=g) for _ in range(2))
    pos = torch.arange(T) + 1000
    pos_q, q = pos[-Tq:], q[:, :, -Tq:]
    with torch.no_grad():
        ref = pe.double().scores(q.double(), k.double(), pos_q, pos)
        with EmulateTF32():
            # what attention computes: the hooks composed, or an explicit encoding's own scores
            fast_path = type(pe).scores if pe.explicit else Encoding.scores
            got = fast_path(pe.float(), q, k, pos_q, pos)
    causal = pos_q[:, None] >= pos[None, :]
    own_block = causal & (pos[None, :] >= pos_q[0])
    assert relative_error(got, ref, (..., causal)) < 1e-3
    assert relative_error(got, ref, (..., own_block)) < 1e-3


@pytest.mark.parametrize("name, kwargs", CASES, ids=IDS)
def test_tf32_attention_adds_no_error_beyond_input_rounding(name, kwargs):
    """Attention of inputs already in TF32 (as a TF32 projection's rounding leaves them), under
    TF32 emulation, against float64: whatever the kernel adds must stay below 1e-3, NoPE's order.
    ALiBi as two appended coordinates (k_aug = m s) lost ~m s 2^-11 per logit: 2.5e-3 at 1024."""
    pe = encoding(name, kwargs)
    T = 1024
    g = torch.Generator().manual_seed(2)
    q, k, v = (round_to_tf32(torch.randn(1, H, T, D, generator=g)) for _ in range(3))
    pos = torch.arange(T) + 1000
    with torch.no_grad():
        ref = causal_attention(
            q.double(), k.double(), v.double(), pos, pe.double(), query_block=128, explicit=True
        )
        with EmulateTF32():
            got = causal_attention(q, k, v, pos, pe.float(), query_block=128)
    assert relative_error(got, ref) < 1e-3


@pytest.mark.parametrize("name", available_encodings())
def test_compiles_without_graph_breaks(name):
    """torch.compile must see one graph: a break per layer would make the GPU runs slow."""
    dynamo = pytest.importorskip("torch._dynamo")
    cfg = GPTConfig(vocab_size=64, n_layer=2, n_head=2, n_embd=32, block_size=16, encoding=name)
    cfg.encoding_kwargs = fewer_terms(name, {})
    model = GPT(cfg)
    idx = torch.randint(0, 64, (1, 16))
    dynamo.reset()
    explanation = dynamo.explain(model)(idx, idx)
    assert explanation.graph_break_count == 0, explanation.break_reasons
