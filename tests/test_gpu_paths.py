"""The GPU paths users run -- bf16 autocast and torch.compile (inductor) -- checked on CPU for
every encoding case (tests/helpers.ENCODING_CASES), through GPT's public API only: forward,
loss, backward. CPU autocast and CPU inductor run the same dtype rules and the same compiler
front end (dynamo, AOT autograd, inductor's graph lowering) as CUDA; only the kernels differ.

Inductor takes 10-100 s per model on CPU, so it compiles the first case of each attention path
(the hooks and kind that decide how attention.causal_attention runs an encoding); every other case
runs the same checks under aot_eager: the same dynamo graphs, guards and recompiles, and the
forward and backward graphs AOT autograd hands to inductor, run without code generation."""

import contextlib
import shutil

import pytest
import torch
import torch.nn.functional as F
from helpers import ENCODING_CASES, ENCODING_IDS, fewer_terms

from attention import has_flex_path
from model import GPT, GPTConfig

V, BLOCK = 64, 16
# bf16 represents integers exactly only up to 256: evaluating at 512 (32x the training length)
# exposes positions, angles or decays that a kernel silently computed in bf16
BF16_EVAL_LENGTH = 512


# learned time (GPTConfig.time): clocks per sequence and head through a rotation, a decaying
# rotation and a bias, the three ways attention reads positions
TIME_CASES = [
    pytest.param(name, {}, "learned", id=f"{name}-learned_time")
    for name in ("rope", "damped_rope", "alibi")
]
CASES = [
    pytest.param(name, kwargs, "index", id=case_id)
    for (name, kwargs), case_id in zip(ENCODING_CASES, ENCODING_IDS)
] + TIME_CASES


def tiny_model(name, kwargs, time="index"):
    """A 1-layer model; a learned clock starts away from the token index (w = 0 would keep it)."""
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=V, n_layer=1, n_head=2, n_embd=32, block_size=BLOCK, time=time)
    cfg.encoding, cfg.encoding_kwargs = name, kwargs
    model = GPT(cfg)
    with torch.no_grad():
        for block in model.transformer.h:
            if block.attn.clock is not None:
                block.attn.clock.weight.normal_(0, 0.5)
    return model


def batch(T, B=2, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, V, (B, T), generator=g), torch.randint(0, V, (B, T), generator=g)


def gradients(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


# -----------------------------------------------------------------------------
# bf16 autocast


def sharpened(model):
    """GPT-2's init (std 0.02) leaves attention almost uniform, so positions barely reach the
    logits and a broken encoding would hide behind the rounding of the rest. Larger q, k, v
    (x10) and attention output (x5) make attention sharp and dominant; position tables move
    away from their init so that they matter."""
    with torch.no_grad():
        for p in model.pe.parameters():
            p.add_(torch.randn_like(p) * 0.5)
        for block in model.transformer.h:
            block.attn.c_attn.weight.mul_(10)
            block.attn.c_proj.weight.mul_(5)
    return model


@contextlib.contextmanager
def bf16_qkv(model):
    """The float32 reference: q, k, v as autocast makes them (c_attn on bf16 inputs and weights),
    everything after them -- positions, rotations, decays, biases, attention -- in float32.

    Why not plain float32: rounding q and k is unavoidable in bf16, and some encodings are that
    sensitive by nature. The Jordan generator's logits are q^T P(t - s) k with entries of P up
    to (t - s)^3 / 6: its attention is nearly an argmax that the rounding of q alone flips (its
    logits then move by 60-80% of the largest one here, on every bf16 implementation). Against
    this reference every case, that one included, differs by the rounding of the rest of the
    model only, and a defect in the encoding's own bf16 path shows."""

    def hook(module, inputs, output):
        b = torch.bfloat16
        bias = None if module.bias is None else module.bias.to(b)
        return F.linear(inputs[0].to(b), module.weight.to(b), bias).float()

    handles = [block.attn.c_attn.register_forward_hook(hook) for block in model.transformer.h]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def autocast_bf16(enabled=True):
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=enabled)


