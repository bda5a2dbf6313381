"""encodings/huang.py (Huang et al. 2020, methods 1-4) and encodings/da.py (DA-Transformer) against
naive float64 formulas written out here, loops and all, at offset integer positions with gaps
(distances past the clipping distance K) and at float times closer than 1 apart; the clipping;
gradients reaching the tables; method 3's memory; and the attention paths of the non-default
methods, which test_model.py's property tests (run on the defaults) do not reach."""

import math

import pytest
import torch
from helpers import MaxStorage

import attention
import kv_cache
from encoding import build_encoding
from model import GPT, GPTConfig

pytestmark = pytest.mark.usefixtures("one_thread")

H, D = 4, 8


def config(encoding, n_head=H, n_embd=H * D, **kwargs):
    return GPTConfig(vocab_size=64, n_layer=2, n_head=n_head, n_embd=n_embd, block_size=64,
                     encoding=encoding, encoding_kwargs=kwargs, attn_block_size=16)  # fmt: skip


def qkv(B=2, T=12, n=2, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, H, T, D, generator=g, dtype=dtype) for _ in range(n)]


def causal(T):
    return torch.ones(T, T, dtype=torch.bool).tril()


# integer positions with gaps of 1..3 starting at 700, and float times 0.1..0.9 apart
T_NAIVE = 12
_GAPS = torch.randint(1, 4, (T_NAIVE,), generator=torch.Generator().manual_seed(0))
_STEPS = torch.rand(T_NAIVE, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
POSITIONS = [700 + torch.cumsum(_GAPS, 0), 5.1 + torch.cumsum(0.1 + 0.8 * _STEPS, 0)]
FLOAT_40 = 5.1 + torch.arange(40, dtype=torch.float64) * 0.37  # 40 float times
POSITION_IDS = ["offset", "float"]


# -----------------------------------------------------------------------------
# Huang et al. 2020


def naive_huang(q, k, pos, table, method, K):
    """The paper's four logits for t >= s, float64 loops (0 above the diagonal). table holds the
    paper's 2K + 1 entries a_{-K} .. a_K (row x + K is a_x): scalars for methods 1-2, vectors
    for 3-4; method 1 reads a_{|x|}, the others a_x, with x = clip(round(t - s), -K, K)."""
    B, Hn, T, d = q.shape
    out = torch.zeros(B, Hn, T, T, dtype=torch.float64)
    for b in range(B):
        for h in range(Hn):
            for i in range(T):
                for j in range(i + 1):
                    x = max(-K, min(K, round(float(pos[i]) - float(pos[j]))))
                    a = table[abs(x) + K] if method == 1 else table[x + K]
                    qi, kj = q[b, h, i], k[b, h, j]
                    if method in (1, 2):
                        dot = sum(float(qi[c]) * float(kj[c]) for c in range(d))
                        logit = float(a) * dot
                    elif method == 3:
                        logit = sum(float(qi[c]) * float(kj[c]) * float(a[c]) for c in range(d))
                    else:
                        logit = sum(
                            float(qi[c]) * float(kj[c])
                            + float(qi[c]) * float(a[c])
                            + float(kj[c]) * float(a[c])
                            for c in range(d)
                        )
                    out[b, h, i, j] = logit / math.sqrt(d)
    return out


@pytest.mark.parametrize("pos", POSITIONS, ids=POSITION_IDS)
@pytest.mark.parametrize("method", [1, 2, 3, 4])
def test_huang_against_naive_formula(method, pos):
    K = 3  # gaps of 1..3 and 12 positions: most distances are clipped
    pe = build_encoding(config("huang", method=method, max_relative_position=K)).double()
    g = torch.Generator().manual_seed(2)
    shape = (2 * K + 1,) if method in (1, 2) else (2 * K + 1, D)
    table = 1 + torch.randn(shape, generator=g, dtype=torch.float64)
    with torch.no_grad():  # the module keeps a_0 .. a_K, the half a causal model sees
        pe.rel.copy_(table[K:])
    T = len(pos)
    q, k = qkv(T=T)
    expected = naive_huang(q, k, pos, table, method, K)
    with torch.no_grad():
        got = pe.scores(q, k, pos, pos)
    mask = causal(T)
    assert got.shape == (2, H, T, T) and got.dtype == torch.float64
    torch.testing.assert_close(got[..., mask], expected[..., mask], rtol=1e-10, atol=1e-10)


def test_huang_method_2_is_method_1_under_the_causal_mask():
    pos = POSITIONS[0]
    q, k = qkv(T=len(pos))
    pes = [build_encoding(config("huang", method=m)).double() for m in (1, 2)]
    with torch.no_grad():
        for pe in pes:
            pe.rel.copy_(torch.linspace(0.5, 2.0, 17, dtype=torch.float64))
        torch.testing.assert_close(pes[0].scores(q, k, pos, pos), pes[1].scores(q, k, pos, pos))


@pytest.mark.parametrize("method", [1, 3, 4])
def test_huang_clipping(method):
    """Keys K or more behind a query share row K: changing rows 0 .. K-1 moves only the logits
    of keys nearer than K; changing row K moves only the others."""
    K, T = 4, 24
    pe = build_encoding(config("huang", method=method, max_relative_position=K)).double()
    q, k = qkv(B=1, T=T, seed=3)
    pos = torch.arange(T) + 50
    near = causal(T) & ~causal(T).tril(-K)  # 0 <= t - s < K
    far = causal(T).tril(-K)  # t - s >= K
    with torch.no_grad():
        pe.rel.add_(torch.randn_like(pe.rel))
        base = pe.scores(q, k, pos, pos)
        pe.rel[:K] += 0.5
        moved_near = pe.scores(q, k, pos, pos)
        pe.rel[K] += 0.5
        moved_far = pe.scores(q, k, pos, pos)
    # method 3 adds a_r - a_K to a_K near the query: equal to rounding, not bitwise
    same = dict(rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(moved_near[..., far], base[..., far], **same)
    assert ((moved_near - base)[..., near].abs() > 1e-6).all()
    torch.testing.assert_close(moved_far[..., near], moved_near[..., near], **same)
    assert ((moved_far - moved_near)[..., far].abs() > 1e-6).all()


def test_huang_method_3_paths_agree_with_gradients():
    """Integer positions take the banded path, float times the general one: on the same
    (integer-valued) times both give the same logits and the same gradients."""
    K, T = 5, 30
    pe = build_encoding(config("huang", method=3, max_relative_position=K)).double()
    with torch.no_grad():
        pe.rel.add_(torch.randn_like(pe.rel))
    q, k = (x.requires_grad_() for x in qkv(B=1, T=T, seed=4))
    pos = 100 + torch.cumsum(torch.randint(1, 3, (T,), generator=torch.Generator()), 0)
    grads, outs = [], []
    for p in (pos, pos.double()):
        s = pe.scores(q, k, p, p).masked_fill(~causal(T), 0)
        w = torch.randn(s.shape, generator=torch.Generator().manual_seed(5), dtype=s.dtype)
        (s * w).sum().backward()
        outs.append(s.detach())
        grads.append([x.grad.clone() for x in (q, k, pe.rel)])
        for x in (q, k, pe.rel):
            x.grad = None
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-12, atol=1e-12)
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("method", [1, 2, 3, 4])
def test_huang_tables_per_layer_init_and_gradients(method):
    """One table per layer, shared by the heads; methods 1-3 start at 1 (plain attention),
    method 4 at N(0, 0.02); not weight-decayed; a training step's loss reaches every row."""
    torch.manual_seed(0)
    m = GPT(config("huang", method=method))
    assert len(m.pe) == m.config.n_layer
    assert m.pe[0].rel is not m.pe[1].rel and m.pe[0].decayed_parameters == ()
    shape = (17,) if method in (1, 2) else (17, D)
    for pe in m.pe:
        assert pe.rel.shape == shape and pe.explicit == (method != 4)
        if method == 4:
            assert 0.01 < pe.rel.std() < 0.03
        else:
            assert torch.equal(pe.rel, torch.ones(shape))
    idx = torch.randint(0, 64, (2, 64), generator=torch.Generator().manual_seed(1))
    _, loss = m(idx, idx.roll(1, 1))
    loss.backward()
    for pe in m.pe:  # T = 64 > K = 16: every row is used
        rows = pe.rel.grad.reshape(17, -1).abs().amax(-1)
        assert torch.isfinite(rows).all() and (rows > 0).all()


HUANG_DA = [
    ("huang", {"method": 1}),
    ("huang", {"method": 2}),
    ("huang", {"method": 3, "max_relative_position": 5}),
    ("huang", {"method": 4, "max_relative_position": 5}),
    ("da", {}),
]


HUANG_DA_IDS = ["m1", "m2", "m3-K5", "m4-K5", "da"]


@pytest.mark.parametrize("pos", [torch.arange(40) + 1000, FLOAT_40], ids=POSITION_IDS)
@pytest.mark.parametrize("name, kwargs", HUANG_DA, ids=HUANG_DA_IDS)
def test_attention_in_query_blocks_equals_softmax_of_scores(name, kwargs, pos):
    """attention.causal_attention in blocks of 16 (explicit path for methods 1-3 and DA, the bias
    path for method 4) = softmax(scores() + causal mask) @ v over the whole sequence, at offset
    and float positions; and decoding with a KV cache = the full forward."""
    pe = build_encoding(config(name, **kwargs))
    with torch.no_grad():
        for p in pe.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(6)) * 0.3)
    T = len(pos)
    q, k, v = (2 * x for x in qkv(B=1, T=T, n=3, seed=7, dtype=torch.float32))
    with torch.no_grad():
        att = torch.softmax(pe.scores(q, k, pos, pos).masked_fill(~causal(T), -math.inf), -1)
        ref = att.double() @ v.double()
        for explicit in (False, True):
            out = attention.causal_attention(q, k, v, pos, pe, query_block=16, explicit=explicit)
            torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-5)
        kv = kv_cache.LayerKV()
        attention.causal_attention(q[:, :, :30], k[:, :, :30], v[:, :, :30], pos[:30], pe, kv=kv)
        for t in range(30, T):
            step = attention.causal_attention(q[:, :, t : t + 1], k[:, :, t : t + 1],
                                          v[:, :, t : t + 1], pos[: t + 1], pe, kv=kv)  # fmt: skip
            torch.testing.assert_close(step.double(), ref[:, :, t : t + 1], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name, kwargs", HUANG_DA[:3] + HUANG_DA[4:], ids=["m1", "m2", "m3", "da"])
def test_models_are_shift_invariant(name, kwargs):
    """The GPT's output under pos + c, integer and float (test_model.py checks the defaults)."""
    torch.manual_seed(0)
    m = GPT(config(name, **kwargs)).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.3)
        idx = torch.randint(0, 64, (2, 40), generator=torch.Generator().manual_seed(1))
        for pos in (torch.arange(40), FLOAT_40):
            base = m(idx, pos=pos)[0]
            for c in (1000, 0.25) if pos.is_floating_point() else (1000, 65_519):
                torch.testing.assert_close(m(idx, pos=pos + c)[0], base, rtol=2e-5, atol=2e-5)


