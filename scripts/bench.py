"""
What each positional encoding costs: training throughput, and evaluation speed and memory far past
the training length. Prints a table; nothing here is a test (timings are not pass/fail).

    python scripts/bench.py                        # every encoding, defaults for this device
    python scripts/bench.py --encodings=rope,alibi,t5 --json=out/bench.json
    python scripts/bench.py --eval_lengths=512,8192,16384 --compile=True      # on a GPU
    python scripts/bench.py --compare_compile=True     # what torch.compile buys each encoding
    python scripts/bench.py --generate=2000 --uncached=True --n_layer=2 --n_embd=64  # sampling

Per encoding, on random tokens (speed and memory do not depend on the text):
- train tok/s: batch_size x train_length tokens per step of forward + backward + gradient clipping
  + AdamW (model.configure_optimizers), as train.py does it; the ALiBi paper's Table 1 compares
  encodings this way (words/s on a V100 at L=512: sinusoidal 28.5k, rotary 20.0k, T5 14.4k,
  ALiBi 28.3k).
- eval tok/s and peak MB at each evaluation length: one sequence (batch 1), forward only, under
  torch.no_grad, all logits computed (as scripts/eval_lengths.py does). Peak MB is the memory
  the forward pass allocates on top of what already exists (weights, input): on CUDA
  torch.cuda.max_memory_allocated, on CPU the same figure rebuilt from the allocation events of
  torch's profiler (see cpu_peak_bytes).
- mem~T^k: the exponent k of peak memory between the two longest evaluated lengths. Attention
  that built the full (T, T) score matrix would approach k = 2; model.causal_attention runs bias
  and decay encodings in query blocks (attn_block_size), so their memory is O(block x T) and k
  tends to 1 once T spans several blocks (up to T = block the one block *is* the full matrix, so
  a pair of lengths starting there reads a little above 1). RoPE, NoPE and absolute encodings
  use the fused kernel: linear from the start. The last row prints what one full (T, T) float32
  matrix of one head would take, for comparison.
Each time is the median of `steps` timed iterations after `warmup` untimed ones (the median
shrugs off a stray hiccup of a busy machine); CUDA is synchronized around every iteration.
Learned absolute positions cannot run past their table: those lengths are reported as skipped.

--compare_compile=True prints another table, for training only: per encoding the train tok/s
eager, then under torch.compile (inductor, on CUDA or on CPU), the speed-up, and the seconds the
compiled model's first forward + backward took (compilation included; not in the tok/s).

--generate=N prints a table for sampling: per encoding, the time model.generate (KV cache) takes
for N greedy tokens after a random prompt of prompt_length tokens, batch 1; with --uncached=True
also the time of a full forward of the whole context per new token (what generation cost before
the cache, and what nanoGPT does), the speed-up, and whether both gave the same tokens.
"""

import contextlib
import json
import math
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # repo root

import torch

import runtime
from attention import ATTN_BACKENDS
from clock import TIMES
from configurator import UserError, nearest_hint, parse_args, run_cli
from data.prepare import write_json
from encoding import available_encodings, build_encoding
from model import GPT, GPTConfig
from runtime import DTYPES, autocast, has_cpp_compiler, resolve_device, set_tf32

