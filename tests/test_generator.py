"""The generator family A(t) = exp(tL): reductions to the named encodings, the group law, exactness
against a matrix exponential, continuous time, and Jordan blocks far past the training length."""

import math

import pytest
import torch

from encoding import Encoding, build_encoding
from model import GPT, GPTConfig

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: faster, and deterministic

H, D = 2, 8  # heads, head dim of the unit tests
F64 = torch.float64
MIXED = [
    dict(type="zero", count=1),
    dict(type="decay", count=1, alpha=[-0.05, -0.2]),
    dict(type="rotation", count=1, omega=0.7),
    dict(type="damped", count=1, alpha=-0.1, omega=0.3),
    dict(type="jordan", count=1, size=2, lam=-0.02),
    dict(type="nilpotent"),  # a bias on two virtual coordinates; uses none of the channels
]
# one spec per block type, each filling D = 8 channels
SPECS = {
    "zero": [dict(type="zero", count=8)],
    "decay": [dict(type="decay", count=8, alpha=[-0.03, -0.3])],
    "rotation": [dict(type="rotation", count=4)],
    "damped": [dict(type="damped", count=4, alpha=[-0.05, -0.01])],
    "jordan": [dict(type="jordan", count=2, size=4, lam=-0.1)],
    "jordan_polynomial": [dict(type="jordan", count=1, size=8)],
    "damped_jordan": [dict(type="damped_jordan", count=2, size=2, alpha=-0.05, omega=[0.4, 1.3])],
    "mixed": MIXED,
}


def encoding(blocks, n_head=H, head_dim=D, **kw):
    cfg = GPTConfig(
        n_head=n_head,
        n_embd=n_head * head_dim,
        encoding="generator",
        encoding_kwargs=dict(blocks=blocks, **kw),
    )
    return build_encoding(cfg).double()


def generator_matrix(blocks, head):
    """The generator L of one head, written out block by block (independent of the module)."""
    parts = []
    for b in blocks:
        kind, count = b["type"], b.get("count", 1)

        def per_head(name, default, b=b):
            v = b.get(name, default)
            return v[head] if isinstance(v, list) else v

        for c in range(count):
            if kind == "zero":
                parts.append(torch.zeros(1, 1, dtype=F64))
            elif kind == "decay":
                parts.append(torch.full((1, 1), per_head("alpha", None), dtype=F64))
            elif kind in ("rotation", "damped"):
                omega = b["omega"][c] if isinstance(b.get("omega"), list) else b.get("omega")
                if omega is None:  # RoPE's schedule over the group's pairs
                    omega = 10000.0 ** (-2 * c / (2 * count))
                alpha = per_head("alpha", 0.0) if kind == "damped" else 0.0
                # A(t) = e^{alpha t} R(-omega t): L = [[alpha, omega], [-omega, alpha]]
                parts.append(torch.tensor([[alpha, omega], [-omega, alpha]], dtype=F64))
            elif kind == "jordan":
                m = b.get("size", 2)
                parts.append(
                    per_head("lam", 0.0) * torch.eye(m, dtype=F64)
                    + torch.diag(torch.ones(m - 1, dtype=F64), 1)
                )
            elif kind == "damped_jordan":
                m = b.get("size", 2)
                omega = b["omega"][c] if isinstance(b.get("omega"), list) else b["omega"]
                alpha = per_head("alpha", 0.0)
                rot = torch.tensor([[alpha, omega], [-omega, alpha]], dtype=F64)
                parts.append(
                    torch.kron(torch.eye(m, dtype=F64), rot)
                    + torch.kron(
                        torch.diag(torch.ones(m - 1, dtype=F64), 1), torch.eye(2, dtype=F64)
                    )
                )
    return torch.block_diag(*parts)


def A_from_scores(pe, t):
    """A(t) read off the encoding's explicit scores: scores(e_i, e_j, t, 0) * sqrt(d) = A[i, j]."""
    eye = torch.eye(D, dtype=torch.float64)[None, None].expand(1, H, D, D)
    pos_q = torch.full((D,), float(t), dtype=torch.float64)
    pos_k = torch.zeros(D, dtype=torch.float64)
    return pe.scores(eye, eye, pos_q, pos_k)[0] * math.sqrt(D)  # (H, D, D)


def A_from_fast_path(pe, t, s=0.0):
    """A(t - s) from the fast path's hooks, q = e_i at time t, k = e_j at time s: rotate()'s
    q'_i . k'_j plus bias(), composed as attention composes them (Encoding.scores)."""
    eye = torch.eye(D, dtype=torch.float64)[None, None].expand(1, H, D, D)
    pos_q = torch.full((D,), float(t), dtype=torch.float64)
    pos_k = torch.full((D,), float(s), dtype=torch.float64)
    return Encoding.scores(pe, eye, eye, pos_q, pos_k)[0] * math.sqrt(D)


