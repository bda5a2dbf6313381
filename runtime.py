"""What train.py and the scripts share: device and precision, config checks, FLOPs/MFU, schedule."""

import ctypes
import fcntl
import math
import os
import shutil
import sys
from contextlib import nullcontext
from dataclasses import asdict

import numpy as np
import torch

from configurator import ConfigError, UserError, check_choice

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(device):
    """'auto' -> cuda if there is one, else cpu; a device that is not there is a UserError. On CPU
    denormals flush to zero: strongly decayed logits (FoX, ALiBi far out) make probabilities
    below 2^-126, where x86 matmuls run ~100x slower (docs/training.md, device and precision)."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("no CUDA device: pass --device=cpu")
    if device == "mps" and not torch.backends.mps.is_available():
        raise UserError("no MPS device: pass --device=cpu")
    if device not in ("cpu", "mps") and not device.startswith("cuda"):
        raise UserError(f"device must be auto, cpu, cuda, cuda:N or mps, got '{device}'")
    if device == "cpu":
        torch.set_flush_denormal(True)
        keep_freed_memory()
    return device


def keep_freed_memory():
    """glibc: keep freed blocks up to 32 MB (1 GB in all) for the next tensor instead of faulting
    in fresh pages for every attention tensor (CoPE's CPU step: 1.6x NoPE's; 2.1x without)."""
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False  # not glibc (macOS, musl): its allocator as it is
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # <malloc.h>
    return bool(mallopt(M_MMAP_THRESHOLD, 32 << 20) and mallopt(M_TRIM_THRESHOLD, 1 << 30))


def pick_dtype(dtype, device_type):
    """(dtype name, note or None). Autocast is used on CUDA only: on CPU bf16 autocast is slower
    than float32 on most machines and buys nothing for small models."""
    check_choice("dtype", dtype, ("auto", *DTYPES))
    if device_type != "cuda":
        note = None if dtype in ("auto", "float32") else f"dtype {dtype} applies on CUDA only"
        return "float32", note
    if dtype == "auto":
        return ("bfloat16" if torch.cuda.is_bf16_supported() else "float32"), None
    return dtype, None


def autocast(device, dtype):
    """The context a forward pass runs in for `dtype`: autocast on CUDA, nothing elsewhere (the
    non-orthogonal encodings keep their attention in float32 either way)."""
    if torch.device(device).type == "cuda" and dtype != "float32":
        return torch.autocast(device_type="cuda", dtype=DTYPES[dtype])
    return nullcontext()


def set_tf32(on):
    """TF32 for float32 matmuls and convolutions on CUDA (10-bit mantissa inputs, much faster)."""
    torch.backends.cuda.matmul.allow_tf32 = on
    torch.backends.cudnn.allow_tf32 = on


def has_cpp_compiler():
    """torch.compile on CPU (inductor) builds its kernels with a C++ compiler."""
    return any(shutil.which(c) for c in (os.environ.get("CXX", "g++"), "g++", "clang++"))


def compiles(want, device_type):
    """(does torch.compile run, a note if `want` is not honoured): inductor builds kernels for
    CUDA and, with a C++ compiler, for CPU; MPS stays eager. train.py, bench and preflight agree."""
    if not want or device_type == "cuda" or device_type == "cpu" and has_cpp_compiler():
        return want, None
    need = "needs a C++ compiler (g++); none found" if device_type == "cpu" else "is experimental"
    return False, f"torch.compile on {device_type.upper()} {need}: running eager"


# -----------------------------------------------------------------------------
# the model of a training config


TRAIN_POSITIONS = ("index", "randomized")
# The valid range of each numeric training key (a square bracket includes its end); the model's
# keys (n_layer, block_size, dropout, ...) are GPTConfig's to check (model.py).
RANGES = {
    "batch_size": "[1, inf)", "gradient_accumulation_steps": "[1, inf)", "eval_iters": "[1, inf)",
    "eval_interval": "[1, inf)", "log_interval": "[1, inf)", "max_iters": "[0, inf)",
    "warmup_iters": "[0, inf)", "lr_decay_iters": "[0, inf)", "learning_rate": "(0, inf)",
    "weight_decay": "[0, inf)", "beta1": "[0, 1)", "beta2": "[0, 1)", "grad_clip": "[0, inf)",
    "seed": "[0, 4294967295]", "peak_tflops": "[0, inf)",  # seed: numpy's range
}  # fmt: skip


def check_range(key, value):
    """A ConfigError naming key, value and RANGES[key] if value is outside it (NaN always is)."""
    valid = RANGES[key]
    lo, hi = valid[1:-1].split(", ")
    above = float(lo) <= value if valid[0] == "[" else float(lo) < value
    if not (above and (value <= float(hi) if valid[-1] == "]" else value < float(hi))):
        finite = hi == "inf" and value < math.inf  # else say the range: got inf or nan
        shown = f"{'>=' if valid[0] == '[' else '>'} {lo}" if finite else f"in {valid}"
        raise ConfigError(f"{key} must be {shown}, got {value}")


def check_config(c, world=1):
    """Every rule on a training config that its types cannot say, as a ConfigError saying what to
    change: the training keys here, the model's through GPTConfig and a tiny run of the encoding.
    world: the DDP processes (torchrun's WORLD_SIZE), which share the micro-steps."""
    check_choice("init_from", c["init_from"], ("scratch", "resume"))
    pick_dtype(c["dtype"], "cpu")  # its rule on the dtype's name
    for key in RANGES:
        check_range(key, c[key])
    if c["decay_lr"] and not 0 <= c["min_lr"] <= c["learning_rate"]:
        lr = c["learning_rate"]
        raise ConfigError(f"min_lr must be in [0, learning_rate={lr}], got {c['min_lr']}")
    check_choice("train_positions", c["train_positions"], TRAIN_POSITIONS)
    if c["max_train_position"] and c["train_positions"] != "randomized":
        raise ConfigError("max_train_position applies only with train_positions='randomized'")
    if c["gradient_accumulation_steps"] % world:
        n = c["gradient_accumulation_steps"]
        raise ConfigError(
            f"gradient_accumulation_steps ({n}) must be a multiple of the {world} processes"
        )
    check_model(c)


def max_train_position(c):
    """The bound of randomized training positions (0 -> 8 x block_size), 0 for index ones."""
    if c["train_positions"] != "randomized":
        return 0
    return c["max_train_position"] or 8 * c["block_size"]


def gpt_config(c, vocab_size=256):
    """The GPTConfig of training config c; its rules (GPTConfig.__post_init__) as ConfigErrors."""
    from model import GPTConfig

    keys = ("n_layer", "n_head", "n_embd", "block_size", "bias", "dropout", "attn_dropout")
    keys += ("encoding", "encoding_kwargs", "attn_backend", "time", "time_shared")
    try:
        return GPTConfig(
            **{k: c[k] for k in keys},
            vocab_size=vocab_size,
            max_train_position=max_train_position(c),
        )
    except ValueError as e:
        raise ConfigError(str(e)) from e


def hold_lock(directory, fix):
    """directory/.lock, held until the returned file is closed or the process ends (even by
    SIGKILL): a second holder is refused, naming the first and offering `fix`."""
    try:
        os.makedirs(directory, exist_ok=True)
        f = open(os.path.join(directory, ".lock"), "a+")
    except OSError as e:
        raise UserError(f"cannot write to {directory}: {e.strerror}; {fix}") from None
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        who, wait = f.read().strip() or "another process", "wait for it to end, or stop it"
        raise UserError(f"{directory} is in use by {who}: {wait}, or {fix}") from None
    except OSError as e:  # a file system without flock (e.g. Lustre mounted without -o flock)
        print(f"note: cannot lock {directory} ({e}); make sure no other process writes there")
    f.truncate(0)
    me = os.path.basename(sys.argv[0]) or "python"
    print(f"{me} (pid {os.getpid()} on {os.uname().nodename})", file=f, flush=True)
    return f


def build_gpt(c, vocab_size, saved_args=None):
    """train.py's GPT of config c, its vocabulary padded to a multiple of 64 (faster matmuls).
    saved_args: a checkpoint's model_args; its architecture wins (dropouts, kernel may change)."""
    from model import GPT, GPTConfig

    args = asdict(gpt_config(c, (vocab_size + 63) // 64 * 64))
    if saved_args is not None:
        free = ("dropout", "attn_dropout", "attn_backend")
        args.update({k: v for k, v in saved_args.items() if k not in free})
    return GPT(GPTConfig(**args))


def optimizer_and_scaler(model, c, device_type, dtype):
    """(AdamW of config c, grad scaler); the scaler acts on float16 (bfloat16: float32's range)."""
    hyper = c["weight_decay"], c["learning_rate"], (c["beta1"], c["beta2"])
    scaler = torch.amp.GradScaler(device_type, enabled=dtype == "float16")
    return model.configure_optimizers(*hyper, device_type), scaler


def optimizer_step(params, optimizer, scaler, grad_clip, update=True):
    """After the backward of the scaled loss: the gradients' global norm clipped at grad_clip (0:
    off), AdamW's update (none if not update, or inf/NaN), the scale adjusted, gradients freed."""
    if grad_clip > 0.0:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
    if update:
        scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)


def random_positions(rng, rows, T, bound):
    """(rows, T) int64: each row T distinct positions drawn uniformly from [0, bound), sorted
    (Ruoss et al. 2023). One row at a time: a (rows, bound) permutation costs memory in bound."""
    rows = [rng.choice(bound, size=T, replace=False, shuffle=False) for _ in range(rows)]
    return np.sort(np.stack(rows), axis=1).astype(np.int64)


def check_model(c):
    """Build the encoding of config c alone and run it once on tiny inputs (cheap), so that bad
    encoding_kwargs fail in one line before any data work, then its clock (time="learned")."""
    from clock import make_clock
    from encoding import build_encoding

    config = gpt_config(c)
    try:
        pe = build_encoding(config)
        if pe.has_embed:  # every position training reaches must have a row
            pe.embed(torch.arange(max(c["block_size"], config.max_train_position)))
        pos = torch.arange(c["block_size"])[-64:]  # 8 queries over the last (at most) 64 keys
        k = torch.randn(1, c["n_head"], len(pos), c["n_embd"] // c["n_head"])
        with torch.no_grad():
            scores = pe.scores(k[:, :, -8:], k, pos[-8:], pos)
        if not scores[:, :, pos[None, :] <= pos[-8:, None]].isfinite().all():  # keys it may see
            raise ValueError("its attention scores are not finite (NaN or inf) at these settings")
        make_clock(config, pe)
    except (ValueError, TypeError, RuntimeError, ZeroDivisionError, IndexError) as e:
        raise ConfigError(f"encoding_kwargs={c['encoding_kwargs']!r}: {e}") from e


def config_warnings(c, device_type):
    """One line each, for settings that make a run meaningless (docs/training.md)."""
    from data.prepare import KNOWN

    warmup, iters, data, decay = c["warmup_iters"], c["max_iters"], c["data_dir"], c["decay_lr"]
    ours = os.listdir(data) if os.path.isdir(data) else []
    names = set(KNOWN) | {d for d in ours if os.path.isfile(os.path.join(data, d, "meta.json"))}
    named = [p for p in os.path.normpath(c["out_dir"]).split(os.sep) if p in names]
    last = lr_at(iters - 1, c)
    rules = [
        (decay and 0 < iters <= warmup, f"warmup_iters={warmup} >= max_iters={iters}: the LR "
         f"stays in warmup (last {last:.1e}, peak {c['learning_rate']}): lower warmup_iters"),
        (decay and 0 < c["lr_decay_iters"] <= warmup, f"lr_decay_iters={c['lr_decay_iters']} <= "
         f"warmup_iters={warmup}: no cosine, the LR falls to min_lr right after the warmup"),
        (c["compile"] and device_type == "cpu" and has_cpp_compiler(), "compile=True on CPU: "
         "compiling takes seconds to minutes, and small models step no faster (--compile=False)"),
        (named and c["dataset"] not in named, f"out_dir={c['out_dir']} is named after another "
         f"dataset than dataset={c['dataset']}: pass --out_dir=out/{c['dataset']}/NAME"),
    ]  # fmt: skip
    laptop = "" if device_type == "cuda" else "; a small run on a laptop: see configs/demo/*.py"
    return [f"warning: {text}{laptop}" for rule, text in rules if rule]


# -----------------------------------------------------------------------------
# FLOPs, MFU, schedule

# Dense bf16/fp16 tensor-core peak TFLOPS (no sparsity), found by a substring of the device name:
# the first match wins, so specific names come before general ones. MFU is quoted against it (as
# PaLM and nanoGPT do), also for float32 (TF32) runs.
PEAK_TFLOPS = (
    ("H100 PCIe", 756), ("H100 NVL", 835), ("H100", 989), ("H200", 989), ("A100", 312),
    ("L40S", 362), ("L4", 121), ("RTX 4090", 165), ("RTX 3090", 71), ("V100", 125), ("T4", 65),
)  # fmt: skip


def peak_tflops(device, configured=0.0):
    """(peak TFLOPS or None, note or None): `configured` if set (--peak_tflops), else from
    PEAK_TFLOPS for a CUDA device; None for an unknown GPU and on CPU/MPS."""
    if configured > 0:
        return configured, None
    if not device.startswith("cuda"):
        return None, None
    name = torch.cuda.get_device_name(device)
    for key, tflops in PEAK_TFLOPS:
        if key in name:
            return float(tflops), None
    return None, f"no peak TFLOPS known for {name}: pass --peak_tflops=X to see MFU"


def flops_per_token(n_params, n_layer, n_embd, block_size):
    """Model FLOPs of one training token, forward + backward: 6N for the weights, and per layer
    6 n_embd T for attention (q.k and the sum over v: 2 n_embd each per key, ~T/2 keys causally,
    x3 with the backward). PaLM (appendix B) counts the full square, 12 n_layer n_embd T."""
    return 6 * n_params + 6 * n_layer * n_embd * block_size


def lr_at(it, c):
    """Linear warmup from ~0 to learning_rate over warmup_iters, then a cosine down to min_lr at
    lr_decay_iters (0: max_iters), then min_lr (nanoGPT's schedule)."""
    lr_decay_iters = c["lr_decay_iters"] or c["max_iters"]
    if not c["decay_lr"]:
        return c["learning_rate"]
    if it < c["warmup_iters"]:
        return c["learning_rate"] * (it + 1) / (c["warmup_iters"] + 1)
    if it > lr_decay_iters:
        return c["min_lr"]
    ratio = (it - c["warmup_iters"]) / max(1, lr_decay_iters - c["warmup_iters"])
    coeff = 0.5 * (1.0 + math.cos(math.pi * ratio))  # 1 -> 0
    return c["min_lr"] + coeff * (c["learning_rate"] - c["min_lr"])


def fmt_duration(seconds):
    """12s, 3m05s, 2h07m."""
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"
