"""xPos and p-RoPE against formulas written out here from the papers, in float64 with explicit 2x2
rotation matrices and loops, independent of the modules: xPos (Sun et al. 2022) at offset, far
(60,000) and float positions, its generator form (configs/generator_xpos.py), and p-RoPE (Barbero
et al. 2024, the rope option p): which channels rotate at which frequency, p = 1 is RoPE, bad p.
"""

import math
from pathlib import Path

import pytest
import torch

import attention
from configurator import exec_config_file, load_base
from encoding import Encoding, build_encoding
from model import GPT, GPTConfig

pytestmark = pytest.mark.usefixtures("one_thread")
F64 = torch.float64
CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def config(encoding, n_head=2, n_embd=16, **kwargs):
    return GPTConfig(vocab_size=64, n_layer=2, n_head=n_head, n_embd=n_embd, block_size=16,
                     encoding=encoding, encoding_kwargs=kwargs, attn_block_size=8)  # fmt: skip


def qkv(B=1, H=2, T=7, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, H, T, d, generator=g, dtype=F64) for _ in range(3)]


def rotation(phi):
    c, s = math.cos(phi), math.sin(phi)
    return torch.tensor([[c, -s], [s, c]], dtype=F64)


def causal(T):
    return torch.ones(T, T, dtype=torch.bool).tril()


POSITIONS = {
    "offset": torch.tensor([100, 101, 103, 104, 108, 109, 115], dtype=F64),
    "far": 60_000 + torch.tensor([0, 1, 2, 5, 6, 9, 10], dtype=F64),
    "float": torch.tensor([0.0, 0.37, 1.5, 2.25, 7.1, 7.9, 12.6], dtype=F64) + 3.3,
}

# -----------------------------------------------------------------------------
# xPos


def naive_xpos(q, k, pos, scale_base=512.0, gamma=0.4, base=10000.0):
    """The paper's form with absolute positions: pair i of the query at n becomes
    zeta_i^(n/B) R(theta_i n) q_i, of the key at m zeta_i^(-m/B) R(theta_i m) k_i; the logit is
    their dot product / sqrt(d). zeta_i = (2i/d + gamma) / (1 + gamma), theta_i = base^(-2i/d).
    float64 holds zeta^(+-60000/512) (1e-64 and 1e64): no block-relative times needed here."""
    B, H, T, d = q.shape
    out = torch.zeros(B, H, T, T, dtype=F64)
    for i in range(d // 2):
        zeta = (2 * i / d + gamma) / (1 + gamma)
        theta = base ** (-2 * i / d)
        for t in range(T):
            n = float(pos[t])
            q_pair = q[..., t, 2 * i : 2 * i + 2, None]  # (B, H, 2, 1)
            q_rot = zeta ** (n / scale_base) * rotation(theta * n) @ q_pair
            for s in range(T):
                m = float(pos[s])
                k_pair = k[..., s, 2 * i : 2 * i + 2, None]
                k_rot = zeta ** (-m / scale_base) * rotation(theta * m) @ k_pair
                out[:, :, t, s] += (q_rot * k_rot).sum((-2, -1))
    return out / math.sqrt(d)


@pytest.mark.parametrize("where", list(POSITIONS))
def test_xpos_against_naive_formula(where):
    pos = POSITIONS[where]
    pe = build_encoding(config("xpos"))
    q, k, v = qkv()
    ref = naive_xpos(q, k, pos)
    lower = causal(len(pos))
    # explicit scores (computed in t - s) equal the formula in float64
    torch.testing.assert_close(pe.scores(q, k, pos, pos), ref, rtol=1e-10, atol=1e-10)
    # the fast path's rotate() at block-relative times, as attention calls it (Encoding.scores
    # subtracts the first query's time), float64 and float32
    fast = Encoding.scores(pe, q, k, pos, pos)
    torch.testing.assert_close(fast[..., lower], ref[..., lower], rtol=1e-10, atol=1e-10)
    fast32 = Encoding.scores(pe, q.float(), k.float(), pos.float(), pos.float()).double()
    torch.testing.assert_close(fast32[..., lower], ref[..., lower], rtol=1e-5, atol=1e-5)
    # attention in float32 with query blocks of 3 (two block boundaries) against the formula
    att = torch.softmax(ref.masked_fill(~lower, float("-inf")), -1) @ v
    out = attention.causal_attention(
        q.float(), k.float(), v.float(), pos.float(), pe, query_block=3
    )
    assert out.isfinite().all()
    torch.testing.assert_close(out.double(), att, rtol=1e-5, atol=1e-5)


def test_xpos_far_out_stays_finite_and_exact():
    """Queries and keys near 60,000 over 300 tokens: zeta_0^(60000/512) = 1.7e-64 underflows float32
    (its inverse, the key's scale, overflows), so only block-relative times give finite numbers.
    The model's attention must equal attention at positions 0 .. 299 (shift invariance, exact)."""
    pe = build_encoding(config("xpos"))
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(1, 2, 300, 8, generator=g) for _ in range(3))
    near = attention.causal_attention(q, k, v, torch.arange(300), pe, query_block=64)
    far = attention.causal_attention(q, k, v, torch.arange(300) + 60_000, pe, query_block=64)
    assert far.isfinite().all()
    torch.testing.assert_close(far, near, rtol=1e-5, atol=1e-5)