def test_huang_method_3_never_builds_a_T_T_d_tensor():
    """Forward and backward of method 3's banded path, and attention through it: no tensor of
    more than B * H * Tq * Tk elements, and so none of (T, T, d) or a quarter of it."""
    T, d = 256, 32
    pe = build_encoding(config("huang", n_head=2, n_embd=64, method=3))
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, T, d, generator=g, requires_grad=True) for _ in range(3))
    pos = torch.arange(T)
    with MaxStorage() as rec:
        pe.scores(q, k, pos, pos).sum().backward()
    assert rec.largest <= 2 * T * T, f"{rec.op} made {rec.largest} elements"
    with torch.no_grad(), MaxStorage() as rec:
        attention.causal_attention(q, k, v, pos, pe, query_block=64)
    assert rec.largest <= 2 * 64 * T, f"{rec.op} made {rec.largest} elements"


def test_huang_options():
    for bad in (0, 5, "4", 4.0, True):
        with pytest.raises(ValueError, match="huang method must be one of 1, 2, 3, 4"):
            build_encoding(config("huang", method=bad))
    for bad in (0, -1, 2.5, None):
        with pytest.raises(ValueError, match="max_relative_position"):
            build_encoding(config("huang", max_relative_position=bad))
    with pytest.raises(ValueError, match="options: method, max_relative_position"):
        build_encoding(config("huang", k=4))


