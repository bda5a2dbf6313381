"""
Prove a setup before an overnight sweep: train a few steps of each encoding the way train.py will
(dtype, TF32, torch.compile) and in float32 eager, from the same weights and batches; a NaN, a
drift above tolerance or an exception FAILs (exit 1). Protocol, tolerances: docs/training.md.

    python scripts/preflight.py                   # CUDA: configs/base.py; CPU: configs/demo/base.py
    python scripts/preflight.py configs/base.py --encodings=alibi,rope --steps=3  # any config key
    python scripts/preflight.py --sweep=configs/sweeps/wikitext103.py  # its runs; its training time
"""

import copy
import glob
import math
import os
import statistics
import sys
import time
from functools import partial
from unittest import mock

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # repo root

import numpy as np
import torch

import attention
import runtime
from attention import route
from configurator import UserError, check_choice, load_config, parse_args, run_cli, split_argv
from data.prepare import load_meta
from runtime import build_gpt, fmt_duration, random_positions, resolve_device, set_tf32
from scripts.runs import flag, load_sweep

# preflight's own options; every other --key=value is a config override, as in train.py
DEFAULTS = dict(
    encodings="",  # comma-separated config files beside CONFIG (runs of --sweep), e.g. alibi,rope
    steps=5,  # training steps per path
    eval_factor=4,  # logits are also compared at eval_factor x block_size
    loss_tol=0.0,  # max relative loss drift; 0: by precision (TOLERANCES)
    logits_tol=0.0,  # max relative logits drift; 0: by precision
    vocab_size=0,  # tokens are drawn from [0, vocab_size); 0: the dataset's (see vocab_size())
    sweep="",  # a sweep file (configs/sweeps/*.py) instead of CONFIG: check its runs, estimate it
)
# the checked path's precision -> (logits, loss) tolerance, >= 5x the drifts of correct setups:
TOLERANCES = {
    "float32": (1e-4, 1e-4),  # compiled, CPU: 3e-7, 2e-7 (demo)
    "tf32": (5e-3, 1e-3),  # float32 + TF32 on CUDA: 3e-4, 1e-5 (demo)
    "float16": (5e-3, 1e-3),  # autocast: 5e-4, 1e-5 (demo)
    "bfloat16": (5e-2, 5e-3),  # autocast: 4e-3 (demo), 8e-3 (GPT-2); 3e-5, 4e-5
}
# the vocabularies of the datasets data/prepare.py builds on its own, before they are built
KNOWN_VOCAB = {"demo": 256, "wikitext103": 50257, "wikitext103_bytes": 256}


def setup_files(config_file, names, sweep=None):
    """{name: [config file, --key=value...]} of the setups to check: the runs of a sweep file (with
    the overrides scripts/runs.py passes train.py), the config files beside a base.py, or CONFIG."""
    stem = lambda path: os.path.splitext(os.path.basename(path))[0]
    where = config_file if sweep else os.path.dirname(config_file) or "."
    if sweep:
        flags = lambda r: [flag(k, v) for k, v in {**sweep["common"], **r["overrides"]}.items()]
        found = {r["name"]: [r["config"], *flags(r)] for r in sweep["runs"]}
    elif stem(config_file) != "base":
        if names:
            raise UserError("--encodings picks files beside a base.py; this CONFIG is one setup")
        return {stem(config_file): [config_file]}
    else:
        found = {stem(f): [f] for f in sorted(glob.glob(os.path.join(where, "*.py")))}
        found.pop("base", None)
    if not found:
        raise UserError(f"no encoding config files beside {config_file}")
    for name in names:
        check_choice("--encodings", name, found)  # the setups beside CONFIG, or the sweep's runs
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
    return dtype, runtime.compiles(c["compile"], device_type)[0], tf32, key


# -----------------------------------------------------------------------------
# one path: a few training steps, logits at two lengths


