"""encodings/: each encoding against an independent formula written here from the papers (and the
published tables: ALiBi's slopes, T5's bucket ranges): loops and explicit matrices in float64,
never the module's own helpers. The properties every encoding shares (causality, shift
invariance, fast path == scores, gradients, long inputs) are in test_model.py.

Tolerances: the modules return float32, so float32 results are compared at ~1e-6 relative to the
float64 formulas; float64-in, float64-out comparisons at 1e-10.
"""

import math

import pytest
import torch
from helpers import MaxStorage

import attention
from encoding import Encoding, build_encoding, compute_dtype, rotate_pairs
from model import GPT, GPTConfig

pytestmark = pytest.mark.usefixtures("one_thread")


def config(encoding, n_head=4, n_embd=32, **kwargs):
    return GPTConfig(vocab_size=64, n_layer=2, n_head=n_head, n_embd=n_embd, block_size=64,
                     encoding=encoding, encoding_kwargs=kwargs, attn_block_size=16)  # fmt: skip


def qk(B=2, H=4, T=12, d=8, seed=0, n=2):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, H, T, d, generator=g) for _ in range(n)]


def sorted_positions(T, start, seed=0):
    """T distinct increasing integer positions with gaps, starting near `start`."""
    g = torch.Generator().manual_seed(seed)
    return start + torch.cumsum(torch.randint(1, 4, (T,), generator=g), 0)


def causal(T):
    return torch.ones(T, T, dtype=torch.bool).tril()


def rotation(phi):
    """2x2 rotation matrix R(phi) = [[cos, -sin], [sin, cos]] as a float64 tensor."""
    c, s = math.cos(phi), math.sin(phi)
    return torch.tensor([[c, -s], [s, c]], dtype=torch.float64)


def block_rotation(angles):
    """d x d block-diagonal matrix with R(angles[i]) acting on the interleaved pair (2i, 2i+1)."""
    d = 2 * len(angles)
    M = torch.zeros(d, d, dtype=torch.float64)
    for i, phi in enumerate(angles):
        M[2 * i : 2 * i + 2, 2 * i : 2 * i + 2] = rotation(phi)
    return M


