"""
Prove a setup before an overnight sweep: for every encoding of a config, train a few steps the way
train.py will (its dtype, TF32, torch.compile) and the same steps in float32 eager, and compare.

    python scripts/preflight.py                   # CUDA: configs/base.py; CPU: configs/demo/base.py
    python scripts/preflight.py configs/base.py --encodings=alibi,rope
    python scripts/preflight.py configs/t5.py      # just that one encoding setup
    python scripts/preflight.py --steps=3 --batch_size=4 --n_layer=4     # quicker, smaller

Which encodings: every config file beside CONFIG except base.py (configs/*.py for configs/base.py,
configs/demo/*.py for configs/demo/base.py) is one encoding setup, loaded the way train.py loads
it; --encodings=a,b picks some by file name. A CONFIG that is not base.py is checked alone. Any
config key can be overridden as in train.py (--compile=True, --device=cpu, --batch_size=4, ...).

Per setup, from the same initial weights and the same batches:
- the checked path trains as train.py would: train.pick_dtype's dtype (bfloat16 autocast on most
  GPUs, float32 on CPU), TF32 matmuls on CUDA, torch.compile when the config says compile=True;
- the reference path trains the same steps in float32, eager, TF32 off, with attention on SDPA:
  so where the checked path runs FlexAttention (attn_backend "auto" on CUDA, for the encodings
  with a score_mod; "flex"), its kernels are compared with SDPA's, in training and in the long
  evaluation forward; the kernel of the checked path is printed ("flex" or "sdpa");
- both take `steps` AdamW steps of batch_size random-token windows of block_size (uniform over
  the dataset's vocabulary: no dataset is needed, so this runs on a new machine before
  data/prepare.py has), at the learning rates train.py starts with (train.lr_at: the warmup;
  at the peak rate from step 1, generator_jordan's learnable decay amplifies 1e-7 differences
  to 5e-4 in 5 steps, in any precision), with dropout off (its masks could not match);
- compared: the loss of every step, and the logits at the initial weights at block_size (the
  first training forward) and at eval_factor x block_size (one window, eager, as
  scripts/eval_lengths.py runs it: where extrapolation paths such as query blocks run).
Differences are relative: |checked - ref| / |ref| for losses, max |checked - ref| / max |ref|
for logits. A setup FAILs on a NaN/inf loss or logit, a drift above tolerance, or an exception
(its first line is printed). The exit code is 1 if any setup fails, 2 for a usage error.

Tolerances (--logits_tol, --loss_tol; 0 = by the precision of the checked path) are set from
measurements of correct setups with a margin of 5x or more: the largest drift over every demo
encoding but generator_jordan (below), and over rope, alibi and t5 at GPT-2 small's width,
vocabulary and length with 4 of its 12 layers (on CPU, 5 steps demo / 3 steps GPT-2; bfloat16
and float16 are CPU autocast, TF32 is emulated by rounding matmul inputs to 10 bits):
    checked path                     logits tol  loss tol   measured logits     measured loss
    float32, compiled (CPU)          1e-4        1e-4       3e-7 (demo)         2e-7 (demo)
    float32 + TF32 (CUDA)            5e-3        1e-3       3e-4 (demo)         1e-5 (demo)
    float16 autocast                 5e-3        1e-3       5e-4 (demo)         1e-5 (demo)
    bfloat16 autocast                5e-2        5e-3       4e-3 demo, 8e-3 GPT-2   3e-5, 4e-5
A real defect moves them more: in the tests, a 5% error in compiled RoPE or ALiBi's bias dropped
under autocast FAILs. At the initial weights attention adds little to the logits, so a defect that
only changes attention by a few percent can hide under the bfloat16 tolerance; the loss after a
few steps is the second line of defence. generator_jordan FAILs in
bfloat16 (logits 0.7 at GPT-2 size, 0.16 at 4x in the demo) and with TF32 (0.08 at 4x, demo):
its polynomial logits amplify the rounding of q and k: a real finding, not noise, and why its
configs train in float32 with tf32=False (checked as such, they pass).
Also printed per setup: tok/s of the checked path's training steps after the first (which pays
for compilation; its extra time is printed as "compile"), and peak memory: on CUDA
torch.cuda.max_memory_allocated over the training steps; on CPU the weights and optimizer state
plus what one training step allocates on top (torch's profiler, scripts/bench.py's
cpu_peak_bytes); n/a elsewhere.
"""

import copy
import glob
import math
import os
import statistics
import sys
import time
from contextlib import nullcontext
from functools import partial

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # repo root

import torch

