"""
What each positional encoding costs: training throughput, and evaluation speed and memory far past
the training length, on random tokens. Options and what each table measures: docs/benchmarks.md.

    python scripts/bench.py                        # every encoding, defaults for this device
    python scripts/bench.py --encodings=rope,alibi,t5 --eval_lengths=512,8192 --json=out/b.json
    python scripts/bench.py --relative=True        # each training step over NoPE's (the floor)
    python scripts/bench.py --generate=2000 --uncached=True --n_layer=2 --n_embd=64  # sampling
"""

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
from configurator import UserError, check_at_least, load_base, parse_args, run_cli
from data.prepare import write_json
from encoding import available_encodings, build_encoding
from model import GPT, GPTConfig
from runtime import autocast, compiles, resolve_device, set_tf32

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
    generate=0,  # instead: seconds to generate this many tokens per encoding (0: off)
    prompt_length=64,  # --generate: length of the random prompt
    uncached=False,  # --generate: also time a full forward per new token, and the speed-up
    relative=False,  # instead: each encoding's training step time over NoPE's
    peak_tflops=0.0,  # the device's peak, for MFU; 0: a GPU's from its name (runtime.PEAK_TFLOPS)
    json="",  # also write the results as JSON to this path
)
# what 0 means, per device: on CPU a small model that benchmarks every encoding in ~1-2 minutes on
# 2 cores; on CUDA the model and length configs/base.py trains (GPT-2 small at L=512)
CPU_DEFAULTS = dict(n_layer=4, n_head=4, n_embd=256, vocab_size=256, batch_size=8, steps=5)
CPU_DEFAULTS["train_length"] = 128
CUDA_DEFAULTS = dict(n_layer=12, n_head=12, n_embd=768, vocab_size=50304, batch_size=16)
CUDA_DEFAULTS.update(train_length=512, steps=10)
MODES = ("generate", "relative")  # the other tables; none: the main one


def settings(argv):
    """The parsed, checked and device-resolved configuration."""
    cfg = parse_args(argv, DEFAULTS)
    cfg["device"] = dev = resolve_device(cfg["device"])
    device_type = dev.split(":")[0]
    cfg["dtype"], cfg["dtype_note"] = runtime.pick_dtype(cfg["dtype"], device_type)
    for key, value in (CUDA_DEFAULTS if device_type == "cuda" else CPU_DEFAULTS).items():
        cfg[key] = cfg[key] or value
    check_at_least(cfg, dict(batch_size=1, steps=1, prompt_length=1, warmup=0, generate=0,
                             peak_tflops=0))  # fmt: skip
    names = [n.strip() for n in cfg["encodings"].split(",") if n.strip()]
    cfg["encodings"] = names or available_encodings()
    for name in ["nope", *cfg["encodings"]]:  # the model's rules (GPTConfig), then the encoding's
        try:
            model_config(name, cfg)
        except ValueError as e:
            raise UserError(f"--encodings={name}: {e}" if name in names else str(e)) from None
    cfg["peak_tflops"], cfg["peak_note"] = runtime.peak_tflops(dev, cfg["peak_tflops"])
    mults = (1, 4, 16, 32) if device_type == "cuda" else (1, 4, 16)
    lengths = list(cfg["eval_lengths"] or (cfg["train_length"] * m for m in mults))
    if not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in lengths):
        raise UserError(f"--eval_lengths must be positive integers like 512,2048, got {lengths}")
    cfg["eval_lengths"] = lengths
    if cfg["json"]:  # find out now, not after minutes of measuring, that it cannot be written
        write_json(cfg["json"], {})  # the results replace it as they come
    cfg["compile"], cfg["compile_note"] = compiles(cfg["compile"], device_type)
    return cfg