@pytest.mark.parametrize("name", [n for n in SPECS if n != "mixed"])
def test_blocks_match_matrix_exponential(name):
    blocks = SPECS[name]
    pe = encoding(blocks)
    for t in (0.0, 0.5, 3.0, 17.25):
        for h in range(H):
            expected = torch.linalg.matrix_exp(t * generator_matrix(blocks, h))
            torch.testing.assert_close(A_from_scores(pe, t)[h], expected, rtol=1e-10, atol=1e-12)
            # fast path: A(t)^T q . A(-s) k for decays and rotations, the polynomial blocks as a
            # bias in t - s: the same A(t - s)
            torch.testing.assert_close(
                A_from_fast_path(pe, t + 2.0, 2.0)[h], expected, rtol=1e-9, atol=1e-9
            )


@pytest.mark.parametrize("name", list(SPECS))
def test_group_law(name):
    # the nilpotent block acts on two virtual coordinates, not on q and k: A(t) = [[1, t], [0, 1]]
    # shows up as the additive -m (t - s), tested against ALiBi below
    pe = encoding([b for b in SPECS[name] if b["type"] != "nilpotent"])
    for t1, t2 in [(1.0, 2.0), (0.3, 5.7), (-2.0, 7.5)]:
        lhs = A_from_scores(pe, t1) @ A_from_scores(pe, t2)
        torch.testing.assert_close(lhs, A_from_scores(pe, t1 + t2), rtol=1e-10, atol=1e-10)


def tiny(encoding_name, kwargs=None, **cfg):
    torch.manual_seed(0)
    config = GPTConfig(
        vocab_size=64,
        n_layer=2,
        n_head=H,
        n_embd=32,  # head dim 16: twice the unit-test specs
        block_size=16,
        encoding=encoding_name,
        encoding_kwargs=kwargs or {},
        **{"attn_block_size": 16, **cfg},
    )
    return GPT(config).double().eval()


def double(block):
    """The same block spec with twice the count: fills the tiny models' head dim of 16."""
    omega = block.get("omega")
    extra = {"omega": omega * 2} if isinstance(omega, list) else {}
    return dict(block, count=block.get("count", 1) * 2, **extra)


def same_weights(a, b):
    b.load_state_dict(a.state_dict(), strict=False)
    return b


def outputs(model, T=40, pos=None):
    torch.manual_seed(1)
    idx = torch.randint(0, 64, (2, T))
    return model(idx, pos=pos)[0]


def test_all_rotation_equals_rope():
    rope = tiny("rope")
    gen = same_weights(rope, tiny("generator", dict(blocks=[dict(type="rotation", count=8)])))
    # rope stores cos/sin in float32, hence 1e-6 rather than float64 precision
    torch.testing.assert_close(outputs(gen), outputs(rope), rtol=1e-6, atol=1e-6)
    default = same_weights(rope, tiny("generator"))  # no blocks given: RoPE
    torch.testing.assert_close(outputs(default), outputs(rope), rtol=1e-6, atol=1e-6)


def test_damped_blocks_equal_damped_rope():
    ref = tiny("damped_rope")
    gen = same_weights(ref, tiny("generator", dict(blocks=[dict(type="damped", count=8)])))
    torch.testing.assert_close(outputs(gen), outputs(ref), rtol=1e-9, atol=1e-9)


def test_all_zero_equals_nope():
    ref = tiny("nope")
    gen = same_weights(ref, tiny("generator", dict(blocks=[dict(type="zero", count=16)])))
    torch.testing.assert_close(outputs(gen), outputs(ref), rtol=1e-10, atol=1e-10)