# -----------------------------------------------------------------------------
# DA-Transformer


def naive_da(q, k, pos, w, v):
    """ReLU(q_t . k_s / sqrt(d)) (1 + e^{v_h}) / (1 + e^{v_h - w_h |t - s|}) for t >= s, float64
    loops (0 above the diagonal)."""
    B, Hn, T, d = q.shape
    out = torch.zeros(B, Hn, T, T, dtype=torch.float64)
    for b in range(B):
        for h in range(Hn):
            for i in range(T):
                for j in range(i + 1):
                    dot = sum(float(q[b, h, i, c]) * float(k[b, h, j, c]) for c in range(d))
                    dist = abs(float(pos[i]) - float(pos[j]))
                    coef = (1 + math.exp(v[h])) / (1 + math.exp(v[h] - w[h] * dist))
                    out[b, h, i, j] = max(dot / math.sqrt(d), 0.0) * coef
    return out


@pytest.mark.parametrize("pos", POSITIONS, ids=POSITION_IDS)
def test_da_against_naive_formula(pos):
    pe = build_encoding(config("da")).double()
    w, v = [0.3, -0.2, 0.05, -1.0], [0.0, 1.5, -2.0, 0.7]  # long- and short-range heads
    with torch.no_grad():
        pe.w.copy_(torch.tensor(w, dtype=torch.float64))
        pe.v.copy_(torch.tensor(v, dtype=torch.float64))
    T = len(pos)
    q, k = qkv(T=T)
    expected = naive_da(q, k, pos, w, v)
    with torch.no_grad():
        got = pe.scores(q, k, pos, pos)
    mask = causal(T)
    torch.testing.assert_close(got[..., mask], expected[..., mask], rtol=1e-10, atol=1e-10)
    # float32 inputs: the same formula to float32 rounding
    with torch.no_grad():
        got32 = pe.float().scores(q.float(), k.float(), pos, pos)
    assert got32.dtype == torch.float32
    torch.testing.assert_close(got32.double()[..., mask], expected[..., mask], rtol=1e-5, atol=1e-5)