def model_config(name, cfg):
    """GPTConfig of encoding `name` at the bench's shape, without dropout; --time=learned applies
    to encodings that read real distances, not to NoPE (the floor), absolute or bucketed ones."""
    keys = ("vocab_size", "n_layer", "n_head", "n_embd", "attn_block_size", "attn_backend", "time")
    config = GPTConfig(**{k: cfg[k] for k in keys}, block_size=cfg["train_length"], encoding=name,
                       dropout=0.0, bias=False)  # fmt: skip
    pe = build_encoding(config)
    if not pe.takes_clock or pe.rounds_distances:
        config.time = "index"
    return config


def build_model(name, cfg):
    torch.manual_seed(0)
    return GPT(model_config(name, cfg)).to(cfg["device"])


# -----------------------------------------------------------------------------
# measuring


def timed(fn, device):
    """(wall seconds, result) of fn(), the device synchronized before and after."""
    sync = {"cuda": lambda: torch.cuda.synchronize(device), "mps": torch.mps.synchronize}
    sync = sync.get(device.split(":")[0], lambda: None)
    sync()
    t0, out = time.perf_counter(), fn()
    sync()
    return time.perf_counter() - t0, out


def median_seconds(fn, warmup, steps, device):
    """Median wall time of one call of fn() over `steps` calls, after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    return statistics.median(timed(fn, device)[0] for _ in range(steps))


def cpu_peak_bytes(fn):
    """Peak bytes of CPU tensor memory that fn() allocated and held at once (as
    torch.cuda.max_memory_allocated on CUDA): a replay of the allocations and frees the profiler
    records, frees of older blocks ignored (RSS is no measure: malloc keeps freed pages)."""
    cpu = [torch.profiler.ProfilerActivity.CPU]
    prof = torch.profiler.profile(activities=cpu, profile_memory=True)
    sys.stderr.flush()  # silence fd 2: the profiler logs at start, stop and each older block freed
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        with prof:
            fn()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    with tempfile.TemporaryDirectory() as tmp:
        prof.export_chrome_trace(os.path.join(tmp, "trace.json"))
        with open(os.path.join(tmp, "trace.json")) as f:
            events = json.load(f)["traceEvents"]
    memory = [e for e in events if e.get("name") == "[memory]" and e["args"]["Device Type"] == 0]
    live, current, peak = {}, 0, 0
    for e in sorted(memory, key=lambda e: e["ts"]):  # stable: ties keep the recorded order
        addr = e["args"]["Addr"]
        current -= live.pop(addr, 0)  # a free, or an address reused: drop the old block
        live[addr] = max(e["args"]["Bytes"], 0)
        current, peak = current + live[addr], max(peak, current + live[addr])
    return peak


def peak_mb(fn, device):
    """Peak extra memory of fn() on device in MB, or None where we cannot measure it (mps)."""
    if device == "cpu":
        return cpu_peak_bytes(fn) / 2**20
    if not device.startswith("cuda"):
        return None
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    timed(fn, device)
    return (torch.cuda.max_memory_allocated(device) - before) / 2**20


def unless_oom(fn, *args):
    """(fn(*args), None), or (None, "out of memory"): one OOM must not stop the other encodings.
    By message: CUDA, MPS and the CPU allocator raise different classes across torch versions."""
    try:
        return fn(*args), None
    except RuntimeError as e:
        if not any(s in str(e).lower() for s in ("out of memory", "can't allocate memory")):
            raise
        return None, "out of memory"
    finally:
        torch.cuda.empty_cache()  # an OOM's leftovers must not count against the next


def make_train_step(raw_model, model, cfg, ctx):
    """One call = the step train.py takes with configs/base.py: forward, backward, clip, AdamW."""
    device_type, shape = cfg["device"].split(":")[0], (cfg["batch_size"], cfg["train_length"])
    x, y = (torch.randint(0, cfg["vocab_size"], shape, device=cfg["device"]) for _ in "xy")
    c = load_base()
    optimizer, scaler = runtime.optimizer_and_scaler(raw_model, c, device_type, cfg["dtype"])

    def train_step():
        with ctx:
            _, loss = model(x, y)
        scaler.scale(loss).backward()
        runtime.optimizer_step(raw_model.parameters(), optimizer, scaler, c["grad_clip"])

    model.train()
    return train_step


def train_tokens_per_s(raw_model, step, cfg):
    """Training tokens/s: batch_size x train_length over the median time of step()."""
    try:
        seconds = median_seconds(step, cfg["warmup"], cfg["steps"], cfg["device"])
    finally:  # drop the gradients, also after an OOM (the optimizer's state goes with `step`)
        raw_model.zero_grad(set_to_none=True)
    return cfg["batch_size"] * cfg["train_length"] / seconds


def train_mfu(model, cfg, tokens_per_s):
    """Model FLOPs utilization of training (runtime.flops_per_token); None without a peak."""
    if not cfg["peak_tflops"] or not tokens_per_s:
        return None
    c = model.config
    flops = runtime.flops_per_token(model.get_num_params(), c.n_layer, c.n_embd, c.block_size)
    return flops * tokens_per_s / (cfg["peak_tflops"] * 1e12)


def eval_figures(model, length, cfg, ctx):
    """Forward-only tokens/s and peak MB of one sequence of `length` tokens."""
    idx = torch.randint(0, cfg["vocab_size"], (1, length), device=cfg["device"])

    @torch.no_grad()
    def forward():
        with ctx:
            model(idx)

    model.eval()
    seconds = median_seconds(forward, cfg["warmup"], cfg["steps"], cfg["device"])
    return {"tokens_per_s": length / seconds, "peak_mb": peak_mb(forward, cfg["device"])}


def bench_encoding(name, cfg, ctx):
    """The main table's figures of one encoding (a dict, as in the JSON)."""
    raw_model = build_model(name, cfg)
    torch._dynamo.reset()  # a fresh cache per model: a dozen encodings would hit its size limit
    model = torch.compile(raw_model) if cfg["compile"] else raw_model
    step = make_train_step(raw_model, model, cfg, ctx)
    tok_s, error = unless_oom(train_tokens_per_s, raw_model, step, cfg)
    r = dict(encoding=name, params=raw_model.get_num_params(), max_len=raw_model.max_len)
    r["train_tokens_per_s"] = tok_s
    if error:
        r["train_error"] = error
    r.update(train_mfu=train_mfu(raw_model, cfg, tok_s), eval=[])
    for n in cfg["eval_lengths"]:
        rec = {"length": n, "full_attention_matrix_mb": n * n * 4 / 2**20}
        figures, error = None, f"table of {raw_model.max_len} positions"
        if raw_model.max_len is None or n <= raw_model.max_len:
            figures, error = unless_oom(eval_figures, model, n, cfg, ctx)
        if error:
            rec.update(skipped=True, reason=error)
        else:
            rec.update(skipped=False, **figures)
        r["eval"].append(rec)
    r["memory_exponent"] = memory_exponent(r["eval"])
    return r


