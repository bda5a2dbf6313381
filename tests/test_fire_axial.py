"""encodings/fire.py and encodings/axial.py against their papers' formulas, written out here with
loops in float64 from the modules' parameters (never through the modules' own helpers), plus
what the generic tests in test_model.py cannot see: FIRE's dependence on the query position
(it is not shift invariant, so those tests skip it), axial's table bounds and parameter count."""

import math
import re

import pytest
import torch

import attention
from encoding import build_encoding
from model import GPT, GPTConfig

pytestmark = pytest.mark.usefixtures("one_thread")


def config(encoding, n_head=4, n_embd=32, block_size=64, **kwargs):
    return GPTConfig(vocab_size=64, n_layer=2, n_head=n_head, n_embd=n_embd, block_size=block_size,
                     encoding=encoding, encoding_kwargs=kwargs, attn_block_size=16)  # fmt: skip


def qkv(B=2, H=4, T=12, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, H, T, d, generator=g) for _ in range(3)]


def causal(T):
    return torch.ones(T, T, dtype=torch.bool).tril()


# -----------------------------------------------------------------------------
# FIRE


def fire_with(c, L_multiplier, init_L=512.0, seed=0, **kwargs):
    """A FIRE module with the given c and L multiplier and random MLP weights of size O(1)."""
    torch.manual_seed(seed)
    pe = build_encoding(config("fire", init_L=init_L, **kwargs))
    with torch.no_grad():
        pe.c.fill_(c)
        pe.L_multiplier.fill_(L_multiplier)
        for p in (pe.fc1.weight, pe.fc1.bias, pe.fc2.weight):
            p.copy_(torch.randn(p.shape))
    return pe


def naive_fire_logits(pe, q, k, pos, b2):
    """The paper's logits q_i . k_j / sqrt(d) + f(psi(i - j) / psi(max(i, L)))_h for j <= i, with
    f(x) = W2 relu(W1 x + b1) + b2 and psi(x) = log(|c x| + 1) (the reference module's eps in
    the normaliser), float64, loops over heads, queries, keys and hidden units. b2 is the output
    bias the reference module has and nanoPE drops; -inf above the diagonal."""
    B, H, T, d = q.shape
    c = abs(pe.c.item())
    L = abs(pe.L_multiplier.item() * pe.init_L)
    w1 = pe.fc1.weight[:, 0].tolist()
    b1 = pe.fc1.bias.tolist()
    w2 = pe.fc2.weight.tolist()  # (H, width)
    out = torch.full((B, H, T, T), -math.inf, dtype=torch.float64)
    for h in range(H):
        for t in range(T):
            i = float(pos[t])
            for s in range(t + 1):
                x = math.log(c * (i - float(pos[s])) + 1) / (math.log(c * max(i, L) + 1) + 1e-6)
                f = b2[h] + sum(w2[h][u] * max(0.0, w1[u] * x + b1[u]) for u in range(len(w1)))
                for b in range(B):
                    dot = sum(float(q[b, h, t, e]) * float(k[b, h, s, e]) for e in range(d))
                    out[b, h, t, s] = dot / math.sqrt(d) + f
    return out


FIRE_POSITIONS = [
    # integer positions with gaps, on both sides of L = 0.9 * 560 = 504
    torch.tensor([480, 483, 490, 498, 503, 504, 505, 511, 530, 547, 600, 777]),
    torch.arange(12) * 0.37 + 5.1,  # float times, crossing L = 1.2 * 6 = 7.2
]
FIRE_L = [(0.9, 560.0), (-1.2, 6.0)]  # (L_multiplier, init_L): L = |L_multiplier| init_L