# defaults, overridable as --key=value; 0 / () / "auto" mean "pick for the device" (see below)
DEFAULTS = dict(
    encodings="",  # comma-separated names, e.g. --encodings=rope,alibi; empty: all of encodings/
    n_layer=0,  # 0: 4 on CPU, 12 on CUDA (GPT-2 small, configs/base.py)
    n_head=0,  # 0: 4 on CPU, 12 on CUDA
    n_embd=0,  # 0: 256 on CPU, 768 on CUDA
    vocab_size=0,  # 0: 256 on CPU (bytes), 50304 on CUDA (GPT-2 BPE, padded)
    batch_size=0,  # training windows per step; 0: 8 on CPU, 16 on CUDA
    train_length=0,  # training sequence length (block_size); 0: 128 on CPU, 512 on CUDA
    eval_lengths=(),  # e.g. --eval_lengths=512,8192; empty: train_length x 1,4,16 (CPU), x1,4,16,32
    steps=0,  # timed iterations per measurement; 0: 5 on CPU, 10 on CUDA
    warmup=1,  # untimed iterations before them (compilation, caches, allocator warm-up)
    attn_block_size=512,  # query block of the blockwise attention path (model.GPTConfig)
    attn_backend="auto",  # auto (FlexAttention for the bias encodings on CUDA) | sdpa | flex
    time="index",  # learned: every encoding that can take one runs on a learned clock per layer
    device="auto",  # auto (cuda if available, else cpu), cpu, cuda, cuda:1, mps
    dtype="auto",  # auto: bfloat16 on CUDA where supported, else float32; CPU runs in float32
    compile=False,  # torch.compile the model (inductor: CUDA, or CPU with a C++ compiler)
    compare_compile=False,  # instead: training tok/s eager vs compiled per encoding (no eval)
    generate=0,  # instead: seconds to generate this many tokens per encoding (0: off)
    prompt_length=64,  # --generate: length of the random prompt
    uncached=False,  # --generate: also time a full forward per new token, and the speed-up
    relative=False,  # instead: each encoding's training step time over NoPE's (see below)
    peak_tflops=0.0,  # the device's peak, for MFU; 0: a GPU's from its name (runtime.PEAK_TFLOPS)
    json="",  # also write the results as JSON to this path
)

# what 0 means, per device: on CPU a small model that benchmarks every encoding in ~1-2 minutes on
# 2 cores; on CUDA the model and length configs/base.py trains (GPT-2 small at L=512)
CPU_DEFAULTS = dict(n_layer=4, n_head=4, n_embd=256, vocab_size=256, batch_size=8)
CPU_DEFAULTS.update(train_length=128, steps=5)
CUDA_DEFAULTS = dict(n_layer=12, n_head=12, n_embd=768, vocab_size=50304, batch_size=16)
CUDA_DEFAULTS.update(train_length=512, steps=10)


# -----------------------------------------------------------------------------
# settings


def pick_dtype(dtype, device_type):
    """(dtype name, note or None), as train.py picks it: autocast on CUDA only."""
    if dtype not in ("auto", *DTYPES):
        raise UserError(f"--dtype must be one of auto, {', '.join(DTYPES)}; got '{dtype}'")
    return runtime.pick_dtype(dtype, device_type)