def test_nilpotent_block_equals_alibi():
    blocks = [dict(type="zero", count=16), dict(type="nilpotent")]
    alibi = build_encoding(GPTConfig(n_head=4, n_embd=64, encoding="alibi")).double()
    gen = build_encoding(
        GPTConfig(n_head=4, n_embd=64, encoding="generator", encoding_kwargs=dict(blocks=blocks))
    ).double()
    torch.manual_seed(0)
    q, k = (
        torch.randn(2, 4, 12, 16, dtype=torch.float64),
        torch.randn(2, 4, 12, 16, dtype=torch.float64),
    )
    for offset in (0, 60_000):
        pos = torch.arange(12, dtype=torch.float64) + offset
        ref = alibi.scores(q, k, pos, pos)
        # explicit scores, and the fast path's hooks (the nilpotent block as a bias in t - s)
        torch.testing.assert_close(gen.scores(q, k, pos, pos), ref, rtol=1e-6, atol=1e-6)
        fast = Encoding.scores(gen, q, k, pos, pos)
        causal = pos[:, None] >= pos[None, :]
        torch.testing.assert_close(fast[..., causal], ref[..., causal], rtol=1e-6, atol=1e-6)
    # and whole models with the same weights agree
    ref_model = tiny("alibi")
    gen_model = same_weights(ref_model, tiny("generator", dict(blocks=blocks)))
    torch.testing.assert_close(outputs(gen_model), outputs(ref_model), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", list(SPECS))
def test_fast_path_equals_explicit_and_is_causal(name):
    blocks = [double(b) for b in SPECS[name]]  # head dim 16
    model = tiny("generator", dict(blocks=blocks), attn_block_size=8)
    fast = outputs(model)
    model.attn_impl = "explicit"
    torch.testing.assert_close(fast, outputs(model), rtol=1e-8, atol=1e-8)
    model.attn_impl = "fast"
    torch.manual_seed(1)
    idx = torch.randint(0, 64, (2, 40))
    changed = idx.clone()
    changed[:, 25] = (changed[:, 25] + 1) % 64
    a, b = model(idx)[0], model(changed)[0]
    assert torch.equal(a[:, :25], b[:, :25])
    assert not torch.allclose(a[:, 25:], b[:, 25:])


def test_continuous_time_shift_invariance_and_elapsed_time():
    model = tiny("generator", dict(blocks=[double(b) for b in MIXED]))
    g = torch.Generator().manual_seed(3)
    times = torch.cumsum(torch.rand(40, generator=g, dtype=torch.float64) * 3, 0)  # irregular
    base = outputs(model, pos=times)
    torch.testing.assert_close(outputs(model, pos=times + 12345.678), base, rtol=1e-8, atol=1e-8)
    # irregular times are not the token index: the output depends on them
    assert not torch.allclose(outputs(model, pos=torch.arange(40, dtype=torch.float64)), base)


def test_decay_follows_elapsed_time():
    alpha = -0.2
    pe = encoding([dict(type="decay", count=8, alpha=alpha)])
    q = torch.ones(1, H, 3, D, dtype=torch.float64)
    times = torch.tensor([0.0, 1.0, 10.0], dtype=torch.float64)  # a long gap before the last token
    s = pe.scores(q, q, times, times) * math.sqrt(D) / D  # q . k = D
    for i in range(3):
        for j in range(i + 1):
            assert s[0, 0, i, j].item() == pytest.approx(math.exp(alpha * (times[i] - times[j])))


@pytest.mark.parametrize("lam", [0.0, -0.01])
def test_jordan_blocks_finite_and_exact_at_32x(lam):
    blocks = [dict(type="jordan", count=4, size=3, lam=lam), dict(type="rotation", count=2)]
    model = tiny("generator", dict(blocks=blocks), attn_block_size=128)
    T = 32 * model.config.block_size
    fast = outputs(model, T=T)
    assert torch.isfinite(fast).all()
    model.attn_impl = "explicit"
    torch.testing.assert_close(fast, outputs(model, T=T), rtol=1e-7, atol=1e-7)
    # float32, the dtype of training and evaluation, stays finite too
    model.float().attn_impl = "fast"
    assert torch.isfinite(outputs(model, T=T)).all()


def test_learnable_blocks_get_gradients():
    blocks = [
        dict(type="damped", count=2, learnable=True),
        dict(type="decay", count=2, learnable=True),
        dict(type="jordan", count=1, size=4, lam=-0.01, learnable=True),
        dict(type="damped_jordan", count=1, size=2, omega=0.5, learnable=True),
        dict(type="nilpotent", learnable=True),
        dict(type="zero", count=2),
    ]
    model = tiny("generator", dict(blocks=blocks)).train()
    idx = torch.randint(0, 64, (2, 20))
    model(idx, idx)[1].backward()
    learned = [n for n, p in model.pe.named_parameters()]
    assert len(learned) == 7  # omega+decay, decay, lam, omega+decay, slope
    for n, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, n


def test_count_rest_fills_the_head():
    pe = encoding([dict(type="jordan", count=1, size=4), dict(type="rotation", count="rest")])
    assert [g[0] for g in pe.groups] == ["jordan", "rotation"]
    assert pe.groups[1][3] == 2 and pe.groups[1][2] == D  # 4 + 2 * 2 channels
    # 3 + 2 * 2 = 7: a channel is left over, and the error says how to fill it
    with pytest.raises(ValueError, match=r"add dict\(type='zero', count=1\)"):
        encoding([dict(type="jordan", count=1, size=3), dict(type="rotation", count="rest")])


@pytest.mark.parametrize(
    "blocks, message",
    [
        ([dict(type="spiral", count=8)], "not one of"),
        ([dict(type="rotation", count=3)], "add dict(type='zero', count=2)"),
        ([dict(type="rotation", count=5)], "only 8"),
        ([dict(type="decay", count=8, alpha=0.1)], "must be <= 0"),
        ([dict(type="decay", count=8, alpha=[-0.1, -0.2, -0.3])], "one per head"),
        ([dict(type="zero", count=8, colour="red")], "unknown keys"),
        ([dict(type="rotation", count=4, omega=[0.1, 0.2])], "one omega or 4"),
        ([dict(type="jordan", count=3, size=4), dict(type="zero", count="rest")], "use 12"),
    ],
)
def test_bad_block_specs(blocks, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        encoding(blocks)
