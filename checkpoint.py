"""
Checkpoints: out_dir/ckpt.pt, written atomically and read with weights_only=True.

A checkpoint is a dict:
    model          state_dict of the plain GPT (never the torch.compile or DDP wrapper)
    model_args     asdict(GPTConfig): enough to rebuild the model
    config         the full training config (configs/base.py keys)
    optimizer      AdamW state_dict;  scaler: GradScaler state_dict (float16 only, else empty)
    iter_num       iterations done;   finished: True once iter_num == max_iters
    best_val_loss, tokens_seen, elapsed_s, tokenizer ("gpt2" | "bytes"), wandb_run_id
    rng            every random state of rank 0: torch, cuda (its device only), numpy, python,
                   the generator of training windows; restoring them makes resume exact
"""

import os
from dataclasses import asdict

import torch

from configurator import UserError
from runtime import resolve_device

CKPT_NAME = "ckpt.pt"


def checkpoint_path(out_dir):
    return out_dir if out_dir.endswith(".pt") else os.path.join(out_dir, CKPT_NAME)


def save_checkpoint(out_dir, ckpt):
    """Write ckpt to out_dir/ckpt.pt atomically: a temporary file is written and fsynced, then
    renamed over the old one, so a crash or SIGKILL at any moment leaves either the previous
    checkpoint or the new one, never half a file."""
    path = checkpoint_path(out_dir)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        torch.save(ckpt, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_checkpoint(out_dir, map_location="cpu", mmap=False):
    """The checkpoint dict in out_dir (or a path to a .pt file). UserError if there is none.
    mmap=True maps tensors from the file lazily: cheap when only the config is needed."""
    path = checkpoint_path(out_dir)
    if not os.path.isfile(path):
        raise UserError(
            f"no checkpoint at {path} (train one with: python train.py CONFIG --out_dir={out_dir})"
        )
    try:
        # weights_only: a checkpoint is data; loading it must not run code
        return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as e:
        raise UserError(f"could not read {path}: {type(e).__name__}: {e}") from e


def saved_config(out_dir):
    """The training config stored in out_dir's checkpoint ({} if none): what `train.py
    --init_from=resume` without a config file starts from (configurator.load_config)."""
    return load_checkpoint(out_dir, map_location="cpu", mmap=True).get("config", {})


def model_args(model):
    """The GPTConfig of model as a plain dict (what the checkpoint stores)."""
    return asdict(model.config)


ROPE_FACTOR = 8.0  # the default --rope_factor of eval_lengths.py and sample.py


def variant_label(rope_scaling=None, rope_factor=ROPE_FACTOR, encoding_kwargs=None):
    """The name of an evaluation-time change of the model ("yarn x8"), "" for the model as
    trained. eval_lengths.json records it; sweeps and plots show each variant as its own row."""
    if rope_scaling:
        return f"{rope_scaling} x{rope_factor:g}"
    return "custom" if encoding_kwargs else ""


def rope_scaling_kwargs(encoding, rope_scaling, rope_factor):
    """encoding_kwargs for RoPE context extension at evaluation time ({} when none is asked).
    An encoding takes it by declaring the methods it supports (a `scalings` class attribute)."""
    from encoding import available_encodings, encoding_class

    if not rope_scaling:
        return {}
    takers = {n: encoding_class(n).scalings for n in available_encodings()}
    takers = {n: s for n, s in takers.items() if s}
    methods = list(dict.fromkeys(m for s in takers.values() for m in s))
    if rope_scaling not in methods:
        raise UserError(f"--rope_scaling must be one of {', '.join(methods)}, got '{rope_scaling}'")
    if encoding not in takers:
        raise UserError(
            f"--rope_scaling applies to {' and '.join(takers)}; this checkpoint uses {encoding}"
        )
    if rope_factor <= 0:
        raise UserError(f"--rope_factor must be positive, got {rope_factor}")
    return {"scaling": rope_scaling, "factor": float(rope_factor)}


def load_model(
    out_dir,
    device="cpu",
    encoding_kwargs_override=None,
    rope_scaling=None,
    rope_factor=ROPE_FACTOR,
    attn_backend="auto",
):
    """(model, ckpt): the GPT saved in out_dir, on `device`, in eval mode.

    encoding_kwargs_override: options merged into the saved encoding_kwargs, for evaluation-time
    changes that keep the weights; an unknown option is a UserError. rope_scaling / rope_factor:
    RoPE context extension (linear, dynamic, yarn, llama3) for rope and damped_rope checkpoints,
    relative to the training length. attn_backend: "auto" (FlexAttention for the bias encodings on
    CUDA, compiled; SDPA elsewhere), "sdpa" or "flex" (attention.use_flex)."""
    from model import GPT, GPTConfig  # here, so that configurator/train import order stays free

    device = resolve_device(device)
    ckpt = load_checkpoint(out_dir, map_location="cpu")
    args = dict(ckpt["model_args"])
    override = dict(encoding_kwargs_override or {})
    override.update(rope_scaling_kwargs(args["encoding"], rope_scaling, rope_factor))
    if override:
        args["encoding_kwargs"] = {**args.get("encoding_kwargs", {}), **override}
    args["attn_backend"] = attn_backend
    try:
        model = GPT(GPTConfig(**args))
    except ValueError as e:  # unknown encoding or option: the model's message says which
        raise UserError(str(e)) from e
    model.load_state_dict(ckpt["model"])
    model.to(device)
    model.eval()
    return model, ckpt