def settings(argv):
    """The parsed, checked and device-resolved configuration."""
    cfg = parse_args(argv, DEFAULTS)
    cfg["device"] = resolve_device(cfg["device"])
    device_type = cfg["device"].split(":")[0]
    cfg["dtype"], cfg["dtype_note"] = pick_dtype(cfg["dtype"], device_type)
    auto = CUDA_DEFAULTS if device_type == "cuda" else CPU_DEFAULTS
    for key, value in auto.items():
        cfg[key] = cfg[key] or value
    for key in (*auto, "attn_block_size"):
        if cfg[key] <= 0:
            raise UserError(f"--{key} must be a positive integer (or 0 for auto), got {cfg[key]}")
    if cfg["attn_backend"] not in ATTN_BACKENDS:
        raise UserError(f"--attn_backend must be one of {', '.join(ATTN_BACKENDS)}")
    if cfg["time"] not in TIMES:
        raise UserError(f"--time must be one of {', '.join(TIMES)}, got '{cfg['time']}'")
    if cfg["n_embd"] % cfg["n_head"]:
        raise UserError(f"--n_embd={cfg['n_embd']} must be divisible by --n_head={cfg['n_head']}")
    if cfg["warmup"] < 0:
        raise UserError(f"--warmup must be 0 or more, got {cfg['warmup']}")
    if cfg["generate"] < 0 or cfg["prompt_length"] < 1:
        raise UserError("--generate must be 0 or more and --prompt_length at least 1")

    names = [n.strip() for n in cfg["encodings"].split(",") if n.strip()]
    valid = available_encodings()
    for name in names:
        if name not in valid:
            raise UserError(
                f"unknown encoding '{name}' in --encodings{nearest_hint(name, valid)};"
                f" available: {', '.join(valid)}"
            )
    cfg["encodings"] = names or valid
    for name in cfg["encodings"]:  # an encoding may refuse the shape: say so before any work
        try:
            build_encoding(model_config(name, cfg))
        except ValueError as e:
            raise UserError(f"{name}: {e}") from None

    if cfg["peak_tflops"] < 0:
        raise UserError(f"--peak_tflops must be >= 0, got {cfg['peak_tflops']}")
    cfg["peak_tflops"], cfg["peak_note"] = runtime.peak_tflops(cfg["device"], cfg["peak_tflops"])
    lengths = cfg["eval_lengths"]
    if not lengths:
        mults = (1, 4, 16, 32) if device_type == "cuda" else (1, 4, 16)
        lengths = tuple(cfg["train_length"] * m for m in mults)
    if not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in lengths):
        raise UserError(f"--eval_lengths must be positive integers like 512,2048, got {lengths}")
    cfg["eval_lengths"] = tuple(lengths)
    if cfg["json"]:  # find out now, not after minutes of measuring, that it cannot be written
        try:
            os.makedirs(os.path.dirname(os.path.abspath(cfg["json"])), exist_ok=True)
            open(cfg["json"] + ".tmp", "w").close()  # the file itself: only once there are results
            os.remove(cfg["json"] + ".tmp")
        except OSError as e:
            raise UserError(f"cannot write --json={cfg['json']}: {e.strerror or e}") from None
    # inductor compiles for CUDA and for CPU (with a C++ compiler); MPS stays eager, as in train.py
    wants_compile = cfg["compile"] or cfg["compare_compile"]
    if wants_compile and device_type not in ("cuda", "cpu"):
        if cfg["compare_compile"]:
            raise UserError(f"--compare_compile needs a cuda or cpu device, not {device_type}")
        cfg["compile"] = False
        cfg["compile_note"] = f"--compile is not used on {device_type}; running eager"
    if wants_compile and device_type == "cpu" and not has_cpp_compiler():
        raise UserError(
            "torch.compile on CPU needs a C++ compiler (inductor builds its kernels with one):"
            " install g++, or run without --compile / --compare_compile"
        )
    return cfg


# -----------------------------------------------------------------------------
# measuring


def synchronize(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)
    elif device == "mps":
        torch.mps.synchronize()


