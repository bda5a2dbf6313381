"""Precision and compilation: what the GPU paths (bf16/fp16 autocast, torch.compile) rely on,
checked on CPU with the same math."""

import pytest
import torch

from model import GPT, GPTConfig, available_encodings, build_encoding, causal_attention

H, D = 4, 32
JORDAN = {
    "blocks": [
        {"type": "jordan", "count": 2, "size": 4, "lam": -0.02},
        {"type": "rotation", "count": "rest"},
    ]
}
NILPOTENT = {"blocks": [{"type": "zero", "count": "rest"}, {"type": "nilpotent"}]}
CASES = [(name, {}) for name in available_encodings() if name != "learned"]
CASES += [("generator", JORDAN), ("generator", NILPOTENT), ("damped_rope", {"decay": "weight"})]
IDS = [f"{n}-{list(k.values())[0][0]['type'] if 'blocks' in k else k}" for n, k in CASES]


def encoding(name, kwargs):
    cfg = GPTConfig(n_head=H, n_embd=H * D, block_size=64, encoding=name, encoding_kwargs=kwargs)
    torch.manual_seed(0)
    pe = build_encoding(cfg)
    with torch.no_grad():  # move learned tables away from their init so that they matter
        for p in pe.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    return pe


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("name, kwargs", CASES, ids=IDS)
def test_half_precision_attention_is_finite_and_close(name, kwargs, dtype):
    """Half-precision inputs at 8x the training length, against float64 attention of the same
    (rounded) inputs: the error must stay of the order of the inputs' own rounding."""
    pe = encoding(name, kwargs)
    T = 512
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(1, H, T, D, generator=g).to(dtype) for _ in range(3))
    pos = torch.arange(T)
    out = causal_attention(q, k, v, pos, pe, query_block=128)
    assert out.dtype == dtype and torch.isfinite(out).all()
    ref = causal_attention(
        q.double(), k.double(), v.double(), pos, pe.double(), query_block=128, explicit=True
    )
    # bf16 keeps 8 bits of mantissa (~4e-3 relative), fp16 11 bits
    tol = 0.03 if dtype == torch.bfloat16 else 0.005
    assert (out.double() - ref).abs().max() < tol


@pytest.mark.parametrize("name", available_encodings())
def test_compiles_without_graph_breaks(name):
    """torch.compile must see one graph: a break per layer would make the GPU runs slow."""
    dynamo = pytest.importorskip("torch._dynamo")
    cfg = GPTConfig(vocab_size=64, n_layer=2, n_head=2, n_embd=32, block_size=16, encoding=name)
    model = GPT(cfg)
    idx = torch.randint(0, 64, (1, 16))
    dynamo.reset()
    explanation = dynamo.explain(model)(idx, idx)
    assert explanation.graph_break_count == 0, explanation.break_reasons


def test_learned_frequencies_are_not_weight_decayed():
    cfg = GPTConfig(vocab_size=64, n_layer=1, n_head=2, n_embd=32, block_size=16)
    cfg.encoding, cfg.encoding_kwargs = "damped_rope", {"learn_omega": True}
    model = GPT(cfg)
    omega = model.pe[0].omega
    assert omega.dim() == 2  # a matrix, which the dim >= 2 rule alone would decay
    opt = model.configure_optimizers(0.1, 1e-3, (0.9, 0.95), "cpu")
    decayed = {id(p) for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    assert id(omega) not in decayed
    assert id(model.transformer.h[0].attn.c_attn.weight) in decayed


FLEX_CASES = [("alibi", {}), ("t5", {}), ("shaw", {}), ("damped_rope", {"decay": "weight"})]


@pytest.mark.filterwarnings("ignore")  # eager flex_attention warns that it is slow: fine on CPU
@pytest.mark.parametrize("name, kwargs", FLEX_CASES, ids=[c[0] for c in FLEX_CASES])
def test_flex_attention_backend_equals_sdpa(name, kwargs):
    """attn_backend="flex" (FlexAttention with the bias as a score_mod; compiled on CUDA, the
    same math in eager mode here) gives the SDPA path's outputs, at float positions too."""
    pytest.importorskip("torch.nn.attention.flex_attention")
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=64, n_layer=2, n_head=2, n_embd=32, block_size=32)
    cfg.encoding, cfg.encoding_kwargs, cfg.attn_block_size = name, kwargs, 16
    sdpa = GPT(cfg).eval()
    with torch.no_grad():
        for p in sdpa.pe.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    cfg.attn_backend = "flex"
    flex = GPT(cfg).eval()
    flex.load_state_dict(sdpa.state_dict())
    idx = torch.randint(0, 64, (2, 48))
    for pos in (None, torch.arange(48) + 1000, torch.arange(48) * 0.5):
        with torch.no_grad():
            expected, got = sdpa(idx, pos=pos)[0], flex(idx, pos=pos)[0]
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    # with gradients (training) the flex model takes the SDPA path
    torch.testing.assert_close(flex(idx)[0], sdpa(idx)[0])


def test_unknown_attn_backend():
    with pytest.raises(ValueError, match="attn_backend must be 'sdpa' or 'flex'"):
        GPT(GPTConfig(vocab_size=64, n_layer=1, n_head=2, n_embd=32, attn_backend="xformers"))
