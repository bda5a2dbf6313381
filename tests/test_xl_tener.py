"""encodings/xl.py (Transformer-XL) and encodings/tener.py (TENER) against their papers' logits,

    logit(t, s) = (q_t . k_s + q_t . W R_{t-s} + u . k_s + v . W R_{t-s}) / sqrt(d),

written out here in float64 with loops over (b, h, t, s) and R_x built from math.sin / math.cos:
R_x = [sin(x w_i) for i] + [cos(x w_i) for i], w_i = 10000^(-2i/D); Transformer-XL: W = W_R
(per head, d x D, D = n_embd); TENER: W = identity, D = d. Never the modules' own helpers.

bias() (so scores()) subtracts, per query, the largest position term over the keys the query sees
(key s is seen by query t when s <= Tk - Tq + t): a softmax-invariant constant, and part of the
expected values below. Generic properties (causality, shift invariance, fast path == scores(),
gradients, 8x length, bf16, TF32, compile) are in test_model.py, test_gpu_paths.py and
test_numerics.py.
"""

import math

import pytest
import torch
from helpers import MaxStorage

import attention
from encoding import build_encoding
from model import GPT, GPTConfig

pytestmark = pytest.mark.usefixtures("one_thread")

H, D_MODEL, HEAD = 4, 32, 8


def config(encoding, n_head=H, n_embd=D_MODEL, **kwargs):
    return GPTConfig(vocab_size=64, n_layer=2, n_head=n_head, n_embd=n_embd, block_size=64,
                     encoding=encoding, encoding_kwargs=kwargs, attn_block_size=16)  # fmt: skip


def perturbed(name, seed=0):
    """The encoding with its parameters moved far from the init, so that every term matters."""
    torch.manual_seed(seed)
    pe = build_encoding(config(name))
    with torch.no_grad():
        for p in pe.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return pe


def tensors(T, B=2, seed=0, n=2):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, H, T, HEAD, generator=g) for _ in range(n)]