import runtime
from attention import flex_training_note, has_flex_path, use_flex
from configurator import UserError, load_config, nearest_hint, parse_args, run_cli, split_argv
from data.prepare import load_meta
from model import GPT, GPTConfig
from runtime import resolve_device, set_tf32
from scripts.bench import cpu_peak_bytes

# preflight's own options; every other --key=value is a config override, as in train.py
DEFAULTS = dict(
    encodings="",  # comma-separated config file names beside CONFIG, e.g. alibi,rope; empty: all
    steps=5,  # training steps per path
    eval_factor=4,  # logits are also compared at eval_factor x block_size
    loss_tol=0.0,  # max relative loss drift; 0: by precision (TOLERANCES)
    logits_tol=0.0,  # max relative logits drift; 0: by precision
    vocab_size=0,  # tokens are drawn from [0, vocab_size); 0: the dataset's (see vocab_size())
)
# precision of the checked path -> (logits tol, loss tol); see the module docstring
TOLERANCES = {
    "float32": (1e-4, 1e-4),
    "tf32": (5e-3, 1e-3),
    "float16": (5e-3, 1e-3),
    "bfloat16": (5e-2, 5e-3),
}
# the vocabularies of the datasets data/prepare.py builds on its own, before they are built
KNOWN_VOCAB = {"demo": 256, "wikitext103": 50257, "wikitext103_bytes": 256}
DTYPES = runtime.DTYPES


# -----------------------------------------------------------------------------
# which setups, and how they train


def default_config():
    """configs/base.py on CUDA, configs/demo/base.py elsewhere (a CPU runs the demo)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    demo = "" if resolve_device("auto") == "cuda" else "demo"
    return os.path.relpath(os.path.join(root, "configs", demo, "base.py"))


def setup_files(config_file, names):
    """{name: path} of the encoding setups to check."""
    if os.path.basename(config_file) != "base.py":
        if names:
            raise UserError("--encodings picks files beside a base.py; this CONFIG is one setup")
        return {os.path.splitext(os.path.basename(config_file))[0]: config_file}
    folder = os.path.dirname(config_file)
    files = sorted(glob.glob(os.path.join(folder, "*.py")))
    found = {os.path.splitext(os.path.basename(f))[0]: f for f in files}
    found.pop("base", None)
    if not found:
        raise UserError(f"no encoding config files beside {config_file}")
    for name in names:
        if name not in found:
            raise UserError(
                f"unknown setup '{name}' in --encodings{nearest_hint(name, found)}; "
                f"valid in {folder or '.'}: {', '.join(found)}"
            )
    return {n: found[n] for n in names} if names else found


def vocab_size(c, opt):
    """Vocabulary of the random tokens: --vocab_size, the dataset's meta.json, or KNOWN_VOCAB."""
    if opt["vocab_size"] > 0:
        return opt["vocab_size"]
    dataset_dir = os.path.join(c["data_dir"], c["dataset"])
    if os.path.isfile(os.path.join(dataset_dir, "meta.json")):
        return load_meta(dataset_dir)["vocab_size"]
    if c["dataset"] in KNOWN_VOCAB:
        return KNOWN_VOCAB[c["dataset"]]
    raise UserError(f"cannot tell the vocabulary of dataset '{c['dataset']}': pass --vocab_size=N")


def precision(c, device):
    """(dtype name, compile?, TF32?, precision key of TOLERANCES), by train.py's rules."""
    device_type = device.split(":")[0]
    dtype, _ = runtime.pick_dtype(c["dtype"], device_type)
    tf32 = device_type == "cuda" and c["tf32"]  # as train.py sets it
    key = "tf32" if dtype == "float32" and tf32 else dtype
    return dtype, c["compile"], tf32, key


# -----------------------------------------------------------------------------
# one path: a few training steps, logits at two lengths