def test_da_parameters_coefficient_range_and_gradients():
    """w_h, v_h per head and per layer, w ~ N(0, 0.02), v = 0, not decayed; the coefficient is
    1 at t = s, tends to 1 + e^v (w > 0) or 0 (w < 0) far away, finite at any distance; the
    first training step's loss reaches w and v of every head."""
    torch.manual_seed(0)
    m = GPT(config("da", n_head=64, n_embd=512))
    assert len(m.pe) == m.config.n_layer and m.pe[0].w is not m.pe[1].w
    for pe in m.pe:
        assert sorted(n for n, _ in pe.named_parameters()) == ["v", "w"]
        assert pe.w.shape == pe.v.shape == (64,) and pe.decayed_parameters == ()
        assert torch.equal(pe.v, torch.zeros(64)) and 0.01 < pe.w.std() < 0.03
    pe = build_encoding(config("da"))
    with torch.no_grad():
        pe.w.copy_(torch.tensor([1.0, -1.0, 0.5, -0.5]))
        pe.v.copy_(torch.tensor([0.0, 1.0, 2.0, -1.0]))
    pos = torch.tensor([0.0, 1e6])
    c = pe.coefficients(pos, pos)  # (H, 2, 2): t = s on the diagonal, 1e6 off it
    torch.testing.assert_close(c[:, 0, 0], torch.ones(4))
    far = c[:, 1, 0]
    torch.testing.assert_close(far, torch.tensor([2.0, 0.0, 1 + math.exp(2.0), 0.0]))
    far.sum().backward()
    assert torch.isfinite(pe.w.grad).all() and torch.isfinite(pe.v.grad).all()
    m = GPT(config("da"))
    idx = torch.randint(0, 64, (2, 64), generator=torch.Generator().manual_seed(1))
    m(idx, idx.roll(1, 1))[1].backward()
    for pe in m.pe:
        assert (pe.w.grad.abs() > 0).all() and (pe.v.grad.abs() > 0).all()


def test_da_has_no_options():
    with pytest.raises(ValueError, match="has no option 'w'"):
        build_encoding(config("da", w=0.1))
