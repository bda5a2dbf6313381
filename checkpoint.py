"""
Checkpoints: out_dir/ckpt.pt, written atomically and read with weights_only=True (a checkpoint
is data: loading it must not run code). What the dict holds: docs/training.md.
"""

import contextlib
import os
import random
import zlib

import numpy as np
import torch

from configurator import UserError, check_choice
from runtime import pick_dtype, resolve_device, set_tf32


def checkpoint_path(out_dir):
    return out_dir if out_dir.endswith(".pt") else os.path.join(out_dir, "ckpt.pt")


def tensors_crc32(obj, crc=0):
    """zlib.crc32 of the bytes of every tensor in obj (through dicts, lists, tuples, in order): it
    catches any flipped byte, at a fraction of the time torch.save takes."""
    if isinstance(obj, torch.Tensor):
        data = obj.detach().cpu().contiguous().reshape(-1).view(torch.uint8)
        return zlib.crc32(data.numpy(), crc)
    if isinstance(obj, dict):
        obj = list(obj.values())
    for v in obj if isinstance(obj, (list, tuple)) else ():
        crc = tensors_crc32(v, crc)
    return crc


def remove_partial_save(out_dir):
    """Delete what a save cut short left; only the run's writer may (a save may be under way)."""
    with contextlib.suppress(OSError):
        os.remove(checkpoint_path(out_dir) + ".tmp")