def memory_exponent(evals):
    """k in peak ~ T^k between the two longest measured lengths (None with fewer than two)."""
    done = [e for e in evals if not e["skipped"] and e["peak_mb"]]
    done = sorted(done, key=lambda e: e["length"])[-2:]
    if len(done) < 2 or done[0]["length"] == done[1]["length"]:
        return None
    (a, b) = done
    return math.log(b["peak_mb"] / a["peak_mb"]) / math.log(b["length"] / a["length"])


def relative_rows(cfg, ctx):
    """Each encoding's training step time over NoPE's in the same round (the median over rounds):
    the encodings take turns, one step each per round, so a drifting machine hits them alike."""
    names = ["nope", *(n for n in cfg["encodings"] if n != "nope")]
    models = {name: build_model(name, cfg) for name in names}
    steps = {name: make_train_step(m, m, cfg, ctx) for name, m in models.items()}
    times = {name: [] for name in names}
    for i in range(cfg["warmup"] + cfg["steps"]):
        for name in names:
            seconds, _ = timed(steps[name], cfg["device"])
            if i >= cfg["warmup"]:
                times[name].append(seconds)
    for name in names:
        seconds = statistics.median(times[name])
        ratio = statistics.median(t / n for t, n in zip(times[name], times["nope"]))
        mfu = train_mfu(models[name], cfg, cfg["batch_size"] * cfg["train_length"] / seconds)
        yield dict(encoding=name, params=models[name].get_num_params(), step_s=seconds,
                   relative=ratio, mfu=mfu)  # fmt: skip


