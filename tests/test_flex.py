"""FlexAttention (GPTConfig.attn_backend): the bias encodings' score_mod against the SDPA path,
forward and gradients, and which backend runs where. On CPU flex runs eagerly (an unfused
reference of the same math); on CUDA it is compiled, and the CUDA test below checks it there."""

from types import SimpleNamespace

import pytest
import torch
from helpers import ENCODING_CASES, case_id, fewer_terms

import attention
import train
from attention import flex_training_note, has_flex_path, use_flex
from encoding import build_encoding
from model import GPT, GPTConfig

flex_module = pytest.importorskip("torch.nn.attention.flex_attention")
pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: faster, and deterministic

# learnable slopes are captured tensors too: their gradients must come through score_mod
_SLOPE = [{"type": "zero", "count": "rest"}, {"type": "nilpotent", "learnable": True}]
_LEARNABLE = [
    ("damped_rope", {"decay": "weight", "learn_alpha": True}),
    ("generator", {"blocks": _SLOPE}),
]


@pytest.fixture(autouse=True)
def fresh_dynamo():
    """Eager FlexAttention compiles its own wrapper: shapes left by an earlier test make it
    recompile with dynamic sizes, which some score_mods do not survive (torch 2.13)."""
    torch._dynamo.reset()


def config(name, kwargs, backend, **extra):
    sizes = dict(vocab_size=64, n_layer=2, n_head=2, n_embd=32, block_size=32, attn_block_size=16)
    return GPTConfig(**sizes | extra, encoding=name, encoding_kwargs=kwargs, attn_backend=backend)


def note(name, kwargs, backend, compiled=False, **extra):
    cfg = config(name, kwargs, backend, **extra)
    return flex_training_note(cfg, build_encoding(cfg), compiled)


CASES = [
    c for c in ENCODING_CASES + _LEARNABLE if has_flex_path(build_encoding(config(*c, "sdpa")))
]
IDS = [case_id(*c) + ("-learnable" if c in _LEARNABLE else "") for c in CASES]


def models(name, kwargs, flex_backend="flex", **extra):
    """An SDPA model and a FlexAttention one with the same weights; the encoding's tables and
    slopes moved away from their init, so that they matter."""
    torch.manual_seed(0)
    kwargs = fewer_terms(name, kwargs)
    sdpa = GPT(config(name, kwargs, "sdpa", **extra))
    with torch.no_grad():
        for p in sdpa.pe.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    flex = GPT(config(name, kwargs, flex_backend, **extra))
    flex.load_state_dict(sdpa.state_dict())
    return sdpa, flex


@pytest.fixture
def flex_calls(monkeypatch):
    """The calls attention makes to FlexAttention: a test must see that flex really ran."""
    calls, flex_attention = [], attention.flex_causal_attention
    monkeypatch.setattr(
        attention, "flex_causal_attention", lambda *args: calls.append(1) or flex_attention(*args)
    )
    return calls


def test_the_bias_encodings_have_a_flex_path():
    assert {"alibi", "t5", "shaw"} <= {name for name, _ in CASES}


@pytest.mark.filterwarnings("ignore")  # eager flex_attention warns that it is unfused: fine here
@pytest.mark.parametrize("name, kwargs", CASES, ids=IDS)
def test_flex_forward_equals_sdpa(name, kwargs, flex_calls):
    """Integer, offset and float positions: FlexAttention with the bias as a score_mod and the
    causal block mask gives the SDPA path's logits. Float64 times far out too: float32 holds
    60,000.37 only to 0.004, so t - s must be taken before the cast (as bias() does)."""
    sdpa, flex = (m.eval() for m in models(name, kwargs))
    idx = torch.randint(0, 64, (2, 48))
    positions = (
        None,
        torch.arange(48) + 1000,
        torch.arange(48) * 0.5,
        torch.arange(48) * 0.37 + 5.1,
        torch.arange(48, dtype=torch.float64) * 0.37 + 60_000.1,
    )
    for pos in positions:
        with torch.no_grad():
            got, expected = flex(idx, pos=pos)[0], sdpa(idx, pos=pos)[0]
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert len(flex_calls) == len(positions) * 2  # every layer of every forward