def median_seconds(fn, warmup, steps, device):
    """Median wall time of one call of fn() over `steps` calls, after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(steps):
        synchronize(device)
        t0 = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


@contextlib.contextmanager
def quiet_stderr():
    """Silence file descriptor 2, where the profiler's C++ side logs unconditionally."""
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def cpu_peak_bytes(fn):
    """Peak bytes of CPU tensor memory that fn() allocated and held at once.

    CPU PyTorch keeps no allocation statistics, and the process RSS is a poor proxy: malloc keeps
    freed pages, and the interpreter, the libraries and the weights dwarf a short forward pass.
    With profile_memory=True, torch's profiler records every allocation and free of the CPU
    allocator (address and size), including the buffers kernels such as SDPA allocate inside.
    Replaying those events gives the exact high-water mark of the memory fn() allocated, byte
    for byte the same on every run: the CPU analogue of torch.cuda.max_memory_allocated minus
    what was allocated before. Frees of blocks allocated before fn() are ignored."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    prof = torch.profiler.profile(activities=activities, profile_memory=True)
    # quiet: the profiler logs a line at start and stop, and one for each block freed that was
    # allocated before it started. fn() has already run unprofiled (the timed steps), so nothing
    # of its own is hidden; an exception still propagates and is printed after the restore.
    with quiet_stderr():
        prof.start()
        try:
            fn()
        finally:
            prof.stop()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "trace.json")
        prof.export_chrome_trace(path)
        with open(path) as f:
            events = json.load(f)["traceEvents"]
    memory = [e for e in events if e.get("name") == "[memory]"]
    memory = [e for e in memory if e.get("args", {}).get("Device Type") == 0]  # 0: CPU
    live, current, peak = {}, 0, 0
    for e in sorted(memory, key=lambda e: e["ts"]):  # stable: ties keep the recorded order
        addr, nbytes = e["args"]["Addr"], e["args"]["Bytes"]
        current -= live.pop(addr, 0)  # a free, or an address reused: drop the old block
        if nbytes > 0:
            live[addr] = nbytes
            current += nbytes
            peak = max(peak, current)
    return peak


def peak_bytes(fn, device):
    """Peak extra memory of fn() on device, or None where we cannot measure it (mps)."""
    if device.startswith("cuda"):
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    if device == "cpu":
        return cpu_peak_bytes(fn)
    fn()
    return None


def is_oom(e):
    # by message: CUDA, MPS and the CPU allocator raise different classes across torch versions
    message = str(e).lower()
    return "out of memory" in message or "can't allocate memory" in message


def model_config(name, cfg):
    config = GPTConfig(
        block_size=cfg["train_length"],
        vocab_size=cfg["vocab_size"],
        n_layer=cfg["n_layer"],
        n_head=cfg["n_head"],
        n_embd=cfg["n_embd"],
        dropout=0.0,  # costs every encoding the same; the point is what attention costs
        bias=False,  # as configs/base.py
        encoding=name,
        attn_block_size=cfg["attn_block_size"],
        attn_backend=cfg["attn_backend"],
    )
    # --time=learned: the encodings that read real relative distances; the others (NoPE, the
    # floor of --relative, the absolute and the bucketed ones) stay as they are
    pe = build_encoding(config)
    if cfg["time"] == "learned" and pe.takes_clock and not pe.rounds_distances:
        config.time = "learned"
    return config


def build_model(name, cfg):
    torch.manual_seed(0)
    return GPT(model_config(name, cfg)).to(cfg["device"])


def train_mfu(model, cfg, tokens_per_s):
    """Model FLOPs utilization of training (runtime.flops_per_token); None without a peak."""
    if not cfg["peak_tflops"] or not tokens_per_s:
        return None
    c = model.config
    flops = runtime.flops_per_token(model.get_num_params(), c.n_layer, c.n_embd, c.block_size)
    return flops * tokens_per_s / (cfg["peak_tflops"] * 1e12)


def compiled(model):
    torch._dynamo.reset()  # a fresh cache per model: nine encodings would hit its size limit
    return torch.compile(model)


def make_train_step(raw_model, model, cfg, ctx):
    """One call = the step train.py takes: forward, backward, gradient clipping, AdamW."""
    dev, device_type = cfg["device"], cfg["device"].split(":")[0]
    B, T, V = cfg["batch_size"], cfg["train_length"], cfg["vocab_size"]
    x = torch.randint(0, V, (B, T), device=dev)
    y = torch.randint(0, V, (B, T), device=dev)
    optimizer = raw_model.configure_optimizers(0.1, 6e-4, (0.9, 0.95), device_type)
    scaler = torch.amp.GradScaler(device_type, enabled=(cfg["dtype"] == "float16"))

    def train_step():
        with ctx:
            _, loss = model(x, y)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(raw_model.parameters(), 1.0)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)

    model.train()
    return train_step


def train_tokens_per_s(raw_model, model, cfg, ctx):
    """Training tokens/s: batch_size x train_length over the median step time."""
    step = make_train_step(raw_model, model, cfg, ctx)
    try:
        seconds = median_seconds(step, cfg["warmup"], cfg["steps"], cfg["device"])
    finally:  # the optimizer's state goes with `step`; drop the gradients too (after an OOM)
        raw_model.zero_grad(set_to_none=True)
    return cfg["batch_size"] * cfg["train_length"] / seconds


def eval_figures(model, length, cfg, ctx):
    """Forward-only tokens/s and peak memory of one sequence of `length` tokens."""
    dev = cfg["device"]
    idx = torch.randint(0, cfg["vocab_size"], (1, length), device=dev)

    @torch.no_grad()
    def forward():
        with ctx:
            model(idx)

    model.eval()
    seconds = median_seconds(forward, cfg["warmup"], cfg["steps"], dev)
    nbytes = peak_bytes(forward, dev)
    return {"tokens_per_s": length / seconds, "peak_mb": None if nbytes is None else nbytes / 2**20}


def bench_encoding(name, cfg, ctx):
    """All figures for one encoding: a dict that goes to the table and to the JSON. Running out
    of memory is recorded (and the others still run); any other error is a bug and propagates."""
    raw_model = build_model(name, cfg)
    model = compiled(raw_model) if cfg["compile"] else raw_model
    max_len = raw_model.max_len
    result = {"encoding": name, "params": raw_model.get_num_params(), "max_len": max_len}
    try:
        result["train_tokens_per_s"] = train_tokens_per_s(raw_model, model, cfg, ctx)
    except RuntimeError as e:
        if not is_oom(e):
            raise
        result["train_tokens_per_s"] = None
        result["train_error"] = "out of memory"
    result["train_mfu"] = train_mfu(raw_model, cfg, result["train_tokens_per_s"])
    result["eval"] = []
    for length in cfg["eval_lengths"]:
        rec = {"length": length, "full_attention_matrix_mb": length * length * 4 / 2**20}
        if max_len is not None and length > max_len:
            rec.update(skipped=True, reason=f"table of {max_len} positions")
        else:
            try:
                rec.update(skipped=False, **eval_figures(model, length, cfg, ctx))
            except RuntimeError as e:
                if not is_oom(e):
                    raise
                rec.update(skipped=True, reason="out of memory")
        if cfg["device"].startswith("cuda"):
            torch.cuda.empty_cache()  # an OOM's leftovers must not count against the next
        result["eval"].append(rec)
    result["memory_exponent"] = memory_exponent(result["eval"])
    return result


def compile_comparison(name, cfg, ctx):
    """Training tokens/s of one encoding eager, then compiled (the same model), and the seconds
    the compiled model's first forward + backward took: compilation, kept out of the tok/s."""
    raw_model = build_model(name, cfg)
    eager = train_tokens_per_s(raw_model, raw_model, cfg, ctx)
    model = compiled(raw_model)
    model.train()
    # inputs as the timed steps get them: other shapes, autocast or aliasing would recompile
    shape = (cfg["batch_size"], cfg["train_length"])
    x, y = (torch.randint(0, cfg["vocab_size"], shape, device=cfg["device"]) for _ in "xy")
    t0 = time.perf_counter()
    with ctx:
        _, loss = model(x, y)
    loss.backward()
    synchronize(cfg["device"])
    compile_s = time.perf_counter() - t0
    raw_model.zero_grad(set_to_none=True)
    fast = train_tokens_per_s(raw_model, model, cfg, ctx)
    return {
        "encoding": name,
        "params": raw_model.get_num_params(),
        "eager_tokens_per_s": eager,
        "compiled_tokens_per_s": fast,
        "speedup": fast / eager,
        "compile_s": compile_s,
    }


