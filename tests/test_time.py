"""Time from the data: the learned clock (Mamba's Delta) and FoX, the Forgetting Transformer,
against naive float64 loops; FoX's reduction to ALiBi; decoding with a cache on learned time."""

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import kv_cache
from attention import causal_attention
from clock import LearnedClock
from encoding import build_encoding
from model import GPT, GPTConfig

pytestmark = pytest.mark.usefixtures("one_thread")


def config(encoding="fox", **overrides):
    args = dict(vocab_size=64, n_layer=2, n_head=4, n_embd=32, block_size=16, dropout=0.0,
                bias=True, encoding=encoding, attn_block_size=8)  # fmt: skip
    args.update(overrides)
    return GPTConfig(**args)


def random_clock(C=32, H=4, seed=0, std=0.3):
    torch.manual_seed(seed)
    clock = LearnedClock(C, H)
    with torch.no_grad():
        clock.weight.normal_(0, std)
        clock.bias.normal_(0, 1)
    return clock


def test_clock_is_the_cumulative_sum_of_softplus_steps():
    clock = random_clock()
    x = torch.randn(2, 10, 32)
    pos = torch.arange(7, 17)
    t = clock(x, pos)
    assert t.shape == (2, 4, 10) and t.dtype == torch.float64
    w, b = clock.weight.detach().double(), clock.bias.detach().double()
    for bi in range(2):
        for h in range(4):
            time = 7.0  # the first token keeps its position; each later one adds its own step
            for u in range(10):
                if u > 0:
                    z = float(w[h] @ x[bi, u].double() + b[h])
                    time += math.log1p(math.exp(z))
                assert abs(t[bi, h, u].item() - time) < 1e-5, (bi, h, u)


def test_clock_rescales_the_steps_of_other_positions():
    """On positions with other steps (randomized, timestamps), each step is scaled by the rate:
    t_u = p_0 + sum_{0 < u' <= u} softplus(w . x_u' + b) (p_u' - p_u'-1)."""
    clock = random_clock(seed=4)
    x = torch.randn(2, 9, 32)
    pos = torch.tensor([[3.0, 4.0, 9.0, 9.5, 20.0, 21.0, 40.0, 41.0, 100.0]]).repeat(2, 1)[:, None]
    pos[1] += 7.0
    t = clock(x, pos)
    w, b = clock.weight.detach().double(), clock.bias.detach().double()
    for bi in range(2):
        for h in range(4):
            time = pos[bi, 0, 0].item()
            for u in range(9):
                if u > 0:
                    rate = math.log1p(math.exp(float(w[h] @ x[bi, u].double() + b[h])))
                    time += rate * (pos[bi, 0, u] - pos[bi, 0, u - 1]).item()
                # the rate is float32 (relative 6e-8), then scaled by steps of up to 60
                assert abs(t[bi, h, u].item() - time) < 1e-6 * time, (bi, h, u)


def test_clock_starts_as_the_token_index_exactly():
    """w = 0, b = softplus^-1(1): every step is 1.0 in float32, so the clock is pos itself."""
    clock = LearnedClock(32, 4)
    pos = torch.arange(5, 5 + 300)
    t = clock(torch.randn(3, 300, 32), pos)
    assert torch.equal(t, pos.double().expand(3, 4, 300))
    # per-sequence positions (B, 1, T) carry through as well
    pos_b = torch.stack([pos, pos + 1000, pos * 0 + torch.arange(300)])[:, None]
    assert torch.equal(clock(torch.randn(3, 300, 32), pos_b), pos_b.double().expand(3, 4, 300))


def test_clock_continues_across_a_cache():
    clock = random_clock(seed=1)
    x = torch.randn(2, 12, 32)
    pos = torch.arange(12)
    full = clock(x, pos)
    head = clock(x[:, :7], pos[:7])
    torch.testing.assert_close(clock(x[:, 7:], pos, past=head), full[..., 7:])


def naive_fox(q, k, v, x, w, b):
    """FoX by its definition, in float64: f_u = sigmoid(-(w . x_u + b)) (LearnedClock's sign),
    logit(t, s) = q_t . k_s / sqrt(d) + sum_{u=s+1..t} log f_u, causal softmax."""
    B, H, T, d = q.shape
    out = torch.zeros(B, H, T, d, dtype=torch.float64)
    for bi in range(B):
        for h in range(H):
            log_f = [math.log(torch.sigmoid(-(w[h] @ x[bi, u] + b[h])).item()) for u in range(T)]
            for t in range(T):
                logits = []
                for s in range(t + 1):
                    gain = sum(log_f[u] for u in range(s + 1, t + 1))
                    logits.append(float(q[bi, h, t] @ k[bi, h, s]) / math.sqrt(d) + gain)
                p = torch.softmax(torch.tensor(logits, dtype=torch.float64), 0)
                out[bi, h, t] = sum(p[s] * v[bi, h, s] for s in range(t + 1))
    return out