def assert_same_gradients(name, kwargs, device, flex_backend, tol, compile=False):
    """One training step's gradients of every parameter (the encoding's tables, slopes and
    vectors included), FlexAttention against SDPA, to relative error tol."""
    sdpa, flex = (m.to(device) for m in models(name, kwargs, flex_backend))
    idx = torch.randint(0, 64, (2, 48), device=device)
    pos = torch.arange(48, device=device) * 0.5 + 3.0
    for m in (sdpa, torch.compile(flex) if compile else flex):
        _, loss = m(idx, idx, pos=pos)
        loss.backward()
    for (n, p), q in zip(sdpa.named_parameters(), flex.parameters()):
        assert q.grad is not None, n
        ref = p.grad.double()
        assert ref.norm() > 0, n  # every parameter, the encoding's too, gets a gradient
        assert (q.grad.double() - ref).norm() <= tol * ref.norm(), n


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("name, kwargs", CASES, ids=IDS)
def test_flex_gradients_equal_sdpa_on_cpu(name, kwargs, flex_calls, monkeypatch):
    """flex_attention refuses inputs that require grad on CPU: its fused backward exists for CUDA
    only. Its eager backward (dense, from the same joint graph of score_mod that the CUDA kernel
    is generated from) runs here once that device check is lifted: gradients must reach the
    tensors score_mod captures, exactly as through SDPA's dense bias."""
    if not hasattr(flex_module, "_validate_device"):
        pytest.skip("this torch checks devices elsewhere: the CUDA test covers gradients")
    monkeypatch.setattr(flex_module, "_validate_device", lambda *args: None)
    monkeypatch.setattr(attention, "use_flex", lambda backend, device_type, grad: backend == "flex")
    assert_same_gradients(name, kwargs, "cpu", "flex", tol=1e-5)
    assert len(flex_calls) == 2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="FlexAttention's backward needs CUDA")
@pytest.mark.parametrize("compile", [False, True], ids=["eager-model", "compiled-model"])
@pytest.mark.parametrize("name, kwargs", CASES, ids=IDS)
def test_flex_gradients_equal_sdpa_on_cuda(name, kwargs, compile, flex_calls, monkeypatch):
    """The real thing: attn_backend="auto" trains through compiled FlexAttention on CUDA (in an
    eager model, and inside a compiled one), with the gradients SDPA gives."""
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)  # float32 on both paths
    assert_same_gradients(name, kwargs, "cuda", "auto", tol=1e-4, compile=compile)
    assert flex_calls


def test_backend_choice():
    """auto: FlexAttention on CUDA only; flex: wherever it runs, but gradients on CUDA only;
    sdpa: never. The choice of an encoding without a score_mod is SDPA's (see CASES)."""
    assert GPTConfig().attn_backend == "auto"
    for grad in (False, True):
        assert not use_flex("auto", "cpu", grad) and not use_flex("auto", "mps", grad)
        assert not use_flex("sdpa", "cuda", grad)
    assert use_flex("auto", "cuda", grad=False) == attention.FLEX_FORWARD
    assert use_flex("auto", "cuda", grad=True) == attention.FLEX_BACKWARD
    assert use_flex("flex", "cpu", grad=False) == attention.FLEX_FORWARD
    assert not use_flex("flex", "cpu", grad=True)


def test_auto_on_cpu_and_flex_with_gradients_on_cpu_run_sdpa(flex_calls):
    sdpa, flex = models("alibi", {}, flex_backend="auto")
    idx = torch.randint(0, 64, (1, 24))
    with torch.no_grad():
        torch.testing.assert_close(flex(idx)[0], sdpa(idx)[0], rtol=0, atol=0)
    _, flex = models("alibi", {}, flex_backend="flex")
    torch.testing.assert_close(flex(idx)[0], sdpa(idx)[0], rtol=0, atol=0)  # with gradients
    assert not flex_calls


def test_training_fallback_notes(monkeypatch, capsys):
    """Where eager training on CUDA cannot use FlexAttention although attn_backend asks for it,
    flex_training_note says why (train.py prints it: wrap_say below)."""
    assert note("t5", {}, "auto") is None
    assert note("t5", {}, "auto", dropout=0.1) is None  # residual dropout: flex still trains
    assert note("t5", {}, "sdpa", attn_dropout=0.1) is None
    assert note("rope", {}, "auto", attn_dropout=0.1) is None  # no bias: the fused kernel anyway
    assert note("damped_rope", {}, "auto", attn_dropout=0.1) is None  # logit decay: no score_mod
    assert "attn_dropout=0.1" in note("t5", {}, "auto", attn_dropout=0.1)
    assert "attn_dropout=0.1" in note("damped_rope", {"decay": "weight"}, "auto", attn_dropout=0.1)
    monkeypatch.setattr(attention, "FLEX_BACKWARD", False)
    assert "torch >= 2.6" in note("shaw", {}, "flex")
    assert not use_flex("auto", "cuda", grad=True)