def memory_exponent(evals):
    """k in peak ~ T^k between the two longest measured lengths (None with fewer than two)."""
    done = [r for r in evals if not r["skipped"] and r.get("peak_mb")]
    done = sorted(done, key=lambda r: r["length"])[-2:]
    if len(done) < 2 or done[0]["length"] == done[1]["length"]:
        return None
    (a, b) = done
    return math.log(b["peak_mb"] / a["peak_mb"]) / math.log(b["length"] / a["length"])


# -----------------------------------------------------------------------------
# the table


def fmt_count(n):
    return f"{n / 1e6:.2f}M" if n >= 1e5 else f"{n / 1e3:.1f}k"


def fmt_rate(x):
    return "-" if x is None else f"{x:,.0f}"


def fmt_pct(x):
    return "-" if x is None else f"{x:.1%}"


def fmt_mb(x):
    return "n/a" if x is None else f"{x:,.1f}"


# column widths: encoding, params, train tok/s, then per length tok/s and MB, then the exponent
W_NAME, W_PARAMS, W_TRAIN, W_MFU, W_RATE, W_MB, W_EXP = 12, 8, 12, 8, 10, 9, 9


def header_lines(lengths, mfu=False):
    group = W_RATE + W_MB
    top = " " * (W_NAME + W_PARAMS + W_TRAIN + W_MFU * mfu) + "".join(
        f"  {f'eval @ {n}':^{group}}" for n in lengths
    )
    cols = f"{'encoding':<{W_NAME}}{'params':>{W_PARAMS}}{'train tok/s':>{W_TRAIN}}"
    cols += f"{'MFU':>{W_MFU}}" * mfu
    cols += "".join(f"  {'tok/s':>{W_RATE}}{'peak MB':>{W_MB}}" for _ in lengths)
    cols += f"{'mem~T^k':>{W_EXP}}"
    return [top, cols, "-" * len(cols)]