def full_recompute(model, idx, n):
    """Greedy decoding without a cache: a full forward of the (cropped) context per new token."""
    for _ in range(n):
        logits, _ = model(idx if model.max_len is None else idx[:, -model.max_len :])
        idx = torch.cat((idx, logits[:, -1].argmax(-1, keepdim=True)), dim=1)
    return idx


@torch.no_grad()
def generation(name, cfg, ctx):
    """Seconds to generate cfg["generate"] greedy tokens with the cache (and without)."""
    model, n, dev = build_model(name, cfg).eval(), cfg["generate"], cfg["device"]
    g = torch.Generator().manual_seed(0)
    prompt = torch.randint(0, cfg["vocab_size"], (1, cfg["prompt_length"]), generator=g).to(dev)
    with ctx:
        model.generate(prompt, 8, temperature=0)  # warm-up
        seconds, out = timed(lambda: model.generate(prompt, n, temperature=0), dev)
        r = dict(encoding=name, params=model.get_num_params(), new_tokens=n, cached_s=seconds)
        if cfg["uncached"]:
            ref_s, ref = timed(lambda: full_recompute(model, prompt, n), dev)
            r.update(uncached_s=ref_s, speedup=ref_s / seconds, same_tokens=torch.equal(out, ref))
    return r


# -----------------------------------------------------------------------------
# tables: a column is (title, width, cell(result) -> text); the first one is left-aligned


def col(title, width, key, spec="", suffix=""):
    """A column showing result[key] (or key(result)) formatted by spec; "-" for None."""
    get = key if callable(key) else lambda r: r[key]
    return title, width, lambda r: "-" if get(r) is None else format(get(r), spec) + suffix


def eval_cells(e):
    """(tok/s, peak MB) at one evaluation length; a skipped one is one word across both."""
    if e["skipped"]:
        return "", "OOM" if e["reason"] == "out of memory" else "skipped"
    return f"{e['tokens_per_s']:,.0f}", "n/a" if e["peak_mb"] is None else f"{e['peak_mb']:,.1f}"


def params(r):
    return f"{r['params'] / 1e6:.2f}M" if r["params"] >= 1e5 else f"{r['params'] / 1e3:.1f}k"


def columns(cfg, mode):
    """The columns of the table of `mode` (None: the main one)."""
    cols = [col("encoding", 12, "encoding"), col("params", 8, params)]
    mfu = lambda key: [col("MFU", 8, key, ".1%")] * bool(cfg["peak_tflops"])
    if mode == "generate":
        cols += [col("cached s", 10, "cached_s", ".2f"),
                 col("tok/s", 9, lambda r: r["new_tokens"] / r["cached_s"], ",.0f")]  # fmt: skip
        return cols + [col("uncached s", 12, "uncached_s", ".2f"),
                       col("speed-up", 10, "speedup", ".1f", "x"),
                       col("same", 6, "same_tokens")] * cfg["uncached"]  # fmt: skip
    if mode == "relative":
        return cols + [col("ms/step", 10, lambda r: r["step_s"] * 1000, ".1f"),
                       col("relative", 10, "relative", ".3f"), *mfu("mfu")]  # fmt: skip
    cols += [col("train tok/s", 12, "train_tokens_per_s", ",.0f"), *mfu("train_mfu")]
    for i, n in enumerate(cfg["eval_lengths"]):  # each length: tok/s, then peak MB
        cell = lambda j, i=i: lambda r: eval_cells(r["eval"][i])[j]
        cols += [(f"tok/s@{n}", 12, cell(0)), (f"MB@{n}", 10, cell(1))]
    return cols + [col("mem~T^k", 9, "memory_exponent", ".2f")]