@pytest.mark.parametrize("case", [0, 1], ids=["offset", "float"])
def test_fire_against_naive_formula(case):
    """Attention weights are the paper's (softmax of its logits, output bias b2 included); the
    logits themselves differ from the paper's by a constant per head and query, which softmax
    ignores: nanoPE's bias is f(x) - f(0), 0 at i = j."""
    pos, (L_multiplier, init_L) = FIRE_POSITIONS[case], FIRE_L[case]
    pe = fire_with(c=-0.37, L_multiplier=L_multiplier, init_L=init_L)  # any sign: |c|, |L|
    T = len(pos)
    q, k, v = qkv(T=T)
    b2 = [0.7, -1.3, 2.1, 0.2]
    with torch.no_grad():
        expected = naive_fire_logits(pe, q, k, pos, b2)
        got = pe.scores(q, k, pos, pos).double()
    lower = causal(T)
    diagonal = expected.diagonal(dim1=-2, dim2=-1) - (q * k).sum(-1).double() / math.sqrt(8)
    shifted = expected - diagonal[..., None]  # the paper's logits minus f(0)_h + b2_h per query
    torch.testing.assert_close(got[..., lower], shifted[..., lower], rtol=1e-5, atol=1e-5)
    weights = torch.softmax(expected, dim=-1)
    with torch.no_grad():
        out = attention.causal_attention(q, k, v, pos, pe, query_block=5)
    torch.testing.assert_close(out.double(), weights @ v.double(), rtol=1e-5, atol=1e-5)


def test_fire_depends_on_the_query_position():
    """The same distance gets one bias for every query up to L and a different one at each query
    past it: FIRE is a function of (i - j) / normaliser(i), not of i - j alone."""
    pe = fire_with(c=0.1, L_multiplier=1.0, init_L=100.0)
    d = 7
    queries = torch.tensor([10, 50, 100, 200, 400, 800, 1600])
    with torch.no_grad():
        bias = torch.stack([pe.bias(None, None, i[None], i[None] - d)[0, :, 0, 0] for i in queries])
    torch.testing.assert_close(bias[1], bias[0], rtol=0, atol=0)  # i <= L: psi(L) normalises
    torch.testing.assert_close(bias[2], bias[0], rtol=0, atol=0)
    for a, b in zip(bias[2:], bias[3:]):
        assert (a - b).abs().max() > 1e-3  # i > L: psi(i) normalises
    # so shifting every position changes the model's output once queries pass L
    torch.manual_seed(0)
    m = GPT(config("fire", init_L=16.0)).eval()
    idx = torch.randint(0, 64, (1, 40))
    with torch.no_grad():
        shifted = m(idx, pos=torch.arange(40) + 100)[0]
        assert (m(idx)[0] - shifted).abs().max() > 1e-4


def test_fire_logits_finite_at_8x_the_training_length():
    """At 8x block_size every causal logit is finite, with L below the training length (the
    normaliser moves) and at its default above it, in scores() and through the model."""
    T = 8 * 64
    q, k, _ = qkv(B=1, T=T, seed=1)
    pos = torch.arange(T)
    for init_L in (16.0, 512.0):
        pe = fire_with(c=0.1, L_multiplier=1.0, init_L=init_L)
        with torch.no_grad():
            s = pe.scores(q, k, pos, pos)
        assert torch.isfinite(s[..., causal(T)]).all()
    torch.manual_seed(0)
    m = GPT(config("fire", init_L=16.0)).eval()
    with torch.no_grad():
        logits, loss = m(torch.randint(0, 64, (1, T)), torch.randint(0, 64, (1, T)))
    assert torch.isfinite(logits).all() and torch.isfinite(loss)


def test_fire_parameters_as_the_reference_module():
    """One FIRE per layer: a 1 -> 32 -> H ReLU MLP (no output bias), c = 0.1, a learned
    multiplier 1 of L = 512; none of it weight-decayed."""
    torch.manual_seed(0)
    m = GPT(config("fire"))
    assert len(m.pe) == 2 and m.pe[0] is not m.pe[1]
    pe = m.pe[0]
    shapes = {n: tuple(p.shape) for n, p in pe.named_parameters()}
    assert shapes == {"fc1.weight": (32, 1), "fc1.bias": (32,), "fc2.weight": (4, 32), "c": (),
                      "L_multiplier": ()}  # fmt: skip
    assert pe.c.item() == pytest.approx(0.1) and pe.L_multiplier.item() == 1.0
    assert pe.init_L == 512.0 and pe.shift_invariant is False
    assert pe.fc1.weight.abs().max() <= 1 and pe.fc2.weight.abs().max() <= 1 / math.sqrt(32)
    assert pe.decayed_parameters == ()
    assert build_encoding(config("fire", mlp_width=8)).fc1.weight.shape == (8, 1)


@pytest.mark.parametrize(
    "kwargs", [{"mlp_width": 0}, {"mlp_width": 2.5}, {"init_c": 0}, {"init_L": -1.0}]
)
def test_fire_bad_options(kwargs):
    with pytest.raises(ValueError, match=f"fire {next(iter(kwargs))} must be a positive"):
        build_encoding(config("fire", **kwargs))