@pytest.mark.parametrize("explicit", [False, True])
def test_fox_against_its_definition(explicit):
    pe = build_encoding(config())
    clock = random_clock(seed=2)
    B, H, T, d = 2, 4, 11, 8
    g = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(B, H, T, d, generator=g, dtype=torch.float64) for _ in range(3))
    x = torch.randn(B, T, 32, generator=g)
    pos = clock(x, torch.arange(T))
    got = causal_attention(q, k, v, pos, pe, query_block=4, explicit=explicit)
    w, b = clock.weight.detach().double(), clock.bias.detach().double()
    expected = naive_fox(q, k, v, x.double(), w, b)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_fox_with_a_constant_gate_is_alibi():
    """f = e^{-m_h} for every token (w = 0, b = softplus^-1(m_h)): FoX's logits are ALiBi's."""
    torch.manual_seed(0)
    fox = GPT(config("fox"))
    alibi = GPT(config("alibi"))
    slopes = alibi.pe[0].slopes.double()
    state = {k: v for k, v in fox.state_dict().items() if "clock" not in k}
    alibi.load_state_dict(state)
    with torch.no_grad():
        for block in fox.transformer.h:
            block.attn.clock.weight.zero_()
            block.attn.clock.bias.copy_(torch.log(torch.expm1(slopes)))
    idx = torch.randint(0, 64, (2, 40))  # 2.5x the training length
    torch.testing.assert_close(fox(idx)[0], alibi(idx)[0], rtol=1e-5, atol=1e-5)


def test_fox_starts_as_the_authors_gate():
    """Their init: gate weights N(0, 0.02), bias 0, so f ~ sigmoid(0) = 1/2 per token."""
    torch.manual_seed(0)
    clock = GPT(config("fox")).transformer.h[0].attn.clock
    assert torch.equal(clock.bias, torch.zeros(4))
    assert 0.015 < clock.weight.std().item() < 0.025


@pytest.mark.parametrize("shared", [False, True])
def test_learned_time_decodes_with_a_cache(shared):
    """Decoding token by token keeps each layer's clock (or the shared one) in the cache: every
    step's logits equal a full forward, past the training length."""
    torch.manual_seed(0)
    m = GPT(config("fox", time_shared=shared)).eval()
    clocks = [m.clock] if shared else [b.attn.clock for b in m.transformer.h]
    assert all(c is not None for c in clocks) and len(clocks) == (1 if shared else 2)
    with torch.no_grad():
        for c in clocks:
            c.weight.normal_(0, 0.5)
    seq = torch.randint(0, 64, (2, 40))
    cache = kv_cache.KVCache(m.config.n_layer)
    with torch.no_grad():
        m(seq[:, :5], cache=cache)
        for t in range(6, 41):
            got = m(seq[:, t - 1 : t], cache=cache)[0][:, -1]
            torch.testing.assert_close(got, m(seq[:, :t])[0][:, -1], rtol=1e-5, atol=1e-5)


def test_learned_time_trains_its_clock():
    torch.manual_seed(0)
    m = GPT(config("fox"))
    idx = torch.randint(0, 64, (2, 16))
    _, loss = m(idx, idx)
    loss.backward()
    for block in m.transformer.h:
        assert block.attn.clock.weight.grad.abs().sum() > 0
        assert block.attn.clock.bias.grad.abs().sum() > 0


def test_time_errors():
    with pytest.raises(ValueError, match="time must be one of index, learned"):
        GPT(config("alibi", time="clock"))
    for name in ("learned", "sinusoidal", "nope", "cope"):
        with pytest.raises(ValueError, match=f"time='learned' needs .*'{name}'"):
            GPT(config(name, time="learned"))


def test_clock_under_bf16_autocast_keeps_float32_steps():
    """Under autocast the projection would run in bf16 and round every step (1.0 +- 2^-8)."""
    clock = LearnedClock(32, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        t = clock(torch.randn(1, 300, 32), torch.arange(300))
    assert torch.equal(t, torch.arange(300).double().expand(1, 4, 300))
    assert F.softplus(clock.bias).eq(1.0).all()


def test_cpu_runs_flush_denormals():
    """FoX's and ALiBi's far-out probabilities fall below 2^-126; x86 matmuls on such denormals
    ran ~100x slower. Every script resolves its device through runtime.resolve_device, which
    flushes them on CPU; importing the model alone changes nothing process-wide."""
    if not torch.set_flush_denormal(True):
        pytest.skip("this CPU cannot flush denormals")
    torch.set_flush_denormal(False)
    code = (
        "import torch, model, runtime; x = torch.tensor([1e-40]); print(x.mul(1.0).item());"
        " runtime.resolve_device('cpu'); print(x.mul(1.0).item())"
    )
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True)
    assert out.stdout.split() == [str(torch.tensor([1e-40]).item()), "0.0"], out.stderr


KEPT = """
import ctypes, torch, runtime
fields = "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()
class Info(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in fields]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Info
runtime.resolve_device("cpu")
mapped = libc.mallinfo2().hblkhd
x = torch.ones(4 << 20)  # 16 MB
print(libc.mallinfo2().hblkhd - mapped)  # bytes of fresh mmap: none
del x
print(libc.mallinfo2().fordblks)  # bytes freed and kept by the process
"""


@pytest.mark.skipif(sys.platform != "linux", reason="glibc's malloc")
def test_cpu_runs_keep_freed_memory():
    """runtime.resolve_device("cpu") keeps freed blocks: a 16 MB tensor comes out of the heap, not
    a fresh mmap, and stays with the process once freed (glibc's default maps such blocks and
    hands them back: page faults for every new attention tensor)."""
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", KEPT], cwd=root, capture_output=True, text=True)
    fresh, kept = map(int, out.stdout.split())
    assert fresh == 0 and kept >= 16 << 20, out.stderr