def row_line(r, mfu=False):
    line = f"{r['encoding']:<{W_NAME}}{fmt_count(r['params']):>{W_PARAMS}}"
    line += f"{fmt_rate(r['train_tokens_per_s']):>{W_TRAIN}}"
    line += f"{fmt_pct(r['train_mfu']):>{W_MFU}}" * mfu
    for e in r["eval"]:
        if e["skipped"]:
            word = "OOM" if e["reason"] == "out of memory" else "skipped"
            line += f"  {word:>{W_RATE + W_MB}}"
        else:
            line += f"  {fmt_rate(e['tokens_per_s']):>{W_RATE}}{fmt_mb(e['peak_mb']):>{W_MB}}"
    k = r["memory_exponent"]
    return line + f"{'-' if k is None else f'{k:.2f}':>{W_EXP}}"


W_SPEEDUP, W_COMPILE = 10, 11


def compare_header_lines():
    cols = f"{'encoding':<{W_NAME}}{'params':>{W_PARAMS}}{'eager tok/s':>{W_TRAIN}}"
    cols += f"{'compiled tok/s':>{W_TRAIN + 3}}{'speed-up':>{W_SPEEDUP}}{'compile s':>{W_COMPILE}}"
    return [cols, "-" * len(cols)]


def compare_row_line(r):
    line = f"{r['encoding']:<{W_NAME}}{fmt_count(r['params']):>{W_PARAMS}}"
    line += f"{fmt_rate(r['eager_tokens_per_s']):>{W_TRAIN}}"
    line += f"{fmt_rate(r['compiled_tokens_per_s']):>{W_TRAIN + 3}}"
    return line + f"{r['speedup']:>{W_SPEEDUP - 1}.2f}x{r['compile_s']:>{W_COMPILE}.1f}"


def full_matrix_line(lengths):
    """What one head's full (T, T) float32 score matrix would take: the quadratic reference."""
    line = f"{'full (T,T) fp32 matrix, 1 head':<{W_NAME + W_PARAMS + W_TRAIN}}"
    return line + "".join(f"  {'':>{W_RATE}}{fmt_mb(n * n * 4 / 2**20):>{W_MB}}" for n in lengths)