def test_xpos_constants_as_torchscale():
    """zeta_i = (2i + 0.4 d) / (1.4 d) (torchscale's XPOS.scale), B = 512, and the decay per pair:
    the highest frequency decays fastest, the lowest nearly not at all."""
    pe = build_encoding(config("xpos", n_head=1, n_embd=64))
    theta, rate = pe.rates("cpu")
    d = 64
    zeta = torch.tensor([(2 * i + 0.4 * d) / (1.4 * d) for i in range(d // 2)], dtype=F64)
    torch.testing.assert_close(rate, torch.log(zeta) / 512, rtol=1e-14, atol=0)
    torch.testing.assert_close(theta, 10000.0 ** (-torch.arange(0, d, 2, dtype=F64) / d))
    assert (rate < 0).all() and (rate.diff() > 0).all()
    assert not pe.orthogonal and pe.max_query_block == int(60 * 512 / -math.log(0.4 / 1.4))


def test_xpos_options():
    pe = build_encoding(config("xpos", scale_base=64, gamma=1.0, base=100.0))
    q, k, _ = qkv()
    pos = POSITIONS["offset"]
    ref = naive_xpos(q, k, pos, scale_base=64, gamma=1.0, base=100.0)
    torch.testing.assert_close(pe.scores(q, k, pos, pos), ref, rtol=1e-10, atol=1e-10)
    # an infinitely slow decay is RoPE
    slow = build_encoding(config("xpos", scale_base=1e300))
    rope = build_encoding(config("rope"))
    torch.testing.assert_close(slow.scores(q, k, pos, pos), rope.scores(q, k, pos, pos))
    for bad in (dict(scale_base=0), dict(gamma=0.0), dict(gamma=-0.4), dict(base=-1.0)):
        with pytest.raises(ValueError, match="xpos"):
            build_encoding(config("xpos", **bad))


# -----------------------------------------------------------------------------
# xPos as a generator (configs/generator_xpos.py)


def generator_xpos_kwargs(n_embd, n_head):
    """encoding_kwargs of configs/generator_xpos.py, loaded with these model settings."""
    namespace = dict(load_base(), n_embd=n_embd, n_head=n_head)
    exec_config_file(str(CONFIGS / "generator_xpos.py"), namespace, load_base())
    assert namespace["encoding"] == "generator"
    return namespace["encoding_kwargs"]


@pytest.mark.parametrize("n_embd, n_head", [(16, 2), (768, 12)], ids=["d8", "gpt2-d64"])
def test_generator_xpos_equals_xpos(n_embd, n_head):
    kwargs = generator_xpos_kwargs(n_embd, n_head)
    gen = build_encoding(config("generator", n_head, n_embd, **kwargs))
    xpos = build_encoding(config("xpos", n_head, n_embd))
    d = n_embd // n_head
    q, k, _ = qkv(H=n_head, d=d)
    lower = causal(7)
    for pos in POSITIONS.values():
        ref = xpos.scores(q, k, pos, pos)
        torch.testing.assert_close(gen.scores(q, k, pos, pos), ref, rtol=1e-10, atol=1e-10)
        fast = Encoding.scores(gen, q, k, pos, pos)
        torch.testing.assert_close(fast[..., lower], ref[..., lower], rtol=1e-10, atol=1e-10)


def test_generator_xpos_model_equals_xpos_model():
    torch.manual_seed(0)
    ref = GPT(config("xpos")).eval()
    gen = GPT(config("generator", **generator_xpos_kwargs(16, 2))).eval()
    gen.load_state_dict(ref.state_dict())  # neither encoding has parameters
    idx = torch.randint(0, 64, (2, 20))
    pos = torch.arange(20) + 60_000
    torch.testing.assert_close(gen(idx, pos=pos)[0], ref(idx, pos=pos)[0], rtol=1e-5, atol=1e-5)


# -----------------------------------------------------------------------------
# p-RoPE (rope's option p)


def naive_prope(q, k, pos, p, base=10000.0):
    """Pairs i < floor(p d / 2) rotate by theta_i = base^(-2i/d) (RoPE's own frequencies, the
    highest ones); the other channels are not rotated. Absolute rotations, float64."""
    B, H, T, d = q.shape
    m = math.floor(p * d / 2)
    out = torch.zeros(B, H, T, T, dtype=F64)
    for t in range(T):
        for s in range(T):
            for i in range(d // 2):
                qi, ki = q[..., t, 2 * i : 2 * i + 2, None], k[..., s, 2 * i : 2 * i + 2, None]
                if i < m:
                    theta = base ** (-2 * i / d)
                    qi = rotation(theta * float(pos[t])) @ qi
                    ki = rotation(theta * float(pos[s])) @ ki
                out[:, :, t, s] += (qi * ki).sum((-2, -1))
    return out / math.sqrt(d)


@pytest.mark.parametrize("p", [0.25, 0.5, 0.75])
@pytest.mark.parametrize("where", ["offset", "float"])
def test_prope_against_naive_formula(p, where):
    pos = POSITIONS[where]
    pe = build_encoding(config("rope", n_head=2, n_embd=32, p=p))  # d = 16: 2, 4, 6 pairs rotate
    q, k, v = qkv(d=16)
    ref = naive_prope(q, k, pos, p)
    torch.testing.assert_close(pe.scores(q, k, pos, pos), ref, rtol=1e-10, atol=1e-10)
    q_r, k_r = pe.rotate(q, k, pos, pos)
    m = int(p * 8)
    # the NoPE channels leave rotate() untouched; the rotated ones give the formula's logits (rope
    # stores cos/sin in float32: 1e-6)
    assert torch.equal(q_r[..., 2 * m :], q[..., 2 * m :])
    torch.testing.assert_close(q_r @ k_r.mT / 4, ref, rtol=1e-6, atol=1e-6)
    out = attention.causal_attention(q.float(), k.float(), v.float(), pos.float(), pe)
    att = torch.softmax(ref.masked_fill(~causal(7), float("-inf")), -1) @ v
    torch.testing.assert_close(out.double(), att, rtol=1e-5, atol=1e-5)


def test_prope_p1_is_rope():
    rope, p1 = build_encoding(config("rope")), build_encoding(config("rope", p=1.0))
    q, k, _ = qkv()
    q, k = q.float(), k.float()
    pos = torch.arange(7) + 500
    for a, b in zip(rope.rotate(q, k, pos, pos), p1.rotate(q, k, pos, pos)):
        assert torch.equal(a, b)
    assert torch.equal(rope.scores(q, k, pos, pos), p1.scores(q, k, pos, pos))


@pytest.mark.parametrize("scaling", ["linear", "dynamic", "yarn", "llama3"])
def test_prope_with_context_extension(scaling):
    """The kept pairs rotate as full RoPE's do under the same method; the NoPE channels are a plain
    dot product, times YaRN's temperature squared (it scales the whole logit)."""
    kw = dict(scaling=scaling, factor=4.0, original_length=8)
    pe = build_encoding(config("rope", n_head=2, n_embd=32, p=0.5, **kw))
    full = build_encoding(config("rope", n_head=2, n_embd=32, **kw))
    pe.context_len = full.context_len = 40  # past original_length: dynamic NTK changes its base
    q, k, _ = qkv(d=16)
    pos = POSITIONS["offset"]
    rotated, plain = q.clone(), q.clone()
    rotated[..., 8:] = 0  # only the kept pairs' channels (pairs 0-3 of 8)
    plain[..., :8] = 0  # only the NoPE channels
    ref = full.scores(rotated, k, pos, pos)
    torch.testing.assert_close(pe.scores(rotated, k, pos, pos), ref, rtol=1e-10, atol=1e-10)
    temperature = 0.1 * math.log(4.0) + 1 if scaling == "yarn" else 1.0
    ref = temperature**2 * plain @ k.mT / 4
    torch.testing.assert_close(pe.scores(plain, k, pos, pos), ref, rtol=1e-10, atol=1e-10)
    q_r, k_r = pe.rotate(q, k, pos, pos)  # the fast path agrees with scores()
    torch.testing.assert_close(q_r @ k_r.mT / 4, pe.scores(q, k, pos, pos), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("p", [0.0, -0.5, 1.5, float("nan"), "0.5", True, 0.05])
def test_prope_bad_p(p):
    with pytest.raises(ValueError, match="rope p"):
        build_encoding(config("rope", n_head=2, n_embd=32, p=p))  # d = 16: p = 0.05 keeps none