def sinusoid(x, D):
    """R_x: sines then cosines of x w_i, w_i = 10000^(-2i/D), as a float64 vector."""
    w = [10000.0 ** (-2 * i / D) for i in range(D // 2)]
    values = [math.sin(x * wi) for wi in w] + [math.cos(x * wi) for wi in w]
    return torch.tensor(values, dtype=torch.float64)


def naive_logits(q, k, pos_q, pos_k, u, v, W_R=None):
    """The papers' logits, float64, (B, H, Tq, Tk); W_R None: R unprojected, of width d (TENER)."""
    B, nh, Tq, d = q.shape
    Tk = k.size(2)
    q, k, u, v = q.double(), k.double(), u.double(), v.double()
    D = d if W_R is None else W_R.size(-1)
    out = torch.zeros(B, nh, Tq, Tk, dtype=torch.float64)
    for t in range(Tq):
        for s in range(Tk):
            R = sinusoid(float(pos_q[t]) - float(pos_k[s]), D)
            for h in range(nh):
                r = R if W_R is None else W_R[h].double() @ R  # W_R R_{t-s}: d numbers
                for b in range(B):
                    qt, ks = q[b, h, t], k[b, h, s]
                    out[b, h, t, s] = (qt @ ks + qt @ r + u[h] @ ks + v[h] @ r) / math.sqrt(d)
    return out


def expected_bias(logits, q, k):
    """The naive logits minus the content term, minus each query's largest value over the keys
    it sees (loops)."""
    bias = logits - q.double() @ k.double().mT / math.sqrt(q.size(-1))
    Tq, Tk = bias.shape[-2:]
    for t in range(Tq):
        seen = Tk - Tq + t + 1  # keys 0 .. Tk - Tq + t
        bias[..., t, :] -= bias[..., t, :seen].amax(-1, keepdim=True)
    return bias


def projection(pe):
    return pe.W_R if hasattr(pe, "W_R") else None


# offset integer positions with gaps, float times, and (scores only) keys after the query
POSITIONS = {
    "offset": 700 + torch.cumsum(torch.tensor([1, 3, 1, 2, 1, 1, 4, 2, 1, 3]), 0),
    "float": torch.arange(10) * 0.37 + 5.1,
}


@pytest.mark.parametrize("pos", POSITIONS.values(), ids=POSITIONS.keys())
@pytest.mark.parametrize("name", ["xl", "tener"])
def test_against_naive_formula(name, pos):
    pe = perturbed(name)
    T = len(pos)
    q, k = tensors(T)
    logits = naive_logits(q, k, pos, pos, pe.u.detach(), pe.v.detach(), projection(pe))
    expected = expected_bias(logits, q, k)
    with torch.no_grad():
        got = pe.bias(q, k, pos, pos)
        assert got.dtype == torch.float32
        torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=2e-5)
        scores = pe.scores(q, k, pos, pos).double()
        content = q.double() @ k.double().mT / math.sqrt(HEAD)
        torch.testing.assert_close(scores, content + expected, rtol=1e-5, atol=2e-5)
        # in float64 throughout the formula holds to float64 rounding
        got64 = pe.double().bias(q.double(), k.double(), pos, pos)
        torch.testing.assert_close(got64, expected, rtol=1e-10, atol=1e-10)
        # a query block: the last 4 queries against all keys (what the blockwise path passes)
        q4, p4 = q[:, :, -4:], pos[-4:]
        block = pe.double().bias(q4.double(), k.double(), p4, pos)
        expected4 = expected_bias(logits[:, :, -4:], q4, k)
        torch.testing.assert_close(block, expected4, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", ["xl", "tener"])
def test_attention_equals_softmax_of_naive_logits(name):
    """The model's blockwise attention (3 query blocks) at float times and at offset positions
    equals softmax(naive logits + causal mask) @ v: the shift changes no weight."""
    pe = perturbed(name, seed=1)
    T = 40
    q, k, v = tensors(T, B=1, seed=2, n=3)
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    for pos in (torch.arange(T) * 0.37 + 5.1, torch.arange(T) + 60_000):
        logits = naive_logits(q, k, pos, pos, pe.u.detach(), pe.v.detach(), projection(pe))
        ref = torch.softmax(logits.masked_fill(~causal, -math.inf), -1) @ v.double()
        with torch.no_grad():
            out = attention.causal_attention(q, k, v, pos, pe, query_block=16)
        torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-5)


def test_tener_is_direction_aware():
    """R_{-x} = (-sin, cos) != R_x: a key 3 tokens before the query and the same key 3 tokens
    after it get different logits, apart by (q + v) . (R_3 - R_{-3}) / sqrt(d) =
    2 sum_i (q + v)_i sin(3 w_i) / sqrt(d) over the sine half. Scores are exact off the causal
    triangle too."""
    pe = perturbed("tener")
    q, k = tensors(1, B=1)
    k2 = torch.cat((k, k), dim=2)  # the same key at two positions
    pos_q, pos_k = torch.tensor([10.0]), torch.tensor([7.0, 13.0])
    with torch.no_grad():
        s = pe.scores(q, k2, pos_q, pos_k)[0, :, 0].double()  # (H, 2)
    qv = (q[0, :, 0] + pe.v.detach()).double()  # (H, d)
    w = [10000.0 ** (-2 * i / HEAD) for i in range(HEAD // 2)]
    for h in range(H):
        diff = sum(2 * float(qv[h, i]) * math.sin(3 * w[i]) for i in range(HEAD // 2))
        assert abs(diff) > 1e-2
        expected = torch.tensor(diff / math.sqrt(HEAD), dtype=torch.float64)
        torch.testing.assert_close(s[h, 0] - s[h, 1], expected, rtol=1e-5, atol=1e-6)


def test_tener_parameters_no_projection():
    """Only u and v, (H, d) per layer, Xavier-normal as the authors' code: std sqrt(2/(H + d));
    R is the fixed sinusoid (the naive test above uses R itself)."""
    torch.manual_seed(0)
    m = GPT(config("tener"))
    assert len(m.pe) == 2 and m.pe[0].per_layer
    for pe in m.pe:
        assert {n: tuple(p.shape) for n, p in pe.named_parameters()} == {
            "u": (H, HEAD),
            "v": (H, HEAD),
        }
        assert pe.decayed_parameters == () and list(pe.buffers()) == []
    assert m.pe[0].u.data_ptr() != m.pe[1].u.data_ptr()
    pe = build_encoding(config("tener", n_head=64, n_embd=64 * 64))
    for p in (pe.u, pe.v):
        assert abs(p.std().item() / math.sqrt(2 / (64 + 64)) - 1) < 0.05


def test_xl_parameters_per_layer():
    """W_R (d x n_embd per head), u and v belong to each layer (the authors' untie_r=True for
    WikiText-103), N(0, 0.02) as their init_std, not weight-decayed."""
    torch.manual_seed(0)
    m = GPT(config("xl"))
    assert len(m.pe) == 2 and m.pe[0].per_layer
    for pe in m.pe:
        shapes = {n: tuple(p.shape) for n, p in pe.named_parameters()}
        assert shapes == {"W_R": (H, HEAD, D_MODEL), "u": (H, HEAD), "v": (H, HEAD)}
        assert pe.decayed_parameters == ()
    for name in ("W_R", "u", "v"):
        a, b = (getattr(pe, name) for pe in m.pe)
        assert a.data_ptr() != b.data_ptr() and not torch.equal(a, b)
    pe = build_encoding(config("xl", n_head=8, n_embd=256))
    for p in (pe.W_R, pe.u, pe.v):
        assert abs(p.std().item() / 0.02 - 1) < 0.2 and abs(p.mean().item()) < 0.01


@pytest.mark.parametrize("name", ["xl", "tener"])
def test_no_tensor_of_pairs_by_channels(name):
    """The bias of T queries and keys never holds a (T, T, D) tensor: the largest is the bias."""
    B, T = 1, 256
    pe = build_encoding(config(name))
    q, k = (torch.randn(B, H, T, HEAD) for _ in range(2))
    with torch.no_grad(), MaxStorage() as rec:
        pe.bias(q, k, torch.arange(T), torch.arange(T))
    assert rec.largest <= B * H * T * T, f"{rec.op} made {rec.largest} elements"


def test_options():
    for name in ("xl", "tener"):
        with pytest.raises(ValueError, match="has no option"):
            build_encoding(config(name, d_r=16))
    with pytest.raises(ValueError, match="even n_embd"):
        build_encoding(config("xl", n_head=3, n_embd=9))
    with pytest.raises(ValueError, match="even head dimension"):
        build_encoding(config("tener", n_head=4, n_embd=36))


@pytest.mark.parametrize("name", ["xl", "tener"])
def test_position_terms_far_out(name):
    """At positions 60,000 on the position terms equal the naive formula on every key a query
    sees, for the sequence and for a query block (the last 4 queries), in float32 and to float64
    rounding in float64: angle addition measures times from the block's first query."""
    pe = perturbed(name)
    pos = torch.arange(10) + 60_000
    q, k = tensors(10)
    logits = naive_logits(q, k, pos, pos, pe.u.detach(), pe.v.detach(), projection(pe))
    expected = expected_bias(logits, q, k)
    seen = torch.ones(10, 10, dtype=torch.bool).tril()  # the rest is masked by attention
    with torch.no_grad():
        got = pe.bias(q, k, pos, pos)
        torch.testing.assert_close(
            got.double()[..., seen], expected[..., seen], rtol=1e-5, atol=2e-5
        )
        got64 = pe.double().bias(q.double(), k.double(), pos, pos)
        torch.testing.assert_close(got64[..., seen], expected[..., seen], rtol=1e-10, atol=1e-10)
        block = pe.bias(q[:, :, -4:].double(), k.double(), pos[-4:], pos)
        torch.testing.assert_close(block[..., seen[-4:]], expected[:, :, -4:][..., seen[-4:]])