def rope_thetas(d, base=10000.0):
    return [base ** (-2 * i / d) for i in range(d // 2)]


# -----------------------------------------------------------------------------
# ALiBi


ALIBI_SLOPES = {
    8: [2.0**-i for i in range(1, 9)],
    12: [2.0**-i for i in range(1, 9)] + [2.0**-0.5, 2.0**-1.5, 2.0**-2.5, 2.0**-3.5],
    6: [2.0**-2, 2.0**-4, 2.0**-6, 2.0**-8, 2.0**-1, 2.0**-3],
}


@pytest.mark.parametrize("H", [8, 12, 6])
def test_alibi_bias(H):
    pe = build_encoding(config("alibi", n_head=H, n_embd=4 * H))
    assert not pe.has_embed and len(list(pe.parameters())) == 0
    T = 10
    (q,) = qk(B=2, H=H, T=T, d=4, n=1)
    pos = sorted_positions(T, 500)
    bias = pe.bias(q, q, pos, pos)
    assert torch.broadcast_shapes(bias.shape, (2, H, T, T)) == (2, H, T, T)
    expected = torch.zeros(H, T, T, dtype=torch.float64)
    for h in range(H):
        for t in range(T):
            for s in range(T):
                expected[h, t, s] = -ALIBI_SLOPES[H][h] * (int(pos[t]) - int(pos[s]))
    got = bias.double().expand(2, H, T, T)
    for b in range(2):
        torch.testing.assert_close(got[b], expected, rtol=1e-6, atol=1e-6)
    # and the explicit scores are q.k / sqrt(d) plus that bias
    k = torch.randn_like(q)
    ref = (q.double() @ k.double().mT) / 2.0 + expected
    torch.testing.assert_close(pe.scores(q, k, pos, pos).double(), ref, rtol=1e-5, atol=1e-5)


# -----------------------------------------------------------------------------
# T5


T5_RANGES = [(16, 18), (19, 20), (21, 23), (24, 26), (27, 30), (31, 34), (35, 39), (40, 45),
             (46, 51), (52, 58), (59, 66), (67, 76), (77, 86), (87, 98), (99, 112)]  # fmt: skip


def t5_bucket_table(n):
    """The bucket of distance n, read off REFERENCES.md's table (not computed from the formula)."""
    if n < 16:
        return n
    for b, (lo, hi) in enumerate(T5_RANGES):
        if lo <= n <= hi:
            return 16 + b
    return 31


def test_t5_buckets_every_distance_to_200():
    pe = build_encoding(config("t5"))
    H = 4
    with torch.no_grad():  # table[b, h] = b + 100 h, so the bias reveals the bucket
        pe.table.copy_(torch.arange(32)[:, None] + 100.0 * torch.arange(H)[None, :])
    pos_q, pos_k = torch.tensor([200]), torch.arange(201)
    (q,) = qk(B=1, H=H, T=1, n=1)
    with torch.no_grad():
        bias = pe.bias(q, q, pos_q, pos_k).expand(1, H, 1, 201)[0, :, 0]  # (H, 201): key s
    for h in range(H):
        got = [round(float(x)) - 100 * h for x in bias[h]]
        expected = [t5_bucket_table(200 - s) for s in range(201)]
        assert got == expected, f"head {h}"


def test_t5_bias_lookup_and_shared_table():
    pe = build_encoding(config("t5"))
    with torch.no_grad():
        pe.table.normal_()
    T = 30
    q, k = qk(B=2, T=T)
    pos = 1000 + torch.cumsum(torch.randint(1, 9, (T,), generator=torch.Generator()), 0)
    table = pe.table.detach().double()
    expected = torch.zeros(4, T, T, dtype=torch.float64)
    for t in range(T):
        for s in range(t + 1):
            expected[:, t, s] = table[t5_bucket_table(int(pos[t] - pos[s]))]
    mask = causal(T)
    got = pe.bias(q, q, pos, pos).double().expand(2, 4, T, T)
    torch.testing.assert_close(got[:, :, mask], expected[None, :, mask].expand(2, -1, -1))
    ref = (q.double() @ k.double().mT) / math.sqrt(8) + expected
    got = pe.scores(q, k, pos, pos).double()
    torch.testing.assert_close(got[..., mask], ref[..., mask], rtol=1e-5, atol=1e-5)
    # one table for the whole model, used by every layer
    m = GPT(config("t5"))
    assert len(m.pe) == 1
    assert all(m.layer_encoding(i) is m.pe[0] for i in range(m.config.n_layer))


# -----------------------------------------------------------------------------
# Shaw


def test_shaw_against_naive_formula():
    K, d, T = 3, 8, 12
    pe = build_encoding(config("shaw", max_relative_position=K))
    # the paper's 2K + 1 vectors a_{-K} .. a_K; the module keeps a_{-K} .. a_0 (the causal ones)
    a = torch.randn(2 * K + 1, d, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        pe.rel.copy_(a[: K + 1])
    q, k = qk(B=2, T=T, d=d)
    pos = sorted_positions(T, 1000)  # gaps of 1..3: distances from 0 past K
    qd, kd = q.double(), k.double()
    expected = torch.zeros(2, 4, T, T, dtype=torch.float64)
    for i in range(T):
        for j in range(i + 1):
            rel = max(-K, min(K, int(pos[j]) - int(pos[i])))
            expected[:, :, i, j] = (qd[:, :, i] * (kd[:, :, j] + a[rel + K])).sum(-1) / math.sqrt(d)
    mask = causal(T)
    got = pe.scores(q, k, pos, pos).double()
    torch.testing.assert_close(got[..., mask], expected[..., mask], rtol=1e-5, atol=1e-5)


def test_shaw_one_instance_per_layer():
    m = GPT(config("shaw"))
    assert len(m.pe) == m.config.n_layer
    assert m.layer_encoding(0) is not m.layer_encoding(1)
    assert not torch.equal(m.pe[0].rel, m.pe[1].rel)


def test_shaw_never_builds_a_T_T_d_tensor():
    """Every tensor the bias and the attention create is checked: a (T, T, d) tensor (or anything
    a quarter of that) fails. B = 1 and H = 2 < d = 32 keep the legitimate (B, H, T, T) small."""
    T, d = 256, 32
    pe = build_encoding(config("shaw", n_head=2, n_embd=64))
    q, k, v = qk(B=1, H=2, T=T, d=d, n=3)
    pos = torch.arange(T)
    with torch.no_grad(), MaxStorage() as rec:
        pe.bias(q, q, pos, pos)
        attention.causal_attention(q, k, v, pos, pe, query_block=T)
    assert rec.largest < T * T * d // 4, f"{rec.op} made {rec.largest} elements"


# -----------------------------------------------------------------------------
# RoPE


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_rotate_pairs_complex_product_is_the_rotation(dtype):
    """Eager rotate_pairs multiplies complex numbers; it must give (a cos - b sin, a sin + b cos)
    on every input layout: a strided view of a projection, and a slice at an odd channel offset
    (a complex view of it is impossible: the copy path)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 12, 3 * 4 * 8, generator=g).to(dtype)  # (B, T, 3C): c_attn's output
    views = [x[..., 32:64].view(2, 12, 4, 8).transpose(1, 2), x[..., 33:41].unsqueeze(1)]
    for v in views:
        angle = torch.randn(12, 4, generator=g, dtype=torch.float64)
        ct = compute_dtype(dtype)
        cos, sin = angle.cos().to(ct), angle.sin().to(ct)
        a, b = v[..., 0::2].to(ct), v[..., 1::2].to(ct)
        ref = torch.stack((a * cos - b * sin, a * sin + b * cos), -1).flatten(-2).to(dtype)
        got = rotate_pairs(v, cos, sin)
        assert got.dtype == dtype
        tol = 0 if dtype == torch.bfloat16 else 1e-6  # bf16: the same float32 math, rounded
        torch.testing.assert_close(got, ref, rtol=tol, atol=tol)


def naive_rope(x, pos):
    """x (B, H, T, d) rotated by explicit block rotation matrices R(t theta_i), float64."""
    d = x.size(-1)
    thetas = rope_thetas(d)
    M = torch.stack([block_rotation([float(t) * th for th in thetas]) for t in pos.tolist()])
    return torch.einsum("tde,bhte->bhtd", M, x.double())


@pytest.mark.parametrize("start", [0, 60_000])
def test_rope_against_rotation_matrices(start):
    pe = build_encoding(config("rope"))
    T = 9
    q, k = qk(T=T)
    pos = sorted_positions(T, start)
    q_r, k_r = pe.rotate(q, k, pos, pos)
    q_ref, k_ref = naive_rope(q, pos), naive_rope(k, pos)
    # float32 rotation of O(1) values; cos/sin of angles up to 6e4 rad rounded to float32
    torch.testing.assert_close(q_r.double(), q_ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(k_r.double(), k_ref, rtol=1e-5, atol=1e-6)
    ref_scores = q_ref @ k_ref.mT / math.sqrt(8)
    scores = pe.scores(q, k, pos, pos).double()
    torch.testing.assert_close(scores, ref_scores, rtol=1e-5, atol=1e-5)
    # rotate()'s dot products are the scores
    dots = q_r.double() @ k_r.double().mT / math.sqrt(8)
    torch.testing.assert_close(dots, scores, rtol=1e-5, atol=1e-5)


def test_rope_pairs_are_interleaved():
    """Only channels (0, 1) set: the rotation must mix exactly those two, with angle t * 1."""
    pe = build_encoding(config("rope"))
    q = torch.zeros(1, 4, 1, 8)
    q[..., 0] = 1.0
    q_r, _ = pe.rotate(q, q, torch.tensor([2]), torch.tensor([2]))
    expected = torch.zeros(8)
    expected[0], expected[1] = math.cos(2.0), math.sin(2.0)
    torch.testing.assert_close(q_r[0, 0, 0], expected)


def test_rope_cache_sees_in_place_changes():
    torch.manual_seed(0)
    m = GPT(config("rope")).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    idx = torch.randint(0, 64, (1, 20))
    pos = torch.arange(20)
    m(idx, pos=pos)
    pos[10:] += 7  # a gap in time: a different input
    torch.testing.assert_close(m(idx, pos=pos)[0], m(idx, pos=pos.clone())[0])


def test_rope_float64_inputs_are_exact():
    """float64 q, k: the module computes angles in float64, so it matches to 1e-10."""
    pe = build_encoding(config("rope"))
    q, k = (x.double() for x in qk(T=6))
    pos = sorted_positions(6, 100)
    ref = naive_rope(q, pos) @ naive_rope(k, pos).mT / math.sqrt(8)
    # scores() may return float32 (the module's pair products are float32): 1e-6 then
    got = pe.scores(q, k, pos, pos).double()
    tol = 1e-10 if pe.scores(q, k, pos, pos).dtype == torch.float64 else 1e-5
    torch.testing.assert_close(got, ref, rtol=tol, atol=tol)


# -----------------------------------------------------------------------------
# damped RoPE


def retnet_alphas(H):
    return [math.log(1 - 2.0 ** (-5 - h)) for h in range(H)]


def naive_damped(q, k, pos, alphas, decay="logit"):
    """e^{alpha_h (t - s)} q_t^T R(omega (s - t)) k_s / sqrt(d) (decay="logit"), or
    q_t^T R(omega (s - t)) k_s / sqrt(d) + alpha_h (t - s) (decay="weight"), float64."""
    B, H, T, d = q.shape
    omegas = rope_thetas(d)
    p = [int(x) for x in pos]
    M = torch.stack([torch.stack([block_rotation([w * (s - t) for w in omegas]) for s in p])
                     for t in p])  # fmt: skip
    rot = torch.einsum("bhtd,tsde,bhse->bhts", q.double(), M, k.double()) / math.sqrt(d)
    delta = torch.tensor([[t - s for s in p] for t in p], dtype=torch.float64)
    a = torch.tensor(alphas, dtype=torch.float64)[:, None, None] * delta
    return rot * a.exp() if decay == "logit" else rot + a


@pytest.mark.parametrize("decay", ["logit", "weight"])
def test_damped_rope_against_naive_formula(decay):
    pe = build_encoding(config("damped_rope", decay=decay))
    T = 51
    q, k, v = qk(B=1, T=T, n=3)
    q, k = 2 * q, 2 * k  # logits of a few units
    pos = torch.arange(60_000, 60_000 + T)
    ref = naive_damped(q, k, pos, retnet_alphas(4), decay)
    torch.testing.assert_close(pe.scores(q, k, pos, pos).double(), ref, rtol=1e-5, atol=1e-5)
    # the fast path (block-relative times, float32) against float64 attention from the formula
    att = torch.softmax(ref.masked_fill(~causal(T), float("-inf")), -1)
    out = attention.causal_attention(q, k, v, pos, pe, query_block=16)
    torch.testing.assert_close(out.double(), att @ v.double(), rtol=1e-5, atol=1e-5)
    # ... and it equals the same attention at positions 0 .. 50 (float32, 1e-4 relative)
    out0 = attention.causal_attention(q, k, v, pos - 60_000, pe, query_block=16)
    assert ((out - out0).abs().max() / out0.abs().max()) < 1e-4
    # rotate()'s dot products equal scores() (small, block-relative times, as attention uses)
    p = torch.arange(T) - 7.0
    q_r, k_r = pe.rotate(q, k, p, p)
    dots = q_r.double() @ k_r.double().mT / math.sqrt(8)
    if decay == "weight":
        dots = dots + pe.bias(q, k, p, p).double()
    torch.testing.assert_close(dots, pe.scores(q, k, p, p).double(), rtol=1e-5, atol=1e-5)


def test_damped_rope_without_decay_is_rope():
    rope = build_encoding(config("rope"))
    for decay in ("logit", "weight"):
        damped = build_encoding(config("damped_rope", gammas=[1.0] * 4, decay=decay))
        q, k, v = qk(B=1, T=40, n=3)
        pos = torch.arange(40) + 123
        torch.testing.assert_close(
            damped.scores(q, k, pos, pos), rope.scores(q, k, pos, pos), rtol=1e-6, atol=1e-6
        )
        a = attention.causal_attention(q, k, v, pos, damped, query_block=16)
        b = attention.causal_attention(q, k, v, pos, rope, query_block=16)
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_damped_rope_defaults_and_options():
    pe = build_encoding(config("damped_rope", n_head=8, n_embd=64))
    gammas = [0.96875, 0.984375, 0.9921875, 0.99609375, 0.998046875, 0.9990234375,
              0.99951171875, 0.999755859375]  # fmt: skip
    torch.testing.assert_close(pe.alpha().double(), torch.tensor(gammas).double().log())
    assert list(pe.parameters()) == []
    n_param = {}
    for kw in ({}, {"learn_alpha": True}, {"learn_omega": True}):
        learned = build_encoding(config("damped_rope", **kw))
        n_param[tuple(kw)] = sum(p.numel() for p in learned.parameters() if p.requires_grad)
        # same starting point as the fixed encoding
        q, k = qk(T=10)
        pos = torch.arange(10)
        fixed = build_encoding(config("damped_rope"))
        torch.testing.assert_close(
            learned.scores(q, k, pos, pos), fixed.scores(q, k, pos, pos), rtol=1e-5, atol=1e-6
        )
    assert n_param[()] == 0
    assert n_param[("learn_alpha",)] == 4  # one decay per head
    assert n_param[("learn_omega",)] >= 4  # frequencies: shared or per head
    with pytest.raises(ValueError, match="decay"):
        build_encoding(config("damped_rope", decay="softmax"))


# -----------------------------------------------------------------------------
# sinusoidal, learned, NoPE


def test_sinusoidal_is_vaswani():
    D = 32
    pe = build_encoding(config("sinusoidal", n_embd=D))
    pos = torch.tensor([0, 1, 2, 7, 100, 1000, 60_000])
    expected = torch.zeros(len(pos), D, dtype=torch.float64)
    for r, p in enumerate(pos.tolist()):
        for i in range(D // 2):
            expected[r, 2 * i] = math.sin(p / 10000 ** (2 * i / D))
            expected[r, 2 * i + 1] = math.cos(p / 10000 ** (2 * i / D))
    torch.testing.assert_close(pe.table(pos).double(), expected, rtol=1e-6, atol=1e-6)
    # added to the tokens at the RMS of GPT-2's token init (0.02), or literally with scale=1
    torch.testing.assert_close(pe.embed(pos), pe.table(pos) * 0.02 * math.sqrt(2))
    literal = build_encoding(config("sinusoidal", n_embd=D, scale=1.0))
    torch.testing.assert_close(literal.embed(pos).double(), expected, rtol=1e-6, atol=1e-6)
    assert list(pe.parameters()) == []


def test_learned_table():
    pe = build_encoding(config("learned"))
    assert pe.max_len == 64
    pos = torch.tensor([0, 5, 63, 5])
    torch.testing.assert_close(pe.embed(pos), pe.table[pos])
    for bad in (torch.arange(65), torch.tensor([-1, 0]), torch.tensor([0.5, 1.0])):
        with pytest.raises(ValueError) as e:
            pe.embed(bad)
        assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="63.*64|cannot extrapolate"):
        GPT(config("learned"))(torch.zeros(1, 65, dtype=torch.long))
    m = GPT(config("learned", max_len=16))
    assert m.max_len == 16


def test_learned_generate_crops_context():
    torch.manual_seed(0)
    m = GPT(config("learned", max_len=16)).eval()
    idx = torch.randint(0, 64, (1, 20))  # already longer than the table
    out = m.generate(idx, 3, temperature=0)
    assert out.shape == (1, 23)
    for t in range(20, 23):
        with torch.no_grad():
            assert out[0, t] == m(out[:, t - 16 : t])[0][0, -1].argmax()


def test_nope_is_plain_attention():
    pe = build_encoding(config("nope"))
    q, k = qk(T=7)
    pos = torch.arange(7) + 99
    assert list(pe.parameters()) == [] and not (pe.has_embed or pe.has_rotate or pe.has_bias)
    ref = q.double() @ k.double().mT / math.sqrt(8)
    torch.testing.assert_close(pe.scores(q, k, pos, pos).double(), ref, rtol=1e-6, atol=1e-6)


# -----------------------------------------------------------------------------
# KERPLE and Sandwich

# offset integer positions with gaps, and float times
KERNEL_POSITIONS = [sorted_positions(10, 700), torch.arange(10) * 0.37 + 5.1]


def naive_kerple(pos, r1, r2, variant):
    """-r1_h log(1 + r2_h (t - s)) or -r1_h (t - s)^r2_h for t >= s (0 above the diagonal),
    float64, loops."""
    T, H = len(pos), len(r1)
    out = torch.zeros(H, T, T, dtype=torch.float64)
    for h in range(H):
        for t in range(T):
            for s in range(t + 1):
                n = float(pos[t]) - float(pos[s])
                kernel = math.log(1 + r2[h] * n) if variant == "log" else n ** r2[h]
                out[h, t, s] = -r1[h] * kernel
    return out


@pytest.mark.parametrize("pos", KERNEL_POSITIONS, ids=["offset", "float"])
@pytest.mark.parametrize("variant", ["log", "power"])
def test_kerple_against_naive_formula(variant, pos):
    pe = build_encoding(config("kerple", variant=variant))
    # raw values below the 0.01 bound and (power) above r2's bound of 2 are clamped to them
    raw1, raw2 = [0.5, 1.7, -0.3, 0.004], [0.2, 2.5, 0.9, -1.0]
    with torch.no_grad():
        pe.r1.copy_(torch.tensor(raw1))
        pe.r2.copy_(torch.tensor(raw2))
    r1 = [max(x, 0.01) for x in raw1]
    r2 = [min(max(x, 0.01), 2.0) if variant == "power" else max(x, 0.01) for x in raw2]
    T = len(pos)
    q, k = qk(T=T)
    expected = naive_kerple(pos, r1, r2, variant)
    with torch.no_grad():
        bias = pe.bias(q, k, pos, pos).double().expand(2, 4, T, T)
    lower = causal(T)
    for b in range(2):
        torch.testing.assert_close(bias[b][:, lower], expected[:, lower], rtol=1e-6, atol=1e-6)
    ref = (q.double() @ k.double().mT) / math.sqrt(8) + expected
    with torch.no_grad():
        got = pe.scores(q, k, pos, pos).double()
    torch.testing.assert_close(got[..., lower], ref[..., lower], rtol=1e-5, atol=1e-5)


def test_kerple_parameters_as_the_authors_code():
    """One (r1, r2) per head, shared by all layers, initialised uniformly as in the authors'
    code (log: r1 in [0, 2), r2 in [0, 1); power: r1 in [0, 1), r2 in [0, 2)), never decayed;
    the bounds clamp the value but pass the gradient through (projected gradient descent)."""
    torch.manual_seed(0)
    m = GPT(config("kerple", n_head=64, n_embd=256))
    assert len(m.pe) == 1 and sorted(n for n, _ in m.pe.named_parameters()) == ["0.r1", "0.r2"]
    assert Encoding.decayed_parameters == m.pe[0].decayed_parameters == ()
    for variant, (hi1, hi2) in {"log": (2, 1), "power": (1, 2)}.items():
        pe = build_encoding(config("kerple", n_head=64, n_embd=256, variant=variant))
        for p, hi in ((pe.r1, hi1), (pe.r2, hi2)):
            assert p.shape == (64,) and p.min() >= 0 and p.max() < hi and p.max() > 0.8 * hi
            assert p.std() > 0.2 * hi  # spread over the interval, not a constant
    pe = build_encoding(config("kerple", variant="power"))
    with torch.no_grad():
        pe.r1.copy_(torch.tensor([-1.0, 0.5, 0.5, 0.5]))
        pe.r2.copy_(torch.tensor([1.0, 3.0, 1.0, 1.0]))
    pos = torch.arange(6)
    pe.bias(None, None, pos, pos).sum().backward()
    assert pe.r1.grad[0] != 0 and pe.r2.grad[1] != 0  # clamped values still get gradients
    assert torch.isfinite(pe.r2.grad).all()  # (t - s)^r2 at t = s: no 0 * log 0


def test_kerple_options():
    with pytest.raises(ValueError, match="'log', 'power'.*'linear'"):
        build_encoding(config("kerple", variant="linear"))
    with pytest.raises(ValueError, match="options: variant"):
        build_encoding(config("kerple", r3=1.0))


def naive_sandwich(pos, H, d_bar=128):
    """(p_t . p_s - d_bar/2) / (8 n / H) for head n = 1 .. H, with p_t Vaswani's sinusoid
    [sin(t w_i), cos(t w_i)], w_i = 10000^(-2i/d_bar): the embeddings' inner product written out,
    float64, loops."""
    T = len(pos)
    emb = torch.zeros(T, d_bar, dtype=torch.float64)
    for r in range(T):
        for i in range(d_bar // 2):
            angle = float(pos[r]) / 10000 ** (2 * i / d_bar)
            emb[r, 2 * i], emb[r, 2 * i + 1] = math.sin(angle), math.cos(angle)
    out = torch.zeros(H, T, T, dtype=torch.float64)
    for h in range(H):
        for t in range(T):
            for s in range(T):
                dot = sum(float(emb[t, c]) * float(emb[s, c]) for c in range(d_bar))
                out[h, t, s] = (dot - d_bar / 2) / (8 * (h + 1) / H)
    return out


@pytest.mark.parametrize("pos", KERNEL_POSITIONS, ids=["offset", "float"])
@pytest.mark.parametrize("H, d_bar", [(4, 128), (12, 128), (4, 16)])
def test_sandwich_against_naive_formula(H, d_bar, pos):
    pe = build_encoding(config("sandwich", n_head=H, n_embd=8 * H, d_bar=d_bar))
    assert list(pe.parameters()) == [] and pe.state_dict() == {}
    T = len(pos)
    q, k = qk(H=H, T=T)
    expected = naive_sandwich(pos, H, d_bar)
    bias = pe.bias(q, k, pos, pos).double().expand(2, H, T, T)
    # float32 angles (t - s) w_i: ~1e-7 relative, on sums of up to d_bar/2 = 64 cosines
    for b in range(2):
        torch.testing.assert_close(bias[b], expected, rtol=1e-5, atol=2e-5)
    ref = (q.double() @ k.double().mT) / math.sqrt(8) + expected
    torch.testing.assert_close(pe.scores(q, k, pos, pos).double(), ref, rtol=1e-5, atol=2e-5)


def test_sandwich_shape_and_options():
    """0 at t = s, below 0 elsewhere; each head the first one's bias divided by n (ratio 8n/H)."""
    pe = build_encoding(config("sandwich", n_head=8, n_embd=64))
    pos = torch.arange(2000)
    b = pe.bias(None, None, pos[-1:], pos)[0, :, 0]  # (H, 2000): key s, query t = 1999
    assert b[:, -1].abs().max() < 1e-4 and (b[:, :-1] < 0).all()
    for n in range(1, 9):
        torch.testing.assert_close(b[n - 1], b[0] / n)
    for bad in (0, 7, -2, 64.0):
        with pytest.raises(ValueError, match="d_bar"):
            build_encoding(config("sandwich", d_bar=bad))


@pytest.mark.filterwarnings("ignore")  # eager flex_attention warns that it is unfused: fine here
@pytest.mark.parametrize("name, kwargs", [("kerple", {"variant": "power"}), ("sandwich", {})])
def test_kerple_power_and_sandwich_fast_path_and_flex(name, kwargs):
    """The variants the generic tests do not list: blockwise attention = softmax(scores()), and
    FlexAttention's score_mod = the blockwise bias, at offset and float positions."""
    pe = build_encoding(config(name, **kwargs))
    T = 40
    q, k, v = qk(B=1, T=T, n=3)
    for pos in (torch.arange(T) + 1000, torch.arange(T) * 0.37 + 5.1):
        with torch.no_grad():
            att = torch.softmax(pe.scores(q, k, pos, pos).masked_fill(~causal(T), -math.inf), -1)
            out = attention.causal_attention(q, k, v, pos, pe, query_block=16)
            torch.testing.assert_close(out, att @ v, rtol=1e-5, atol=1e-5)
            if attention.FLEX_FORWARD:
                by_flex = attention.causal_attention(q, k, v, pos, pe, backend="flex")
                torch.testing.assert_close(by_flex, out, rtol=1e-5, atol=1e-5)