def run_path(model0, c, device, batches, long_x, dtype, compile, tf32, skip=(), sdpa=(0, 0)):
    """Train a copy of model0 on batches with every dropout off (sdpa: attention on SDPA when
    evaluating, when training): losses, logits of the first window and logits_long of long_x at
    the initial weights, step times, peak bytes (CUDA), the steps a float16 grad scaler skipped.
    skip: steps whose update is dropped (the reference drops those the checked path skipped)."""
    device_type = device.split(":")[0]
    set_tf32(tf32)
    # autocast on CPU too (runtime.autocast is CUDA only): the tests check low precision there
    ctx = torch.autocast(device_type, runtime.DTYPES[dtype], enabled=dtype != "float32")
    out = dict(losses=[], times=[], skipped=[], logits_long=None)
    model = copy.deepcopy(model0).to(device)
    attns = [block.attn for block in model.transformer.h]
    for attn in attns if sdpa[0] else ():
        attn.backend = "sdpa"
    if long_x is not None:  # eager on a copy, as eval_lengths.py runs it (compiled: one length)
        with torch.no_grad(), ctx:
            out["logits_long"] = copy.deepcopy(model).eval()(long_x.to(device))[0].float().cpu()
    for m in (m for m in model.modules() if isinstance(m, torch.nn.Dropout)):
        m.p = 0.0  # only without random masks do two paths compare
    for attn in attns:  # attention dropout off too; sdpa[1]: training stays on the blocks it took
        attn.attn_dropout, attn.backend = 0.0, "sdpa" if sdpa[1] else attn.backend
    optimizer, scaler = runtime.optimizer_and_scaler(model, c, device_type, dtype)
    torch._dynamo.reset()  # a fresh cache per model: a dozen encodings would hit its limit
    fwd = torch.compile(model) if compile else model
    if device_type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for i, batch in enumerate(batches):
        x, y, pos = (None if t is None else t.to(device) for t in batch)
        t0 = time.perf_counter()
        for group in optimizer.param_groups:
            group["lr"] = runtime.lr_at(i, c)
        with ctx:
            logits, loss = fwd(x, y, pos=pos)
        scale = scaler.get_scale() if scaler.is_enabled() else None
        scaler.scale(loss).backward()
        runtime.optimizer_step(model.parameters(), optimizer, scaler, c["grad_clip"], i not in skip)
        if scale is not None and scaler.get_scale() < scale:
            out["skipped"].append(i)  # inf/NaN gradients at this scale: no update was made
        out["losses"].append(loss.item())  # .item() waits for the GPU: step times are honest
        out["times"].append(time.perf_counter() - t0)
        if i == 0:
            out["logits"] = logits.detach()[0].float().cpu()  # one window is plenty
    out["peak"] = torch.cuda.max_memory_allocated(device) if device_type == "cuda" else None
    return out


def routes(model, c, x, pos, device_type):
    """(training route, evaluation route) on device_type and on CUDA, as attention.route()
    decides them for what it gets in model's training forward of x at pos (train.py's call) and
    evaluation forward of x (eval_lengths.py's), training compiled where train.py would compile."""
    with mock.patch.object(attention, "route", wraps=route) as spy:
        model(x, x, pos=pos)
        with torch.no_grad():
            model.eval()(x)
    model.train()
    (a, kw), (a_eval, kw_eval) = spy.call_args_list[0], spy.call_args_list[-1]
    compiled = lambda d: runtime.compiles(c["compile"], d)[0]  # e.g. no g++: eager on the CPU
    ask = lambda d: (route(*a[:3], d, *a[4:], **{**kw, "compiled": compiled(d)}),
                     route(*a_eval[:3], d, *a_eval[4:], **kw_eval))  # fmt: skip
    return ask(device_type), ask("cuda")


def inputs(c, V, steps, L, device):
    """train.py's model of config c (its dropouts on; on the CPU until a path copies it), steps
    batches of random tokens in [0, V) at positions drawn as train.py draws them, a sequence of L
    tokens (None past a learned table), and routes() here and on CUDA."""
    B, T = c["batch_size"], c["block_size"]
    torch.manual_seed(c["seed"])
    model, bound = build_gpt(c, V), runtime.max_train_position(c)
    gen, rng = torch.Generator().manual_seed(c["seed"]), np.random.default_rng(c["seed"])
    tokens = lambda *shape: torch.randint(0, V, shape, generator=gen)
    drawn = lambda n: torch.from_numpy(random_positions(rng, n, T, bound))
    pos = lambda n: drawn(n) if bound else None
    batches = [(tokens(B, T), tokens(B, T), pos(B)) for _ in range(steps)]
    long_x = None if model.max_len is not None and L > model.max_len else tokens(1, L)
    return model, batches, long_x, routes(model, c, tokens(1, T), pos(1), device.split(":")[0])