def run_path(model0, c, device, batches, long_x, dtype, compile, tf32, skip=None, sdpa=False):
    """Train a copy of model0 on batches (sdpa: every attention on SDPA). Returns a dict: losses,
    logits (CPU, float32) of the first window at the initial weights and logits_long of long_x,
    step times, peak bytes, and skipped: the steps a float16 grad scaler skipped. skip=None is the
    checked path (memory is measured); the reference passes the checked path's skipped steps and
    drops those updates."""
    device_type = device.split(":")[0]
    set_tf32(tf32)
    ctx = (
        torch.autocast(device_type=device_type, dtype=DTYPES[dtype])
        if dtype != "float32"
        else nullcontext()
    )
    out = dict(losses=[], times=[], skipped=[], peak=None, logits_long=None)
    model0 = copy.deepcopy(model0)
    for block in model0.transformer.h if sdpa else ():
        block.attn.backend = "sdpa"
    if long_x is not None:  # eager, as scripts/eval_lengths.py runs it, on a copy of its own:
        model = copy.deepcopy(model0).to(device).eval()  # the compiled one sees one length only
        with torch.no_grad(), ctx:
            out["logits_long"] = model(long_x.to(device))[0].float().cpu()
        del model
    model = copy.deepcopy(model0).to(device)
    optimizer = model.configure_optimizers(
        c["weight_decay"], c["learning_rate"], (c["beta1"], c["beta2"]), device_type
    )
    lr_decay_iters = c["lr_decay_iters"] or c["max_iters"]
    scaler = torch.amp.GradScaler(device_type, enabled=(dtype == "float16"))
    if compile:
        torch._dynamo.reset()  # a fresh cache per model: a dozen encodings would hit its limit
    fwd = torch.compile(model) if compile else model

    def step(i, x, y):
        for group in optimizer.param_groups:
            group["lr"] = runtime.lr_at(i, c, lr_decay_iters)
        with ctx:
            logits, loss = fwd(x, y)
        scale = scaler.get_scale() if scaler.is_enabled() else None
        scaler.scale(loss).backward()
        if c["grad_clip"] > 0.0:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), c["grad_clip"])
        if skip is None or i not in skip:
            scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        if scale is not None and scaler.get_scale() < scale:
            out["skipped"].append(i)  # inf/NaN gradients at this scale: no update was made
        out["losses"].append(loss.item())  # .item() waits for the GPU: step times are honest
        if i == 0:
            out["logits"] = logits.detach()[0].float().cpu()  # one window is plenty

    if device_type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for i, (x, y) in enumerate(batches):
        x, y = x.to(device), y.to(device)
        if skip is None and device_type == "cpu" and i == len(batches) - 1:
            # CPU keeps no peak statistics: weights and optimizer state, plus what the last step
            # allocates on top (the profiler slows that step down: it is not timed)
            held = [*model.parameters(), *(t for s in optimizer.state.values() for t in s.values())]
            out["peak"] = sum(t.nbytes for t in held) + cpu_peak_bytes(partial(step, i, x, y))
            continue
        t0 = time.perf_counter()
        step(i, x, y)
        out["times"].append(time.perf_counter() - t0)
    if device_type == "cuda":
        out["peak"] = torch.cuda.max_memory_allocated(device)
    return out


def kernel(model, c, device):
    """The attention kernel the checked path trains with: "flex" or "sdpa"."""
    pe, device_type = model.pe[0], device.split(":")[0]
    flex = has_flex_path(pe) and flex_training_note(model.config, pe) is None
    return "flex" if flex and use_flex(c["attn_backend"], device_type, grad=True) else "sdpa"


def rel_diff(a, b):
    """max |a - b| / max |b|: the drift relative to the reference's scale."""
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