def save_checkpoint(out_dir, ckpt):
    """ckpt and the CRC of its tensors, through a temporary file: a crash at any moment leaves the
    previous checkpoint or the new one. An I/O error is a UserError and leaves no temp file."""
    path = checkpoint_path(out_dir)
    try:
        with open(path + ".tmp", "wb") as f:
            torch.save({**ckpt, "crc32": tensors_crc32(ckpt)}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(path + ".tmp", path)
    except (OSError, RuntimeError) as e:
        remove_partial_save(out_dir)
        err = e if isinstance(e, OSError) else e.__context__  # torch.save wraps a failed write
        if not isinstance(err, OSError):
            raise
        fix = "free space or fix permissions, then resume with --init_from=resume"
        raise UserError(f"could not save {path}: {err.strerror or err}; the previous checkpoint, "
                        f"if any, is intact: {fix}") from e  # fmt: skip


def load_checkpoint(out_dir, map_location="cpu", mmap=False):
    """The checkpoint dict in out_dir (or a .pt file). mmap=True maps tensors lazily, cheap when
    only the config is needed: the CRC, which reads every tensor, is then not checked."""
    path = checkpoint_path(out_dir)
    if not os.path.isfile(path):
        hint = f"train one with: python train.py CONFIG --out_dir={out_dir}"
        raise UserError(f"no checkpoint at {path} ({hint})")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as e:
        why = (str(e).strip().splitlines() or [""])[0][:160]
        fix = "if it is damaged (cut short?), restore it from a copy, or delete it and train again"
        raise UserError(f"could not read {path}: {type(e).__name__}: {why}; {fix}") from e
    if not mmap and "crc32" in ckpt and tensors_crc32(ckpt) != ckpt["crc32"]:
        fix = "the run keeps no older one: restore it from a copy, or delete it and train again"
        raise UserError(f"{path} is corrupt (its tensors do not match their saved CRC32); {fix}")
    return ckpt


def saved_config(out_dir):
    """The training config stored in out_dir's checkpoint ({} if none): what `train.py
    --init_from=resume` without a config file starts from (configurator.load_config)."""
    return load_checkpoint(out_dir, mmap=True).get("config", {})


def rng_states(batch_rng, device):
    """Every random state in the process, in types torch.load(weights_only=True) accepts. Of CUDA
    only the device in use: a resume may see fewer GPUs than the run that saved it."""
    np_state = np.random.get_state()
    cuda = torch.cuda.get_rng_state(device) if device.startswith("cuda") else None
    return dict(torch=torch.get_rng_state(), cuda=cuda, python=random.getstate(),
                numpy=(np_state[0], np_state[1].tolist(), *np_state[2:]),
                batch=batch_rng.bit_generator.state)  # fmt: skip


def set_rng_states(rng, batch_rng, device):
    torch.set_rng_state(rng["torch"].cpu())
    cuda = rng["cuda"]
    if device.startswith("cuda") and cuda is not None and len(cuda) > 0:
        if isinstance(cuda, (list, tuple)):  # older checkpoints: a state per GPU visible then
            i = torch.device(device).index or 0
            cuda = cuda[i] if i < len(cuda) else cuda[0]
        torch.cuda.set_rng_state(cuda.cpu(), device)
    np.random.set_state(tuple(rng["numpy"]))
    random.setstate(rng["python"])
    batch_rng.bit_generator.state = rng["batch"]


ROPE_FACTOR = 8.0  # the default --rope_factor of eval_lengths.py and sample.py


def variant_label(e):
    """The name of the change eval_lengths.py options e make to the model ("yarn x8"), "" for none.
    eval_lengths.json records it; sweeps and plots show each variant as its own row."""
    if e.get("rope_scaling"):
        return f"{e['rope_scaling']} x{e.get('rope_factor', ROPE_FACTOR):g}"
    return "custom" if e.get("encoding_kwargs") else ""


def eval_precision(ckpt, device, dtype=""):
    """(dtype, tf32) to evaluate ckpt in on device, TF32 set to match on CUDA: `dtype` if given
    (TF32 off), else ckpt's, resolved as train.py does: a float32 model can be far off in bf16."""
    tcfg, kind = ckpt.get("config", {}), torch.device(device).type
    tf32 = kind == "cuda" and not dtype and tcfg.get("tf32", False)
    if kind == "cuda":
        set_tf32(tf32)
    return pick_dtype(dtype or tcfg.get("dtype", "auto"), kind)[0], tf32


def rope_scaling_kwargs(encoding, e):
    """encoding_kwargs for the RoPE context extension eval_lengths.py options e ask ({} if none).
    An encoding takes it by declaring the methods it supports (a `scalings` class attribute)."""
    from encoding import available_encodings, encoding_class

    rope_scaling, rope_factor = e.get("rope_scaling"), e.get("rope_factor", ROPE_FACTOR)
    if not rope_scaling:
        return {}
    takers = {n: s for n in available_encodings() if (s := encoding_class(n).scalings)}
    methods = list(dict.fromkeys(m for s in takers.values() for m in s))
    check_choice("--rope_scaling", rope_scaling, methods)
    if encoding not in takers:
        raise UserError(
            f"--rope_scaling applies to {' and '.join(takers)}; this checkpoint uses {encoding}"
        )
    if rope_factor <= 0:
        raise UserError(f"--rope_factor must be positive, got {rope_factor}")
    return {"scaling": rope_scaling, "factor": float(rope_factor)}


def eval_encoding_kwargs(args, e):
    """The encoding_kwargs of the model of args (model_args or training config) as eval_lengths.py
    options e change it: args', then e's, then e's RoPE context extension (later ones win)."""
    scaling = rope_scaling_kwargs(args["encoding"], e)
    return args["encoding_kwargs"] | (e.get("encoding_kwargs") or {}) | scaling


def load_model(out_dir, device="cpu", e=None):
    """(model, ckpt): the GPT saved in out_dir, in eval mode, as eval_lengths.py options e (or
    sample.py's) change it: encoding_kwargs, rope_scaling, rope_factor, attn_backend."""
    from model import GPT, GPTConfig  # here: reading a checkpoint needs no model code

    device, e = resolve_device(device), e or {}
    ckpt = load_checkpoint(out_dir)
    args = dict(ckpt["model_args"], attn_backend=e.get("attn_backend", "auto"))
    args["encoding_kwargs"] = eval_encoding_kwargs(args, e)
    try:
        model = GPT(GPTConfig(**args))
    except ValueError as err:  # unknown encoding or option: the model's message says which
        raise UserError(str(err)) from err
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval(), ckpt