def check(c, opt, device, V):
    """(ok, one line, training tok/s) for one encoding setup, on random tokens in [0, V)."""
    dtype, compile, tf32, key = precision(c, device)
    logits_tol = opt["logits_tol"] or TOLERANCES[key][0]
    loss_tol = opt["loss_tol"] or TOLERANCES[key][1]
    B, T, L = c["batch_size"], c["block_size"], c["block_size"] * opt["eval_factor"]
    model0, batches, long_x, (here, on_cuda) = inputs(c, V, opt["steps"], L, device)
    run = partial(run_path, model0, c, device, batches, long_x)
    checked = run(dtype, compile, tf32, sdpa=(0, here[0] == "blocks"))
    ref = run("float32", False, False, checked["skipped"], sdpa=(1, 1))

    losses = list(zip(checked["losses"], ref["losses"]))
    loss_drift = max(abs(a - b) / abs(b) for a, b in losses)
    rel = lambda a, b: ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()  # to b's scale
    drifts = [(T, rel(checked["logits"], ref["logits"]))]
    if long_x is not None:
        drifts.append((L, rel(checked["logits_long"], ref["logits_long"])))
    times = checked["times"]  # the first step compiles; the median shrugs off a busy machine
    typical = statistics.median(times[1:] or times)
    speed = B * T / typical
    figures = f"loss {loss_drift:.1e}  logits " + "  ".join(f"{d:.1e} @{n}" for n, d in drifts)
    if long_x is None:
        figures += f"  (no @{L}: positions end at {model0.max_len})"
    peak = "n/a" if checked["peak"] is None else f"{checked['peak'] / 2**20:,.0f}"
    figures += f"  | train {here[0]}, eval {here[1]}  {speed:,.0f} tok/s  {peak} MB"
    if compile and len(times) > 1:
        figures += f"  compile {times[0] - typical:.0f}s"
    if checked["skipped"]:
        steps = ", ".join(str(i + 1) for i in checked["skipped"])
        figures += f"  (float16 grad scaler skipped step {steps}; so did the reference)"
    if not device.startswith("cuda"):  # pick_dtype asked as on a GPU with bfloat16 (A100, H100)
        with mock.patch.object(torch.cuda, "is_bf16_supported", return_value=True):
            key = precision(c, "cuda")[3]
        figures += f"  | CUDA {key}: train {on_cuda[0]}, eval {on_cuda[1]}"
    worst_n, worst = max(drifts, key=lambda nd: nd[1] if math.isfinite(nd[1]) else math.inf)
    nan = [(i, a, b) for i, (a, b) in enumerate(losses) if not math.isfinite(a)]
    if nan:
        i, a, b = nan[0]
        also = "" if math.isfinite(b) else " (in float32 eager too)"
        fail = f"loss became {a} at step {i + 1}{also}"
    elif not math.isfinite(worst):
        fail = f"logits not finite at length {worst_n}"
    elif loss_drift > loss_tol:
        fail = f"loss drift {loss_drift:.1e} > {loss_tol:g}"
    elif worst > logits_tol:
        fail = f"logits drift {worst:.1e} > {logits_tol:g} at length {worst_n}"
    else:
        return True, figures, speed
    return False, f"{fail}; {figures}", speed


