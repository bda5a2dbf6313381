"""RoPE context extension at evaluation time, against the published formulas written out here
per frequency in plain Python (position interpolation, dynamic NTK, YaRN, Llama 3)."""

import importlib
import math

import pytest
import torch

from encoding import build_encoding, encoding_class
from model import GPT, GPTConfig

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: faster, and deterministic

# the formulas live with the encoding that owns them (damped_rope imports them from there)
scaled_rope_frequencies = importlib.import_module(
    encoding_class("rope").__module__
).scaled_rope_frequencies

D, BASE, L0 = 64, 10000.0, 512


def theta(i, base=BASE, dim=D):
    return base ** (-2 * i / dim)


def yarn_reference(factor, beta_fast=32, beta_slow=1):
    # YaRN (Peng et al. 2023): the pair whose wavelength fits r times into L0 has index
    # dim * ln(L0 / (2 pi r)) / (2 ln base); between the beta_fast and beta_slow indices blend
    def index(r):
        return D * math.log(L0 / (2 * math.pi * r)) / (2 * math.log(BASE))

    low, high = max(math.floor(index(beta_fast)), 0), min(math.ceil(index(beta_slow)), D - 1)
    out = []
    for i in range(D // 2):
        ramp = min(max((i - low) / (high - low), 0.0), 1.0)  # 0: extrapolate, 1: interpolate
        out.append(theta(i) * (1 - ramp) + theta(i) / factor * ramp)
    return out, 0.1 * math.log(factor) + 1


def llama3_reference(factor, low_freq_factor=1.0, high_freq_factor=4.0):
    out = []
    for i in range(D // 2):
        wavelength = 2 * math.pi / theta(i)
        if wavelength < L0 / high_freq_factor:
            out.append(theta(i))
        elif wavelength > L0 / low_freq_factor:
            out.append(theta(i) / factor)
        else:
            smooth = (L0 / wavelength - low_freq_factor) / (high_freq_factor - low_freq_factor)
            out.append((1 - smooth) * theta(i) / factor + smooth * theta(i))
    return out


def freqs(scaling, factor, length=None):
    f, scale = scaled_rope_frequencies(D, BASE, scaling, factor, L0, length)
    return f.tolist(), scale


def test_linear_is_position_interpolation():
    f, scale = freqs("linear", 4.0)
    assert f == pytest.approx([theta(i) / 4 for i in range(D // 2)], rel=1e-12)
    assert scale == 1.0


def test_dynamic_ntk():
    assert freqs("dynamic", 4.0, length=L0)[0] == pytest.approx([theta(i) for i in range(D // 2)])
    L = 8 * L0
    new_base = BASE * (4.0 * L / L0 - 3.0) ** (D / (D - 2))
    f, scale = freqs("dynamic", 4.0, length=L)
    assert f == pytest.approx([theta(i, new_base) for i in range(D // 2)], rel=1e-12)
    assert scale == 1.0


@pytest.mark.parametrize("factor", [2.0, 8.0, 32.0])
def test_yarn(factor):
    expected, mscale = yarn_reference(factor)
    f, scale = freqs("yarn", factor)
    assert f == pytest.approx(expected, rel=1e-12)
    assert scale == pytest.approx(mscale)
    # the highest frequencies are kept, the lowest interpolated
    assert f[0] == pytest.approx(theta(0)) and f[-1] == pytest.approx(theta(D // 2 - 1) / factor)


def test_llama3():
    f, scale = freqs("llama3", 8.0)
    assert f == pytest.approx(llama3_reference(8.0), rel=1e-12)
    assert scale == 1.0


def test_factor_one_and_none_change_nothing():
    plain = [theta(i) for i in range(D // 2)]
    for scaling in (None, "linear", "yarn", "llama3", "dynamic"):
        assert freqs(scaling, 1.0, length=4 * L0)[0] == pytest.approx(plain, rel=1e-12)


def tiny(encoding, **kwargs):
    torch.manual_seed(0)
    cfg = GPTConfig(
        vocab_size=64,
        n_layer=2,
        n_head=2,
        n_embd=32,
        block_size=16,
        encoding=encoding,
        encoding_kwargs=kwargs,
        attn_block_size=16,
    )
    return GPT(cfg).double().eval()


def logits(model, pos=None, T=48):
    torch.manual_seed(1)
    return model(torch.randint(0, 64, (2, T)), pos=pos)[0]


def test_linear_scaling_equals_rope_at_scaled_positions():
    plain, scaled = tiny("rope"), tiny("rope", scaling="linear", factor=4.0)
    pos = torch.arange(48, dtype=torch.float64)
    torch.testing.assert_close(logits(scaled, pos), logits(plain, pos / 4), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("scaling", ["linear", "dynamic", "yarn", "llama3"])
def test_rope_scaling_in_scores_and_fast_path(scaling):
    model = tiny("rope", scaling=scaling, factor=4.0)
    fast = logits(model)
    model.attn_impl = "explicit"
    torch.testing.assert_close(fast, logits(model), rtol=1e-6, atol=1e-6)
    assert not torch.allclose(fast, logits(tiny("rope")))


def test_yarn_scales_the_logits():
    cfg = GPTConfig(n_head=2, n_embd=32, block_size=16, encoding="rope")
    plain = build_encoding(cfg)
    cfg.encoding_kwargs = dict(scaling="yarn", factor=8.0, original_length=10**9)  # no ramp
    yarn = build_encoding(cfg)
    q, k = torch.randn(1, 2, 5, 16), torch.randn(1, 2, 5, 16)
    pos = torch.arange(5)
    mscale = 0.1 * math.log(8.0) + 1
    # with L0 huge every pair extrapolates (frequencies unchanged): only the temperature remains
    torch.testing.assert_close(
        yarn.scores(q, k, pos, pos), plain.scores(q, k, pos, pos) * mscale**2
    )


@pytest.mark.parametrize("scaling", ["linear", "dynamic", "yarn", "llama3"])
def test_damped_rope_rotation_is_scaled_like_rope(scaling):
    # with every decay rate 1 (alpha = 0) damped RoPE is RoPE, with or without context extension
    ones = [1.0, 1.0]
    damped = tiny("damped_rope", gammas=ones, scaling=scaling, factor=4.0)
    rope = tiny("rope", scaling=scaling, factor=4.0)
    rope.load_state_dict(damped.state_dict())
    torch.testing.assert_close(logits(damped), logits(rope), rtol=1e-6, atol=1e-6)
    damped.attn_impl = "explicit"
    torch.testing.assert_close(logits(damped), logits(rope), rtol=1e-6, atol=1e-6)


def test_unknown_scaling_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown rope scaling 'ntk'"):
        tiny("rope", scaling="ntk")