def wrap_say(name, compile, monkeypatch, capsys):
    """What train.wrap_model prints for encoding `name` training on CUDA (compile faked)."""
    monkeypatch.setattr(torch, "compile", lambda model: model)
    model = GPT(config(name, {}, "auto"))
    r = SimpleNamespace(c=dict(compile=compile, peak_tflops=1.0, n_layer=2, n_embd=32), say=print,
                        device_type="cuda", device="cuda", raw_model=model, model=model, ddp=False,
                        world=1, n_params=1, T=32, B=1, grad_accum=1, tokens_per_iter=32,
                        dtype="bfloat16")  # fmt: skip
    train.wrap_model(r)
    return [line for line in capsys.readouterr().out.splitlines() if line.startswith("note:")]


def test_compiled_training_note(monkeypatch, capsys):
    """Compiled training on CUDA of an encoding whose score_mod captures tables computed in the
    graph (compiled_flex_grad = False) takes SDPA blocks where eager training takes flex: train.py
    says so, once, when it compiles on CUDA (route() is pure: asked for CUDA on this CPU)."""
    monkeypatch.setattr(attention, "FLEX_BACKWARD", True)
    compiled = "compiled FlexAttention cannot take gradients through tables this encoding computes"
    for name in ("kerple", "fire", "shaw"):
        assert note(name, {}, "auto") is None
        assert note(name, {}, "auto", compiled=True).startswith(compiled)
        assert note(name, {}, "sdpa", compiled=True) is None
    assert note("t5", {}, "auto", compiled=True) is None  # its table is a parameter: flex trains
    assert "attn_dropout=0.1" in note("t5", {}, "auto", compiled=True, attn_dropout=0.1)
    said = wrap_say("kerple", True, monkeypatch, capsys)
    assert len(said) == 1 and said[0].startswith(f"note: {compiled}")
    assert wrap_say("kerple", False, monkeypatch, capsys) == []
    assert wrap_say("t5", True, monkeypatch, capsys) == []
    monkeypatch.setattr(attention, "FLEX_BACKWARD", False)  # eager training's note, said once
    assert len(wrap_say("shaw", False, monkeypatch, capsys)) == 1


def test_unknown_attn_backend():
    with pytest.raises(ValueError, match="attn_backend must be one of auto, sdpa, flex; got .xf."):
        GPT(config("alibi", {}, "xf"))


@pytest.mark.filterwarnings("ignore")
def test_flex_path_compiles_without_graph_breaks():
    """The FlexAttention path (here: evaluation, the CPU can trace no flex backward) is one graph
    under torch.compile: T5, whose score_mod captures a learned table."""
    dynamo = pytest.importorskip("torch._dynamo")
    gpt = GPT(config("t5", {}, "flex")).eval()
    idx = torch.randint(0, 64, (1, 16))
    dynamo.reset()
    with torch.no_grad():
        explanation = dynamo.explain(gpt)(idx)
    assert explanation.graph_break_count == 0, explanation.break_reasons


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("name, kwargs", CASES, ids=IDS)
def test_compiled_flex_training(name, kwargs, flex_calls, monkeypatch):
    """Compiled training (aot_eager: dynamo's and AOTAutograd's graphs, as inductor gets them,
    device check lifted): an encoding trains through FlexAttention with SDPA's gradients, or
    declares compiled_flex_grad = False and takes SDPA blocks (compiled FlexAttention drops the
    gradient of a tensor its score_mod captures when that tensor is computed in the graph). One
    layer: a second traces the same score_mod again (the eager tests above run two)."""
    if not hasattr(flex_module, "_validate_device"):
        pytest.skip("this torch checks devices elsewhere: the CUDA test covers gradients")
    monkeypatch.setattr(flex_module, "_validate_device", lambda *args: None)
    monkeypatch.setattr(attention, "use_flex", lambda backend, device_type, grad: backend == "flex")
    torch._dynamo.reset()
    sdpa, flex = models(name, kwargs, n_layer=1)
    idx = torch.randint(0, 64, (2, 32))
    sdpa(idx, idx)[1].backward()
    torch.compile(flex, backend="aot_eager")(idx, idx)[1].backward()
    pe = flex.pe[0]
    assert (len(flex_calls) > 0) == pe.compiled_flex_grad
    for (n, p), q in zip(sdpa.named_parameters(), flex.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-6, msg=n)