# -----------------------------------------------------------------------------
# axial


def naive_axial(table1, table2, positions):
    """P[n] = concat(P1[n mod n1], P2[n // n1]), channel by channel, float64."""
    n1, d1 = table1.shape
    d2 = table2.shape[1]
    out = torch.zeros(len(positions), d1 + d2, dtype=torch.float64)
    table1, table2 = table1.detach(), table2.detach()
    for r, n in enumerate(int(p) for p in positions):
        for c in range(d1):
            out[r, c] = float(table1[n % n1, c])
        for c in range(d2):
            out[r, d1 + c] = float(table2[n // n1, c])
    return out


@pytest.mark.parametrize(
    "block_size, kwargs",
    [(64, {}), (15, {"shape": (5, 3), "dims": (20, 12)}), (10, {"shape": [4, 3]})],
    ids=["default", "5x3", "4x3-list"],
)
def test_axial_against_naive_lookup(block_size, kwargs):
    torch.manual_seed(0)
    pe = build_encoding(config("axial", block_size=block_size, **kwargs))
    n1, n2 = pe.shape
    positions = [torch.arange(n1 * n2), torch.randperm(n1 * n2)[:7], torch.tensor([0.0, 3.0])]
    for pos in positions:
        with torch.no_grad():
            got = pe.embed(pos).double()
        torch.testing.assert_close(got, naive_axial(pe.table1, pe.table2, pos), rtol=0, atol=0)


def test_axial_shape_dims_and_parameter_count():
    """Defaults: the factorisation of block_size closest to square, the larger factor on the fast
    axis; 3/4 of the width on the fast axis (Hugging Face's Reformer configs). d1 n1 + d2 n2
    parameters, weight-decayed as the learned table, not counted as non-embedding."""
    for (block, D), shape, dims in [
        ((512, 768), (32, 16), (576, 192)),
        ((64, 32), (8, 8), (24, 8)),
        ((61, 32), (61, 1), (24, 8)),
        ((12, 8), (4, 3), (6, 2)),
    ]:
        pe = build_encoding(config("axial", n_head=4, n_embd=D, block_size=block))
        assert (pe.shape, pe.dims, pe.max_len) == (shape, dims, shape[0] * shape[1])
        n = sum(p.numel() for p in pe.parameters())
        assert n == dims[0] * shape[0] + dims[1] * shape[1]
    pe = build_encoding(config("axial", block_size=20, shape=(7, 3), dims=(30, 2)))
    assert sum(p.numel() for p in pe.parameters()) == 30 * 7 + 2 * 3 and pe.max_len == 21
    m = GPT(config("axial"))
    assert m.get_num_params(non_embedding=False) - m.get_num_params() == 24 * 8 + 8 * 8
    opt = m.configure_optimizers(0.1, 1e-3, (0.9, 0.95), "cpu")
    decayed = {id(p) for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    assert id(m.pe[0].table1) in decayed and id(m.pe[0].table2) in decayed


def test_axial_is_bounded_like_learned():
    """Positions outside [0, n1 n2) or between integers raise the learned table's error; the model
    runs to n1 n2 (which may exceed block_size) and no further."""
    pe = build_encoding(config("axial", block_size=10, shape=(4, 3)))
    for bad in (torch.tensor([0, 12]), torch.tensor([-1, 3])):
        with pytest.raises(ValueError, match="go from 0 to 11"):
            pe.embed(bad)
    with pytest.raises(ValueError, match="integer positions"):
        pe.embed(torch.tensor([0.0, 0.5]))
    m = GPT(config("axial", block_size=10, shape=(4, 3)))
    assert m.max_len == 12 and m(torch.zeros(1, 12, dtype=torch.long))[0].shape == (1, 12, 64)
    with pytest.raises(ValueError, match="go from 0 to 11"):
        m(torch.zeros(1, 13, dtype=torch.long))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"shape": (4, 4)}, "covers 16 positions, fewer than block_size=64"),
        ({"shape": (8, 0)}, "shape must be two positive integers"),
        ({"shape": 64}, "shape must be two positive integers"),
        ({"dims": (16, 8)}, "must add up to n_embd=32"),
        ({"dims": (32, 0)}, "dims must be two positive integers"),
    ],
)
def test_axial_bad_options(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        build_encoding(config("axial", **kwargs))
