"""Clocks per sequence and per head: positions (B|1, H|1, T) (randomized training positions, a
learned clock) for every encoding that reads relative positions (takes_clock). The reference is
the 1-D path, which each encoding's own tests check against its paper: head h of sequence b on
clock c[b, h] must attend exactly as it does at the 1-D positions c[b, h] (a loop over b, h).

Clocks are dyadic (steps k / 64): sums and shifts are exact in float64, so the bucketed encodings
(T5 floors t - s, Shaw and Huang round it) see the same buckets on both sides of every check.
"""

import pytest
import torch
from helpers import ENCODING_CASES, ENCODING_IDS, MaxStorage

import clock
from attention import causal_attention
from encoding import build_encoding
from model import GPT, GPTConfig

pytestmark = pytest.mark.usefixtures("one_thread")

B, H, T, D = 2, 4, 12, 8
BLOCK = 5  # query block: T = 12 runs three blocks, the last one partial
BUCKETED = {"t5", "shaw", "huang"}  # piecewise constant in t - s: they refuse a learned clock


def config(name, kwargs, **overrides):
    args = dict(vocab_size=64, n_layer=2, n_head=H, n_embd=H * D, block_size=32, encoding=name,
                encoding_kwargs=dict(kwargs), attn_block_size=8)  # fmt: skip
    return GPTConfig(**{**args, **overrides})


