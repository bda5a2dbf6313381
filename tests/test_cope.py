"""encodings/cope.py against CoPE's formula (Golovneva et al. 2024) written out here as loops over
(b, h, t, s, u) in float64, never the module's helpers:

    g_tu = sigmoid(q_t . k_u / sqrt(d)),  p_ts = min(sum_{u=s}^{t} g_tu, npos_max),
    bias(t, s) = q_t . ((1 - w) e[floor p] + w e[ceil p]) / sqrt(d),  w = p - floor p.

The properties every encoding shares (causality, fast path == scores, KV cache, bf16, compile)
are in test_model.py, test_gpu_paths.py and test_numerics.py.
"""

import math
import sys

import pytest
import torch
from helpers import MaxStorage

import attention
from encoding import build_encoding
from model import GPT, GPTConfig

pytestmark = pytest.mark.usefixtures("one_thread")

H, D = 4, 8  # heads, head dim


def config(encoding="cope", n_layer=2, block_size=64, **kwargs):
    return GPTConfig(vocab_size=64, n_layer=n_layer, n_head=H, n_embd=H * D, block_size=block_size,
                     encoding=encoding, encoding_kwargs=kwargs, attn_block_size=16)  # fmt: skip


def cope(npos_max=None, seed=0, dtype=torch.float64):
    """A cope encoding whose table e is random (its init is zeros: no position at all)."""
    pe = build_encoding(config(npos_max=npos_max)).to(dtype)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        pe.e.copy_(torch.randn(pe.e.shape, generator=g, dtype=torch.float64))
    return pe