def main(argv=None):
    cfg = settings(sys.argv[1:] if argv is None else argv)
    dev = cfg["device"]
    if dev.startswith("cuda"):
        set_tf32(True)  # as train.py with configs/base.py
    ctx = autocast(dev, cfg["dtype"])
    for note in (cfg["dtype_note"], cfg.get("compile_note"), cfg["peak_note"]):
        if note:
            print(f"note: {note}")
    lengths = cfg["eval_lengths"]
    shape = f"{cfg['n_layer']} layers x {cfg['n_embd']} wide x {cfg['n_head']} heads"
    mode = " | eager vs compiled" if cfg["compare_compile"] else " | compiled" * cfg["compile"]
    mode = f" | generating {cfg['generate']} tokens" if cfg["generate"] else mode
    mode += " | learned time" * (cfg["time"] == "learned")
    print(
        f"nanoPE bench | {dev} | {cfg['dtype']}{mode}"
        f" | {shape}, vocab {cfg['vocab_size']} | torch {torch.__version__}"
        f" | {torch.get_num_threads()} threads"
    )
    report = {
        "device": dev,
        "dtype": cfg["dtype"],
        "compile": cfg["compile"],
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "model": {k: cfg[k] for k in ("n_layer", "n_head", "n_embd", "vocab_size")},
        "train_length": cfg["train_length"],
        "batch_size": cfg["batch_size"],
        "eval_lengths": list(lengths),
        "attn_block_size": cfg["attn_block_size"],
        "attn_backend": cfg["attn_backend"],
        "time": cfg["time"],
        "steps": cfg["steps"],
        "warmup": cfg["warmup"],
        "results": [],
    }
    if cfg["compare_compile"]:
        return compare_compile(cfg, ctx, report)
    if cfg["generate"]:
        return generate_table(cfg, ctx, report)
    if cfg["relative"]:
        return relative_table(cfg, ctx, report)
    print(
        f"train: batch {cfg['batch_size']} x {cfg['train_length']} tokens, forward+backward+AdamW"
        f" | eval: batch 1, forward only, query blocks of {cfg['attn_block_size']}"
    )
    print(f"tok/s: median of {cfg['steps']} timed steps after {cfg['warmup']} warmup")
    how = "torch profiler allocation events" if dev == "cpu" else "max_memory_allocated"
    print(f"peak MB: memory one eval forward allocates beyond the weights ({how});")
    print("mem~T^k: peak ~ T^k between the two longest lengths (1 linear, 2 quadratic)\n")
    for line in header_lines(lengths, mfu=bool(cfg["peak_tflops"])):
        print(line)
    notes = []
    for name in cfg["encodings"]:
        result = bench_encoding(name, cfg, ctx)
        report["results"].append(result)
        print(row_line(result, mfu=bool(cfg["peak_tflops"])), flush=True)
        if result.get("train_error"):
            notes.append(f"{name} training: {result['train_error']}")
        skipped = [e for e in result["eval"] if e["skipped"]]
        for reason in dict.fromkeys(e["reason"] for e in skipped):
            at = ", ".join(str(e["length"]) for e in skipped if e["reason"] == reason)
            notes.append(f"{name} @ {at}: skipped ({reason})")
        save(cfg, report)
    print(full_matrix_line(lengths))
    for note in notes:
        print(note)
    if cfg["json"]:
        print(f"wrote {cfg['json']}")
    return report


def compare_compile(cfg, ctx, report):
    """--compare_compile: the training step eager and compiled, one row per encoding."""
    print(
        f"train: batch {cfg['batch_size']} x {cfg['train_length']} tokens,"
        " forward+backward+AdamW, eager then torch.compile (inductor)"
    )
    print(f"tok/s: median of {cfg['steps']} timed steps after {cfg['warmup']} warmup")
    print("compile s: the compiled model's first forward+backward (compilation included)\n")
    for line in compare_header_lines():
        print(line)
    del report["eval_lengths"]
    report["compare_compile"] = True
    for name in cfg["encodings"]:
        result = compile_comparison(name, cfg, ctx)
        report["results"].append(result)
        print(compare_row_line(result), flush=True)
        save(cfg, report)
    if cfg["json"]:
        print(f"wrote {cfg['json']}")
    return report


def relative_table(cfg, ctx, report):
    """--relative: each encoding's training step time over NoPE's, the same model with no
    positional work (the floor). The encodings take turns, one step each per round, so a drift
    of the machine's speed hits them alike; the ratio is the median over `steps` rounds of the
    step time over NoPE's step time in the same round."""
    names = ["nope", *(n for n in cfg["encodings"] if n != "nope")]
    models = {name: build_model(name, cfg) for name in names}
    steps = {name: make_train_step(m, m, cfg, ctx) for name, m in models.items()}
    times = {name: [] for name in names}
    for _ in range(cfg["warmup"]):
        for name in names:
            steps[name]()
    for _ in range(cfg["steps"]):
        for name in names:
            times[name].append(median_seconds(steps[name], 0, 1, cfg["device"]))
    print(
        f"train: batch {cfg['batch_size']} x {cfg['train_length']} tokens, forward+backward+AdamW;"
        f" {cfg['steps']} rounds of one step per encoding, after {cfg['warmup']} warmup"
    )
    print("relative: median over rounds of step time / NoPE's step time in that round\n")
    mfu = bool(cfg["peak_tflops"])
    cols = f"{'encoding':<{W_NAME}}{'params':>{W_PARAMS}}{'ms/step':>10}{'relative':>10}"
    cols += f"{'MFU':>{W_MFU}}" * mfu
    print(cols + "\n" + "-" * len(cols))
    del report["eval_lengths"]
    report["relative"] = True
    for name in names:
        seconds = statistics.median(times[name])
        ratio = statistics.median(t / n for t, n in zip(times[name], times["nope"]))
        r = dict(encoding=name, params=models[name].get_num_params(), step_s=seconds)
        tokens_per_s = cfg["batch_size"] * cfg["train_length"] / seconds
        r.update(relative=ratio, mfu=train_mfu(models[name], cfg, tokens_per_s))
        report["results"].append(r)
        line = f"{name:<{W_NAME}}{fmt_count(r['params']):>{W_PARAMS}}"
        line += f"{seconds * 1000:>10.1f}{ratio:>10.3f}"
        print(line + f"{fmt_pct(r['mfu']):>{W_MFU}}" * mfu, flush=True)
    save(cfg, report)
    if cfg["json"]:
        print(f"wrote {cfg['json']}")
    return report