def intro(cfg, mode):
    """The title line, then the conditions of the measurements (docs/benchmarks.md explains)."""
    c, shape = cfg, f"{cfg['n_layer']} layers x {cfg['n_embd']} wide x {cfg['n_head']} heads"
    what = {"generate": f"generating {c['generate']} tokens", None: "compiled" * c["compile"]}
    title = ["nanoPE bench", c["device"], c["dtype"], what.get(mode, "")]
    title += ["learned time" * (c["time"] == "learned"), f"{shape}, vocab {c['vocab_size']}"]
    title += [f"torch {torch.__version__}", f"{torch.get_num_threads()} threads"]
    how = f"train: batch {c['batch_size']} x {c['train_length']} tokens, forward+backward+AdamW"
    if mode == "generate":
        how = f"greedy, batch 1, after a random prompt of {c['prompt_length']} tokens"
    elif mode is None:
        how += f" | eval: batch 1, forward only, query blocks of {c['attn_block_size']}"
    if mode != "generate":
        how += f" | medians of {c['steps']} timed steps after {c['warmup']} warmup"
    return [" | ".join(filter(None, title)), how, ""]


def notes(r):
    """What a row could not measure, and why."""
    out = [f"{r['encoding']} training: {r['train_error']}"] if r.get("train_error") else []
    skipped = [e for e in r.get("eval", ()) if e["skipped"]]
    return out + [f"{r['encoding']} @ {e['length']}: skipped ({e['reason']})" for e in skipped]


def print_table(cfg, mode, report, rows):
    """Print each row as it is measured (and save the JSON), then the main table's last lines."""
    cols, later = columns(cfg, mode), []
    line = lambda cells: "".join(
        f"{c:>{w}}" if i else f"{c:<{w}}" for i, (c, (_, w, _)) in enumerate(zip(cells, cols))
    )
    print("\n".join(intro(cfg, mode)))
    header = line([title for title, _, _ in cols])
    print(header + "\n" + "-" * len(header))
    for r in rows:
        report["results"].append(r)
        print(line([cell(r) for _, _, cell in cols]), flush=True)
        if cfg["json"]:  # after every encoding: a crash later loses nothing measured
            write_json(cfg["json"], report, indent=1)
        later += notes(r)
    if mode is None:  # the quadratic reference: one head's full (T, T) float32 score matrix
        mb = ", ".join(f"{n * n * 4 / 2**20:,.1f} MB @ {n}" for n in cfg["eval_lengths"])
        print(f"full (T,T) fp32 matrix, 1 head: {mb}")
    for note in later + [f"wrote {cfg['json']}"] * bool(cfg["json"]):
        print(note)


def main(argv=None):
    cfg = settings(sys.argv[1:] if argv is None else argv)
    dev, mode = cfg["device"], next((m for m in MODES if cfg[m]), None)
    if dev.startswith("cuda"):
        set_tf32(True)  # as train.py with configs/base.py
    for note in filter(None, (cfg["dtype_note"], cfg["compile_note"], cfg["peak_note"])):
        print(f"note: {note}")
    report = {k: cfg[k] for k in ("device", "dtype", "compile")}
    report.update(torch=torch.__version__, threads=torch.get_num_threads())
    report["model"] = {k: cfg[k] for k in ("n_layer", "n_head", "n_embd", "vocab_size")}
    keys = ["train_length", "batch_size", "attn_block_size", "attn_backend", "time", "steps"]
    keys += ["warmup", mode or "eval_lengths"]  # the other tables measure no evaluation lengths
    keys += ["prompt_length"] * (mode == "generate")
    report.update({k: cfg[k] for k in keys}, results=[])
    ctx = autocast(dev, cfg["dtype"])
    if mode == "relative":
        rows = relative_rows(cfg, ctx)
    else:
        measure = generation if mode == "generate" else bench_encoding
        rows = (measure(n, cfg, ctx) for n in cfg["encodings"])
    print_table(cfg, mode, report, rows)
    return report


if __name__ == "__main__":
    run_cli(main)