def qk(B=2, T=12, seed=1, scale=1.0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return [scale * torch.randn(B, H, T, D, generator=g, dtype=dtype) for _ in range(2)]


def dot(a, b):
    return sum(x * y for x, y in zip(a, b, strict=True))


def naive_cope_bias(q, k, e, npos_max, gate=None):
    """(B, H, Tq, Tk) float64: CoPE's bias for queries q (B, H, Tq, d) that are the last Tq of the
    keys k (B, H, Tk, d), table e (npos_max + 1, d); NaN where s > t. Plain Python floats.
    gate(q_t, k_u) replaces the sigmoid gate when given."""
    q, k, e = q.tolist(), k.tolist(), e.tolist()
    B, Tq, Tk = len(q), len(q[0][0]), len(k[0][0])
    sigmoid_gate = lambda qt, ku: 1 / (1 + math.exp(-dot(qt, ku) / math.sqrt(D)))
    gate = gate or sigmoid_gate
    out = torch.full((B, H, Tq, Tk), math.nan, dtype=torch.float64)
    for b in range(B):
        for h in range(H):
            for i in range(Tq):
                t = Tk - Tq + i  # the query's index among the keys
                qt = q[b][h][i]
                for s in range(t + 1):
                    p = 0.0
                    for u in range(s, t + 1):
                        p += gate(qt, k[b][h][u])
                    p = min(p, npos_max)
                    lo, hi = math.floor(p), math.ceil(p)
                    w = p - lo
                    emb = [(1 - w) * a + w * c for a, c in zip(e[lo], e[hi], strict=True)]
                    out[b, h, i, s] = dot(qt, emb) / math.sqrt(D)
    return out


POSITIONS = {
    "offset": torch.arange(12) + 1000,
    "float": torch.cumsum(torch.linspace(0.3, 2.9, 12, dtype=torch.float64), 0) + 60_000.25,
}


@pytest.mark.parametrize("pos", POSITIONS.values(), ids=POSITIONS.keys())
@pytest.mark.parametrize("npos_max", [64, 4])  # 4: most keys past the cap
@pytest.mark.parametrize("Tq", [12, 5])  # every query; a block of the last 5 (keys before it)
def test_cope_against_naive_loop(Tq, npos_max, pos):
    pe = cope(npos_max)
    q, k = qk(T=12)
    q = q[:, :, -Tq:]
    expected = naive_cope_bias(q, k, pe.e.detach(), npos_max)
    seen = ~expected.isnan()
    with torch.no_grad():
        bias = pe.bias(q, k, pos[-Tq:], pos)
        scores = pe.scores(q, k, pos[-Tq:], pos)
        bias32 = pe.float().bias(q.float(), k.float(), pos[-Tq:], pos)
    torch.testing.assert_close(bias[seen], expected[seen], rtol=1e-10, atol=1e-10)
    content = (q @ k.mT) / math.sqrt(D)
    torch.testing.assert_close(scores[seen], (content + expected)[seen], rtol=1e-10, atol=1e-10)
    assert bias32.dtype == torch.float32
    torch.testing.assert_close(bias32.double()[seen], expected[seen], rtol=1e-5, atol=1e-5)
    if npos_max == 4:  # the cap is reached, and the positions are fractional
        gates = torch.sigmoid(content).tril(12 - Tq)  # the keys each query sees
        assert (gates.sum(-1) > 4).any() and ((gates > 0.05) & (gates < 0.95)).any()


def cope_module(pe):
    return sys.modules[type(pe).__module__]


@pytest.mark.parametrize("npos_max", [64, 5])
def test_cope_with_every_gate_one_is_relative(monkeypatch, npos_max):
    """Gates forced to exactly 1 (the module's gate function replaced): p_ts = t - s + 1, and the
    bias is a learned relative term q_t . e[min(t - s + 1, npos_max)] / sqrt(d), the same at
    every offset of the query block."""
    pe = cope(npos_max)
    monkeypatch.setattr(
        cope_module(pe), "gates", lambda q, k: q.new_ones(q.shape[:-1] + k.shape[-2:-1])
    )
    T = 12
    q, k = qk(T=T)
    e = pe.e.detach()
    for Tq in (T, 4):
        qb = q[:, :, -Tq:]
        with torch.no_grad():
            bias = pe.bias(qb, k, None, None)
        for i in range(Tq):
            t = T - Tq + i
            for s in range(t + 1):
                row = e[min(t - s + 1, npos_max)]
                torch.testing.assert_close(bias[:, :, i, s], qb[:, :, i] @ row / math.sqrt(D))
    # and the naive loop with its gate replaced by 1 agrees
    expected = naive_cope_bias(q, k, e, npos_max, gate=lambda qt, ku: 1.0)
    seen = ~expected.isnan()
    with torch.no_grad():
        torch.testing.assert_close(pe.bias(q, k, None, None)[seen], expected[seen])


def test_cope_cap():
    """Far from the query every gate adds to p: past npos_max every key gets e[npos_max], so the
    bias of all those keys is one number per query; below it, it varies."""
    npos_max = 3
    pe = cope(npos_max)
    q, k = qk(B=1, T=40)
    with torch.no_grad():
        g = torch.sigmoid(q @ k.mT / math.sqrt(D)).tril()
        p = g.flip(-1).cumsum(-1).flip(-1)
        bias = pe.bias(q, k, None, None)
    t = 39
    capped = p[0, :, t] >= npos_max  # (H, T)
    assert capped[:, 0].all() and (~capped[:, t]).all()
    for h in range(H):
        expected = q[0, h, t] @ pe.e[npos_max].detach() / math.sqrt(D)
        torch.testing.assert_close(bias[0, h, t, capped[h]], expected.expand(capped[h].sum()))
        assert (bias[0, h, t, ~capped[h]] - expected).abs().min() > 1e-6


def test_cope_gradients():
    """Against finite differences (float64) in q, k (k reaches the bias only through the gates)
    and e; and in a model, e gets a gradient from its first step although it starts at zero, on
    rows the positions reach, never on rows past the longest distance."""
    pe = cope(npos_max=6)  # reached: p up to 9 before the cap
    q, k = qk(B=1, T=9)
    q.requires_grad_(), k.requires_grad_()
    # gradcheck perturbs its inputs in place: pe.e itself is one
    assert torch.autograd.gradcheck(lambda q, k, e: pe.bias(q, k, None, None), (q, k, pe.e))

    torch.manual_seed(0)
    m = GPT(config(npos_max=40))  # the training-start state: e = 0
    idx = torch.randint(0, 64, (2, 16), generator=torch.Generator().manual_seed(0))
    _, loss = m(idx, idx)
    loss.backward()
    for pe in m.pe:
        grad = pe.e.grad.abs().sum(-1)
        # gates start near 1/2: p_ts ~ (t - s + 1) / 2, rows 0 .. ~8 reached; never past 16
        assert (grad[:6] > 0).all()
        assert (grad[17:] == 0).all()


def test_cope_memory_is_a_query_block_times_T():
    """Forward and backward of blockwise attention: no tensor beyond B * H * block * T elements
    (interpolating e itself would build (B, H, block, T, d), 16x that here)."""
    B, T, block = 1, 256, 32
    pe = cope(npos_max=64, dtype=torch.float32)
    pe.e.requires_grad_(True)
    q, k, v = (x.float().requires_grad_() for x in qk(B=B, T=T) + qk(B=B, T=T, seed=2)[:1])
    with MaxStorage() as rec:
        out = attention.causal_attention(q, k, v, torch.arange(T), pe, query_block=block)
        out.sum().backward()
    assert rec.largest <= B * H * block * T, f"{rec.op} made {rec.largest} elements"
    assert pe.e.grad.abs().sum() > 0 and k.grad.abs().sum() > 0


def test_cope_as_the_authors_code():
    """One (npos_max + 1, d) table per layer, shared by the heads, zeros at init (a fresh model is
    NoPE), npos_max = block_size by default, not weight-decayed; no FlexAttention score_mod."""
    torch.manual_seed(0)
    m = GPT(config(n_layer=3, block_size=48))
    assert len(m.pe) == 3
    for pe in m.pe:
        assert pe.npos_max == 48 and [n for n, _ in pe.named_parameters()] == ["e"]
        assert pe.e.shape == (49, D) and (pe.e == 0).all()
        assert pe.decayed_parameters == () and pe.score_mod(None, None) is None
    idx = torch.randint(0, 64, (2, 30), generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    nope = GPT(config("nope", n_layer=3, block_size=48))
    with torch.no_grad():
        torch.testing.assert_close(m(idx)[0], nope(idx)[0], rtol=1e-5, atol=1e-5)
    assert build_encoding(config(npos_max=7)).e.shape == (8, D)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "64"])
def test_cope_options(bad):
    with pytest.raises(ValueError, match="npos_max must be a positive integer"):
        build_encoding(config(npos_max=bad))