def full_recompute(model, idx, n):
    """Greedy decoding with no cache: a full forward of the (cropped) context per new token, as
    generation worked before the KV cache. The reference of --uncached."""
    for _ in range(n):
        window = idx if model.max_len is None else idx[:, -model.max_len :]
        logits, _ = model(window)
        idx = torch.cat((idx, logits[:, -1].argmax(-1, keepdim=True)), dim=1)
    return idx


def generation(name, cfg, ctx):
    """Seconds to generate cfg["generate"] greedy tokens, with the cache (and without)."""
    model = build_model(name, cfg).eval()
    g = torch.Generator().manual_seed(0)
    prompt = torch.randint(0, cfg["vocab_size"], (1, cfg["prompt_length"]), generator=g)
    prompt, n = prompt.to(cfg["device"]), cfg["generate"]

    def timed(fn):
        synchronize(cfg["device"])
        t0 = time.perf_counter()
        with torch.no_grad(), ctx:
            out = fn()
        synchronize(cfg["device"])
        return time.perf_counter() - t0, out

    timed(lambda: model.generate(prompt, 8, temperature=0))  # warm-up
    seconds, out = timed(lambda: model.generate(prompt, n, temperature=0))
    row = dict(encoding=name, params=model.get_num_params(), new_tokens=n, cached_s=seconds)
    if cfg["uncached"]:
        ref_seconds, ref = timed(lambda: full_recompute(model, prompt, n))
        row.update(uncached_s=ref_seconds, speedup=ref_seconds / seconds)
        row["same_tokens"] = torch.equal(out, ref)
    return row


def generate_table(cfg, ctx, report):
    """--generate: one row per encoding."""
    print(f"greedy, batch 1, {cfg['generate']} new tokens after a {cfg['prompt_length']}-token")
    print("random prompt; one timed run after a short warm-up\n")
    cols = f"{'encoding':<{W_NAME}}{'params':>{W_PARAMS}}{'cached s':>10}{'tok/s':>9}"
    cols += f"{'uncached s':>12}{'speed-up':>10}{'same':>6}" if cfg["uncached"] else ""
    print(cols + "\n" + "-" * len(cols))
    del report["eval_lengths"]
    report.update(generate=cfg["generate"], prompt_length=cfg["prompt_length"])
    for name in cfg["encodings"]:
        r = generation(name, cfg, ctx)
        report["results"].append(r)
        line = f"{name:<{W_NAME}}{fmt_count(r['params']):>{W_PARAMS}}{r['cached_s']:>10.2f}"
        line += f"{fmt_rate(r['new_tokens'] / r['cached_s']):>9}"
        if cfg["uncached"]:
            line += f"{r['uncached_s']:>12.2f}{r['speedup']:>9.1f}x{str(r['same_tokens']):>6}"
        print(line, flush=True)
        save(cfg, report)
    if cfg["json"]:
        print(f"wrote {cfg['json']}")
    return report


def save(cfg, report):
    """Write the JSON (if asked) after every encoding: a crash later loses nothing measured."""
    if cfg["json"]:
        os.makedirs(os.path.dirname(os.path.abspath(cfg["json"])), exist_ok=True)
        write_json(cfg["json"], report, indent=1)


if __name__ == "__main__":
    run_cli(main)