@pytest.mark.parametrize("name, kwargs, time", CASES)
def test_bf16_autocast_matches_float32(name, kwargs, time, one_thread):
    """Tolerances: bf16 keeps 8 significant bits, so one rounding is off by up to 2^-9 (0.2%).
    Measured against the reference above (3 seeds, every case): loss 1.4e-4 at most, gradients
    0.9% (relative norm, the LayerNorm ones worst), logits at 32x 1.0% of the largest. Positions
    or decays computed in bf16 (RoPE angles from bf16 positions, damped RoPE or the generator's
    polynomials without their float32 upcast) give 17-90% at 32x; 2% separates the two."""
    model = sharpened(tiny_model(name, kwargs, time))
    x, y = batch(BLOCK, B=4)
    losses, grads = [], []
    for amp in (False, True):
        model.zero_grad(set_to_none=True)
        reference = contextlib.nullcontext() if amp else bf16_qkv(model)
        with autocast_bf16(amp), reference:
            _, loss = model(x, y)
        loss.backward()
        losses.append(loss.item())
        grads.append(gradients(model))
    assert abs(losses[1] - losses[0]) < 1e-3
    ref, got = grads
    assert ref.keys() == got.keys()
    for n in ref:
        assert (got[n] - ref[n]).norm() <= 0.02 * ref[n].norm(), n

    model.eval()
    idx, _ = batch(model.max_len or BF16_EVAL_LENGTH)  # learned: its table's length
    with torch.no_grad():
        with bf16_qkv(model):
            ref = model(idx)[0]
        with autocast_bf16():
            got = model(idx)[0]
    assert got.dtype == torch.bfloat16 and torch.isfinite(got).all()
    err = (got.float() - ref).abs().max() / ref.abs().max()
    assert err < 0.02, f"bf16 logits off by {err:.2%} of the largest at T={idx.size(1)}"


# -----------------------------------------------------------------------------
# torch.compile, inductor


def train_step(fn, model, x, y):
    """Loss and gradients of one forward + backward of fn (model, or model compiled)."""
    model.zero_grad(set_to_none=True)
    _, loss = fn(x, y)
    loss.backward()
    return loss.detach(), gradients(model)


NEEDS_CXX = pytest.mark.skipif(
    not (shutil.which("g++") or shutil.which("gcc") or shutil.which("clang++")),
    reason="inductor on CPU needs a C++ compiler",
)


def attention_path(name, kwargs, time):
    """What decides how attention runs an encoding: its hooks, orthogonality, explicit scores and
    whether FlexAttention can take its bias; whose rotation code it runs (rotations are where
    inductor's code generation differs: it has no complex numbers); and its clock."""
    model = tiny_model(name, kwargs, time)
    pe, clock = model.pe[0], model.transformer.h[0].attn.clock is not None
    rotation = type(pe).rotate.__module__ if pe.has_rotate else None
    return pe.has_embed, rotation, pe.has_bias, pe.orthogonal, pe.explicit, has_flex_path(pe), clock


def compile_cases():
    """CASES with a backend each: inductor for the first case of each attention path."""
    seen, cases = set(), []
    for case in CASES:
        name, kwargs, time = case.values
        path = attention_path(name, kwargs, time)
        backend = "aot_eager" if path in seen else "inductor"
        seen.add(path)
        marks = NEEDS_CXX if backend == "inductor" else ()
        cases.append(
            pytest.param(name, kwargs, time, backend, id=f"{case.id}-{backend}", marks=marks)
        )
    return cases


@pytest.mark.parametrize("name, kwargs, time, backend", compile_cases())
def test_compile_train_and_eval(name, kwargs, time, backend, one_thread):
    """One model compiled as train.py compiles it, then as eval_lengths.py does (inductor or
    aot_eager, see the module docstring):
    - a training step (static shapes) compiles as one graph with no graph break (a break per
      layer would make GPU training slow), and its loss and gradients equal eager ones;
    - evaluation (eval mode, no_grad, dynamic=True) at three lengths compiles exactly one more
      graph: eval mode and grad mode are guarded, so the first evaluation recompiles once; its
      length is symbolic, so the other two reuse it. All lengths stay within one query block
      (attn_block_size = 512), where a blockwise encoding needs no length-specific graph either.
      One graph per length would mean every new evaluation length, or every token of sampling,
      recompiles -- and after torch._dynamo.config.cache_size_limit (8) recompiles, dynamo runs
      eager.
    - compiled logits equal eager ones."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    model = tiny_model(name, fewer_terms(name, kwargs), time)

    x, y = batch(BLOCK)
    model.train()
    eager_loss, eager_grads = train_step(model, model, x, y)
    loss, grads = train_step(torch.compile(model, backend=backend), model, x, y)
    assert sum(counters["graph_break"].values()) == 0, dict(counters["graph_break"])
    train_graphs = counters["stats"]["unique_graphs"]
    assert train_graphs == 1
    torch.testing.assert_close(loss, eager_loss)
    torch.testing.assert_close(grads, eager_grads)

    model.eval()
    compiled = torch.compile(model, dynamic=True, backend=backend)
    lengths = (6, 11, 16) if model.max_len else (BLOCK, 40, 4 * BLOCK)  # learned: within its table
    with torch.no_grad():
        for T in lengths:
            idx, _ = batch(T, B=1, seed=T)
            torch.testing.assert_close(compiled(idx)[0], model(idx)[0])
    assert sum(counters["graph_break"].values()) == 0, dict(counters["graph_break"])
    eval_graphs = counters["stats"]["unique_graphs"] - train_graphs
    assert eval_graphs == 1, f"{eval_graphs} graphs compiled for evaluation at lengths {lengths}"