def perturb(module, std=0.3, seed=1):
    """N(0, std) added to every parameter but decays and frequencies (physical scales), so that
    the position terms are O(1) (CoPE's table, xl's W_R start at 0 or 0.02)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "alpha" not in name and "omega" not in name and "clock" not in name:
                p.add_(torch.randn(p.shape, generator=g) * std)
    return module


CLOCK_CASES = [
    pytest.param(name, kwargs, id=cid)
    for (name, kwargs), cid in zip(ENCODING_CASES, ENCODING_IDS)
    if build_encoding(config(name, kwargs)).takes_clock
]


def encoding(name, kwargs):
    torch.manual_seed(0)
    return perturb(build_encoding(config(name, kwargs))).double().eval()


def qkv(seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, H, T, D, generator=g, dtype=torch.float64) for _ in range(3)]


def dyadic_clock(shape, seed=0):
    """Non-decreasing float64 times: steps in [0.3125, 2] (multiples of 1/64) after a random
    offset in [0, 40), per leading index. Every value is exact in float64."""
    g = torch.Generator().manual_seed(seed)
    steps = torch.randint(20, 129, shape, generator=g).double() / 64
    offset = torch.randint(0, 40 * 64, shape[:-1] + (1,), generator=g).double() / 64
    return offset + steps.cumsum(-1) - steps[..., :1]


def attend(q, k, v, pos, pe, explicit):
    return causal_attention(q, k, v, pos, pe, query_block=BLOCK, explicit=explicit)


def test_which_encodings_take_a_clock():
    """Every encoding that reads relative positions takes a clock; absolute ones, NoPE (no hooks)
    and CoPE (counts with its gates, never reads pos) do not."""
    for name, kwargs in ENCODING_CASES:
        pe = build_encoding(config(name, kwargs))
        assert pe.takes_clock == (not pe.has_embed and name not in ("nope", "cope")), name
    assert len(CLOCK_CASES) >= 15


@pytest.mark.parametrize(("name", "kwargs"), CLOCK_CASES)
@pytest.mark.parametrize("explicit", [False, True])
def test_broadcast_positions_equal_1d(name, kwargs, explicit):
    """The same positions as (T,), expanded to (B, H, T), and as a materialised (B, 1, T)."""
    pe = encoding(name, kwargs)
    q, k, v = qkv()
    ints = 3 + torch.randint(1, 4, (T,), generator=torch.Generator().manual_seed(5)).cumsum(0)
    for pos in (ints, dyadic_clock((T,), seed=6)):
        ref = attend(q, k, v, pos, pe, explicit)
        for wide in (pos.expand(B, H, T), pos.expand(B, 1, T).clone()):
            got = attend(q, k, v, wide, pe, explicit)
            assert got.shape == ref.shape == (B, H, T, D)
            torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("name", "kwargs"), CLOCK_CASES)
@pytest.mark.parametrize("explicit", [False, True])
@pytest.mark.parametrize("shape", [(B, H, T), (B, 1, T), (1, H, T)], ids=["BHT", "B1T", "1HT"])
def test_clock_per_head_equals_1d_per_head(name, kwargs, explicit, shape):
    """Head h of sequence b on its own clock attends as at the 1-D positions clock[b, h]."""
    pe = encoding(name, kwargs)
    q, k, v = qkv()
    clock = dyadic_clock(shape, seed=1)
    got = attend(q, k, v, clock, pe, explicit)
    full = clock.expand(B, H, T)
    for b in range(B):
        for h in range(H):
            ref = attend(q[b : b + 1], k[b : b + 1], v[b : b + 1], full[b, h], pe, explicit)
            torch.testing.assert_close(got[b, h], ref[0, h], rtol=1e-12, atol=1e-12)
    if shape == (B, H, T):  # not vacuous: the heads' clocks matter
        swapped = attend(q, k, v, clock.roll(1, dims=1), pe, explicit)
        assert (swapped - got).abs().max() > 1e-3


@pytest.mark.parametrize(("name", "kwargs"), CLOCK_CASES)
@pytest.mark.parametrize("explicit", [False, True])
def test_shift_of_each_heads_clock(name, kwargs, explicit):
    """A different constant added to each head's clock changes nothing (relative encodings)."""
    pe = encoding(name, kwargs)
    if not pe.shift_invariant:
        pytest.skip("not shift invariant by design (FIRE normalises by the query's position)")
    q, k, v = qkv()
    clock = dyadic_clock((B, H, T), seed=2)
    base = attend(q, k, v, clock, pe, explicit)
    g = torch.Generator().manual_seed(3)
    shift = torch.randint(-64 * 50, 64 * 500, (B, H, 1), generator=g).double() / 64
    # RoPE and the generator's rotations turn q and k by absolute angles (float32 cos/sin in
    # RoPE's fast path): relative to 1e-7 at times near 500, not to float64's 1e-16
    got = attend(q, k, v, clock + shift, pe, explicit)
    torch.testing.assert_close(got, base, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(("name", "kwargs"), CLOCK_CASES)
@pytest.mark.parametrize("explicit", [False, True])
def test_causal_on_a_clock_per_head(name, kwargs, explicit):
    """Keys and values from j on do not reach the outputs before j."""
    pe = encoding(name, kwargs)
    q, k, v = qkv()
    clock = dyadic_clock((B, H, T), seed=4)
    base = attend(q, k, v, clock, pe, explicit)
    g = torch.Generator().manual_seed(7)
    seen = []
    for j in (3, 6, 11):
        k2, v2 = k.clone(), v.clone()
        k2[:, :, j:] = torch.randn(B, H, T - j, D, generator=g, dtype=torch.float64)
        v2[:, :, j:] = torch.randn(B, H, T - j, D, generator=g, dtype=torch.float64)
        out = attend(q, k2, v2, clock, pe, explicit)
        torch.testing.assert_close(out[:, :, :j], base[:, :, :j], rtol=0, atol=1e-12)
        seen.append((out[:, :, j:] - base[:, :, j:]).abs().max())
    # not vacuous: the changes reach the later outputs (of some j: size-4 Jordan blocks, logits
    # ~ (t - s)^3, saturate the softmax at the last query, which then ignores its own key)
    assert max(seen) > 1e-3


@pytest.mark.parametrize(("name", "kwargs"), CLOCK_CASES)
def test_learned_time_starts_as_the_index(name, kwargs):
    """GPTConfig(time="learned") at init (delta = 1 exactly) gives the index model's logits bit for
    bit, and trains: forward, backward, finite gradients that reach the clock. Bucketed distances
    are piecewise constant, would pass the clock no gradient, and refuse it in one line."""
    if build_encoding(config(name, kwargs)).time == "learned":
        pytest.skip("always on a learned clock (FoX): test_time.py checks it")
    if name in BUCKETED:
        with pytest.raises(ValueError, match="rounds t - s to integer buckets"):
            GPT(config(name, kwargs, time="learned"))
        return
    torch.manual_seed(0)
    index = perturb(GPT(config(name, kwargs)))
    learned = GPT(config(name, kwargs, time="learned"))
    missing, unexpected = learned.load_state_dict(index.state_dict(), strict=False)
    assert missing and all(".clock." in key for key in missing) and not unexpected
    idx = torch.randint(0, 64, (2, 20), generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        expected, got = index(idx)[0], learned(idx)[0]
    if (name, kwargs) == ("huang", {"method": 3}):
        # a clock per head takes the general path, consecutive positions the banded sum (keys
        # may lie closer than 1 apart on a clock): the same sums, added in another order
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    else:
        assert torch.equal(got, expected)
    _, loss = learned(idx, idx)
    loss.backward()
    clocks = [block.attn.clock for block in learned.transformer.h]
    assert all(isinstance(c, clock.LearnedClock) for c in clocks)
    for c in clocks:
        for p in (c.weight, c.bias):
            assert torch.isfinite(p.grad).all() and (p.grad != 0).any()


@pytest.mark.parametrize(("name", "kwargs"), CLOCK_CASES)
def test_no_tensor_larger_than_a_query_block_on_a_clock(name, kwargs):
    """As test_model's check, on a learned clock per head and sequence (B = 2; the bucketed
    encodings, which refuse one, on positions per sequence): no intermediate of the forward pass
    holds more than B * H * block * T elements."""
    T, block, batch = 512, 32, 2
    torch.manual_seed(0)
    time = "index" if name in BUCKETED else "learned"
    m = GPT(config(name, kwargs, n_layer=1, attn_block_size=block, time=time)).eval()
    pos = torch.arange(batch * T).view(T, batch).T  # (B, T): every sequence its own positions
    with torch.no_grad(), MaxStorage() as rec:
        m(torch.randint(0, 64, (batch, T), generator=torch.Generator().manual_seed(9)), pos=pos)
    assert rec.largest <= batch * H * block * T, f"{rec.op} made {rec.largest} elements"