def check(c, opt, device, V):
    """(ok, one line) for one encoding setup, on random tokens in [0, V)."""
    dtype, compile, tf32, key = precision(c, device)
    logits_tol = opt["logits_tol"] or TOLERANCES[key][0]
    loss_tol = opt["loss_tol"] or TOLERANCES[key][1]
    B, T = c["batch_size"], c["block_size"]
    L = T * opt["eval_factor"]
    keys = ("n_layer", "n_head", "n_embd", "bias", "encoding", "time", "time_shared")
    model_args = {k: c[k] for k in keys}
    torch.manual_seed(c["seed"])
    model0 = GPT(
        GPTConfig(
            **model_args, block_size=T, dropout=0.0, encoding_kwargs=c["encoding_kwargs"],
            vocab_size=(V + 63) // 64 * 64,  # padded as train.py pads it
            attn_backend=c["attn_backend"], max_train_position=runtime.max_train_position(c),
        )
    )  # fmt: skip
    gen = torch.Generator().manual_seed(c["seed"])
    tokens = lambda *shape: torch.randint(0, V, shape, generator=gen)
    batches = [(tokens(B, T), tokens(B, T)) for _ in range(opt["steps"])]
    long_x = None if model0.max_len is not None and L > model0.max_len else tokens(1, L)

    checked = run_path(model0, c, device, batches, long_x, dtype, compile, tf32)
    skipped = checked["skipped"]
    ref = run_path(model0, c, device, batches, long_x, "float32", False, False, skipped, sdpa=True)

    # the verdict: NaN first, then the drifts
    drifts = [abs(a - b) / abs(b) for a, b in zip(checked["losses"], ref["losses"])]
    loss_drift = max(drifts)
    logit_drifts = [(T, rel_diff(checked["logits"], ref["logits"]))]
    if long_x is not None:
        logit_drifts.append((L, rel_diff(checked["logits_long"], ref["logits_long"])))
    times = checked["times"]  # the first step compiles; the median shrugs off a busy machine
    typical = statistics.median(times[1:] or times)
    tok_s = B * T / typical
    compile_s = times[0] - typical if compile and len(times) > 1 else None

    figures = f"loss {loss_drift:.1e}  logits " + "  ".join(
        f"{d:.1e} @{n}" for n, d in logit_drifts
    )
    if long_x is None:
        figures += f"  (no @{L}: positions end at {model0.max_len})"
    figures += f"  | {kernel(model0, c, device)}  {tok_s:,.0f} tok/s"
    peak = checked["peak"]
    figures += f"  {'n/a' if peak is None else f'{peak / 2**20:,.0f}'} MB"
    if compile_s is not None:
        figures += f"  compile {compile_s:.0f}s"
    if checked["skipped"]:
        steps = ", ".join(str(i + 1) for i in checked["skipped"])
        figures += f"  (float16 grad scaler skipped step {steps}; so did the reference)"

    for i, (a, b) in enumerate(zip(checked["losses"], ref["losses"])):
        if not math.isfinite(a):
            also = "" if math.isfinite(b) else " (in float32 eager too)"
            return False, f"loss became {a} at step {i + 1}{also}"
    for n, d in logit_drifts:
        if not math.isfinite(d):
            return False, f"logits not finite at length {n}; {figures}"
    if loss_drift > loss_tol:
        return False, f"loss drift {loss_drift:.1e} > {loss_tol:g}; {figures}"
    worst_n, worst = max(logit_drifts, key=lambda nd: nd[1])
    if worst > logits_tol:
        return False, f"logits drift {worst:.1e} > {logits_tol:g} at length {worst_n}; {figures}"
    return True, figures


# -----------------------------------------------------------------------------


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if "-h" in argv or "--help" in argv:
        print("any config key is also accepted (--compile=True, --batch_size=4, ...)")
        parse_args(["--help"], DEFAULTS, positional="config")  # prints the keys, exits
    own = [a for a in argv if a.startswith("--") and a[2:].partition("=")[0] in DEFAULTS]
    rest = [a for a in argv if a not in own]
    opt = parse_args(own, DEFAULTS)
    config_file, overrides = split_argv(rest)
    config_file = config_file or default_config()
    if opt["steps"] < 3 or opt["eval_factor"] < 1:  # steps: one compiles, one is profiled (CPU)
        raise UserError("--steps must be at least 3 and --eval_factor at least 1")
    names = [n.strip() for n in opt["encodings"].split(",") if n.strip()]
    setups = {}
    for name, path in setup_files(config_file, names).items():  # every config error before work
        c = load_config([path, *overrides])
        runtime.check_config(c)
        setups[name] = c, vocab_size(c, opt)

    first = next(iter(setups.values()))[0]
    device = resolve_device(first["device"])
    dtype, compile, tf32, key = precision(first, device)
    how = f"{dtype}{', TF32' if tf32 else ''}{', compiled' if compile else ', eager'}"
    print(
        f"preflight {config_file} | {device} | checked: {how} vs float32 eager | "
        f"{first['n_layer']} layers x {first['n_embd']} wide | {opt['steps']} steps of "
        f"{first['batch_size']} x {first['block_size']} random tokens (no dataset needed)"
    )
    if key == "float32" and not compile:
        print(f"note: this config trains in float32 eager on {device}: both paths are the same "
              "(pass --compile=True to check torch.compile)")  # fmt: skip
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    failed, t_start = [], time.time()
    try:
        for name, (c, V) in setups.items():
            try:
                ok, line = check(c, opt, resolve_device(c["device"]), V)
            except Exception as e:  # one setup's crash is its FAIL line, the others still run
                message = (str(e).strip().splitlines() or [""])[0]
                ok, line = False, f"{type(e).__name__}: {message}"
            if not ok:
                failed.append(name)
            print(f"{'OK  ' if ok else 'FAIL'} {name:<18} {line}", flush=True)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
    print(
        f"{len(setups) - len(failed)}/{len(setups)} OK in {time.time() - t_start:.0f}s"
        + (f"; failed: {', '.join(failed)}" if failed else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    run_cli(lambda: sys.exit(main()))