def estimate(sweep, setups, speeds):
    """The sweep's training time here, one run after another: per run and seed, max_iters x
    tokens per iteration / the tok/s measured for it."""
    print(f"sweep {sweep['name']}: training time at the tok/s above, one run at a time")
    total = 0.0
    for r in (r for r in sweep["runs"] if r["name"] in speeds):
        c, speed = setups[r["name"]][0], speeds[r["name"]]
        n = c["max_iters"] * c["gradient_accumulation_steps"] * c["batch_size"] * c["block_size"]
        n *= len(r.get("seeds", sweep["seeds"]))
        total += n / speed
        print(f"  {r['name']:<18} {n:,} tokens at {speed:,.0f} tok/s: {fmt_duration(n / speed)}")
    left = ", ".join(r["name"] for r in sweep["runs"] if r["name"] not in speeds)
    left = f" without {left} (not measured)" if left else ""
    print(f"  total {fmt_duration(total)}{left}; evaluation is not timed here: not included")


# -----------------------------------------------------------------------------


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if "-h" in argv or "--help" in argv:
        print("any config key is also accepted (--compile=True, --batch_size=4, ...)")
        parse_args(["--help"], DEFAULTS, positional="config")  # prints the keys, exits
    own = [a for a in argv if a.startswith("--") and a[2:].partition("=")[0] in DEFAULTS]
    opt = parse_args(own, DEFAULTS)
    config_file, overrides = split_argv([a for a in argv if a not in own])
    sweep = load_sweep(opt["sweep"]) if opt["sweep"] else None
    if sweep and config_file:
        raise UserError("give a CONFIG or a --sweep file, not both")
    config_file = opt["sweep"] or config_file
    if config_file is None:  # configs/base.py on CUDA, configs/demo/base.py elsewhere
        demo = "" if resolve_device("auto") == "cuda" else "demo"
        config_file = os.path.relpath(os.path.join(__file__, "../../configs", demo, "base.py"))
    if opt["steps"] < 3 or opt["eval_factor"] < 1:  # steps: one compiles, two or more timed
        raise UserError("--steps must be at least 3 and --eval_factor at least 1")
    names = [n.strip() for n in opt["encodings"].split(",") if n.strip()]
    setups, problems = {}, {}  # every setup's config error, before any work: {error: setups}
    for name, args in setup_files(config_file, names, sweep).items():
        try:
            runtime.check_config(c := load_config([*args, *overrides]))
            setups[name] = c, vocab_size(c, opt)
        except UserError as e:
            problems.setdefault(str(e), []).append(name)
    n = len(setups) + sum(map(len, problems.values()))  # an error of every setup: no names
    if errors := [e if len(ns) == n else f"{', '.join(ns)}: {e}" for e, ns in problems.items()]:
        raise UserError("\nerror: ".join(errors))  # a line each; run_cli: exit status 2

    first = next(iter(setups.values()))[0]
    device = resolve_device(first["device"])
    dtype, compile, tf32, key = precision(first, device)
    how = f"{dtype}{', TF32' if tf32 else ''}{', compiled' if compile else ', eager'}"
    size = f"{first['n_layer']} layers x {first['n_embd']} wide | {opt['steps']} steps of"
    print(
        f"preflight {config_file} | {device} | checked: {how} vs float32 eager | {size} "
        f"{first['batch_size']} x {first['block_size']} random tokens (no dataset needed)"
    )
    if key == "float32" and not compile:
        print(f"note: this config trains in float32 eager on {device}: both paths are the same "
              "(pass --compile=True to check torch.compile)")  # fmt: skip
    failed, speeds, t_start = [], {}, time.time()
    for name, (c, V) in setups.items():
        try:
            ok, line, speeds[name] = check(c, opt, resolve_device(c["device"]), V)
        except Exception as e:  # one setup's crash is its FAIL line, the others still run
            ok, line = False, f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0]}"
        failed += [name] * (not ok)
        print(f"{'OK  ' if ok else 'FAIL'} {name:<18} {line}", flush=True)
    failures = f"; failed: {', '.join(failed)}" if failed else ""
    print(f"{len(setups) - len(failed)}/{len(setups)} OK in {time.time() - t_start:.0f}s{failures}")
    if sweep:
        estimate(sweep, setups, speeds)
    return 1 if failed else 0


if __name__ == "__main__":
    run_cli(lambda: sys.exit(main()))
