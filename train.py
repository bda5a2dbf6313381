"""
Train a GPT with a chosen positional encoding, on one CPU/GPU or on several GPUs with DDP.

    python train.py configs/rope.py                                # one GPU, WikiText-103
    python train.py configs/demo/alibi.py --max_iters=200          # laptop CPU, demo corpus
    python train.py --out_dir=out/wikitext103/rope --init_from=resume --max_iters=20000
    torchrun --standalone --nproc_per_node=8 train.py configs/rope.py     # 8 GPUs, one node

main() runs the phases below in order on the run's state r. docs/training.md explains the run.
"""

import json
import math
import os
import random
import signal
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict
from types import SimpleNamespace

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

import runtime
from attention import flex_training_note
from checkpoint import (
    checkpoint_path,
    load_checkpoint,
    remove_partial_save,
    rng_states,
    save_checkpoint,
    saved_config,
    set_rng_states,
)
from configurator import ConfigError, UserError, load_base, load_config, run_cli
from data.prepare import atomic, ensure_prepared, load_meta, write_json

# keys that define the model and its data: a resumed run must keep them
ARCH_KEYS = ("n_layer", "n_head", "n_embd", "block_size", "bias", "encoding", "encoding_kwargs")
ARCH_KEYS += ("dataset", "time", "time_shared", "train_positions", "max_train_position")


class Diverged(Exception):
    """The loss became NaN/inf: the run stops and the last checkpoint is left as it is."""


def truncate_log(path, last_iter):
    """Drop log lines past the checkpoint we resume from (and a line cut short by SIGKILL), so
    that log.jsonl describes the run the checkpoint continues."""
    if os.path.exists(path):
        with open(path) as f:  # a line is written whole with its "\n": a cut one has none
            lines = [ln for ln in f if ln.endswith("\n") and json.loads(ln)["iter"] <= last_iter]
        with atomic(path) as f:  # on a full disk: one line, the log as it was
            f.writelines(lines)


def lock_run(c):
    """out_dir/.lock, held by rank 0 (the writer) for the run's life: a second train.py on the
    directory is refused. The kernel releases it when the process ends, even by SIGKILL."""
    out = c["out_dir"]
    if os.environ.get("RANK", "0") != "0" or c["init_from"] == "resume" and not os.path.isdir(out):
        return nullcontext()  # a resume of no directory: open_run says there is no checkpoint
    f = runtime.hold_lock(out, "pick another --out_dir")
    remove_partial_save(out)  # the writer now: a save killed midway may fill the disk
    return f


def open_run(c):
    """The checkpoint --init_from=resume continues (saying so if that run is finished), if its
    model and data are the config's; None from scratch, which must not overwrite a checkpoint."""
    out = c["out_dir"]
    if c["init_from"] == "scratch":
        if os.path.exists(checkpoint_path(out)):
            how = "continue it with --init_from=resume, or pick another --out_dir (or delete"
            raise UserError(f"{out} already holds a checkpoint; {how} that one to start over)")
        return None
    ckpt = load_checkpoint(out, map_location="cpu")
    # a key newer than the checkpoint: it trained with configs/base.py's value
    saved = ckpt["config"] = {**load_base(), **ckpt["config"]}
    for key in ARCH_KEYS:
        if saved[key] != c[key]:
            raise ConfigError(
                f"cannot resume {out} with {key}={c[key]!r}: it was trained with {saved[key]!r}. "
                f"To continue it as it was: python train.py --out_dir={out} --init_from=resume"
            )
    if ckpt["iter_num"] >= c["max_iters"]:
        master = os.environ.get("RANK", "0") == "0"  # under torchrun only rank 0 writes
        if master and ckpt["iter_num"] == c["max_iters"] and not ckpt.get("finished"):
            ckpt["finished"] = True  # a stopped run, resumed with max_iters lowered to where it is
            save_checkpoint(out, ckpt)
        print(f"{out} already finished at iter {ckpt['iter_num']} (max_iters={c['max_iters']}); "
              "pass a larger --max_iters to train further")  # fmt: skip
    return ckpt


def setup(c):
    """DDP, device, precision and seeds."""
    # torchrun sets RANK, LOCAL_RANK and WORLD_SIZE; a plain `python train.py` never touches dist
    ddp = int(os.environ.get("RANK", -1)) != -1
    rank, world = (int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])) if ddp else (0, 1)
    device, accum = runtime.resolve_device(c["device"]), c["gradient_accumulation_steps"]
    if ddp:
        if device.startswith("cuda"):
            device = f"cuda:{int(os.environ['LOCAL_RANK'])}"
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
    kind = torch.device(device).type  # cuda, cpu or mps
    dtype, dtype_note = runtime.pick_dtype(c["dtype"], kind)
    r = SimpleNamespace(
        c=c, out_dir=c["out_dir"], ddp=ddp, rank=rank, world=world, master=rank == 0,
        device=device, device_type=kind, dtype=dtype, ctx=runtime.autocast(device, dtype),
        B=c["batch_size"], T=c["block_size"], grad_accum=accum // world, iter_num=0,
        tokens_per_iter=accum * c["batch_size"] * c["block_size"], tokens_seen=0,
        best_val_loss=float("inf"), elapsed_before=0.0, last_saved=None, recent=[], stop=None,
        signal=None, wandb=None, wandb_run_id=None, old_handlers={},
    )  # fmt: skip
    r.say = print if r.master else (lambda *a, **k: None)  # rank 0 logs and writes checkpoints
    if dtype_note:
        r.say(f"note: {dtype_note}; training in float32 on {device}")
    for line in runtime.config_warnings(c, kind):  # settings that make the run meaningless
        r.say(line)
    # dropout masks differ per rank; the training windows come from batch_rng, the same on every
    # rank (each takes its own slice of one global batch), so rank 0's checkpoint has it all
    torch.manual_seed(c["seed"] + rank)
    np.random.seed(c["seed"])
    random.seed(c["seed"])
    r.batch_rng = np.random.default_rng(c["seed"])
    if kind == "cuda":
        runtime.set_tf32(c["tf32"])
    return r


def load_data(r):
    """The token files (the master prepares them on first use) and the fixed evaluation windows,
    eval_iters * batch_size evenly spaced over each split: loss curves compare point by point."""
    c, T = r.c, r.T
    dataset_dir = os.path.join(c["data_dir"], c["dataset"])
    r.meta = ensure_prepared(c["dataset"], c["data_dir"]) if r.master else None
    if r.ddp:  # the others wait for it
        dist.barrier()
        r.meta = r.meta or load_meta(dataset_dir)
    r.bins = {split: os.path.join(dataset_dir, f"{split}.bin") for split in ("train", "val")}
    r.n_tokens = {s: len(np.memmap(p, dtype=r.meta["dtype"], mode="r")) for s, p in r.bins.items()}
    for split, n in r.n_tokens.items():
        if n < T + 1:
            fix = "use a smaller --block_size or more text"
            raise UserError(
                f"{r.bins[split]} has {n} tokens, fewer than block_size+1 = {T + 1}: {fix}"
            )
    evenly = lambda n: np.linspace(0, n - T - 1, c["eval_iters"] * r.B).round().astype(np.int64)
    r.eval_starts = {split: evenly(n) for split, n in r.n_tokens.items()}


def batch(r, split, starts, pos=None):
    """Inputs, targets (and positions pos, if given) of the windows data[s : s + T + 1]."""
    # a new memmap per batch, as nanoGPT does: a long-lived one slowly leaks memory
    data = np.memmap(r.bins[split], dtype=r.meta["dtype"], mode="r")
    w = torch.from_numpy(np.stack([data[s : s + r.T + 1] for s in starts]).astype(np.int64))
    ts = [w[:, :-1].contiguous(), w[:, 1:].contiguous()]
    ts += [] if pos is None else [torch.from_numpy(pos)]
    if r.device_type == "cuda":  # pinned memory: the copy overlaps with compute, nothing waits
        return [t.pin_memory().to(r.device, non_blocking=True) for t in ts]
    return [t.to(r.device) for t in ts]


def build_model(r, ckpt):
    """The GPT (on resume: the saved architecture and weights), its AdamW and grad scaler."""
    c = r.c
    model = runtime.build_gpt(c, r.meta["vocab_size"], ckpt and ckpt["model_args"])
    r.model = r.raw_model = model.to(r.device)  # raw_model: never a compiled or DDP wrapper
    r.n_params, r.train_bound = model.get_num_params(), model.config.max_train_position
    extra = f", time {c['time']}" if c["time"] != "index" else ""
    if r.train_bound:
        extra += f"; training positions randomized in [0, {r.train_bound})"
    r.say(f"model: {r.n_params / 1e6:.2f}M parameters, encoding {c['encoding']}, "
          f"{c['n_layer']} layers x {c['n_embd']} wide, block_size {r.T}{extra}")  # fmt: skip
    r.optimizer, r.scaler = runtime.optimizer_and_scaler(model, c, r.device_type, r.dtype)


def restore(r, ckpt):
    """Weights, counters, optimizer moments and random states from the checkpoint, log.jsonl cut
    back to it (from scratch: emptied, the log of a run that died before its first save)."""
    c, last_iter = r.c, -1 if ckpt is None else ckpt["iter_num"]
    if r.master:
        truncate_log(os.path.join(r.out_dir, "log.jsonl"), last_iter)
    if ckpt is None:
        return
    r.raw_model.load_state_dict(ckpt["model"])
    # the checkpoint has the moments, step counts and how they are stored (fused, foreach...);
    # the config wins for the hyperparameters, so that a resume with --beta1 does what it says
    stored = ("params", "fused", "foreach", "capturable", "differentiable")
    hyper = [{k: v for k, v in g.items() if k not in stored} for g in r.optimizer.param_groups]
    r.optimizer.load_state_dict(ckpt["optimizer"])
    for group, h in zip(r.optimizer.param_groups, hyper):
        group.update(h)
    if ckpt["scaler"]:
        r.scaler.load_state_dict(ckpt["scaler"])
    r.iter_num, r.best_val_loss = ckpt["iter_num"], ckpt["best_val_loss"]
    r.tokens_seen, r.elapsed_before = ckpt["tokens_seen"], ckpt.get("elapsed_s", 0.0)
    r.wandb_run_id, r.last_saved = ckpt.get("wandb_run_id"), r.iter_num  # the checkpoint on disk
    saved = ckpt["config"]  # completed by open_run
    keys = [k for k in c if k != "init_from" and saved[k] != c[k]]
    changed = "; changed: " + ", ".join(f"{k} {saved[k]!r} -> {c[k]!r}" for k in keys)
    r.say(f"resuming {r.out_dir} at iter {r.iter_num}" + (changed if keys else ""))
    set_rng_states(ckpt["rng"], r.batch_rng, r.device)
    if r.rank > 0:  # only rank 0's streams are saved: others get fresh ones, still per rank
        torch.manual_seed(c["seed"] + r.rank + 7919 * r.iter_num)


def wrap_model(r):
    """torch.compile (inductor: CUDA, or CPU with a C++ compiler; MPS stays eager), DDP, and the
    FLOPs per iteration behind the MFU of the progress line."""
    c, say, kind = r.c, r.say, r.device_type
    compiled, note = runtime.compiles(c["compile"], kind)
    if note:
        say(f"note: {note}")
    if compiled:
        say("compiling the model (the first iterations and evaluation take a while)...")
        r.model = torch.compile(r.model)
    raw = r.raw_model  # on CUDA: why training takes SDPA where attn_backend allows flex
    if kind == "cuda" and (why := flex_training_note(raw.config, raw.pe[0], compiled)):
        say(f"note: {why}")
    if r.ddp:
        r.model = DDP(r.model, device_ids=[torch.cuda.current_device()] if kind == "cuda" else None)
    peak, peak_note = runtime.peak_tflops(r.device, c["peak_tflops"])
    r.peak_flops = peak and peak * 1e12 * r.world  # MFU: over the peak of all processes' devices
    if peak_note:
        say(f"note: {peak_note}")
    per_token = runtime.flops_per_token(r.n_params, c["n_layer"], c["n_embd"], r.T)
    r.flops_per_iter = per_token * r.tokens_per_iter
    say(f"device {r.device}, {r.dtype}, {'compiled' if compiled else 'eager'}; {r.world} "
        f"process(es); {r.tokens_per_iter:,} tokens per iteration "
        f"({r.B} x {r.T} x {r.grad_accum} x {r.world})")  # fmt: skip


# -----------------------------------------------------------------------------


def check_losses(r):
    """Mean of the training losses since the last check (kept on the device: no iteration waits
    for the GPU); Diverged if one is NaN/inf. Under DDP, whether any rank had a stop signal."""
    if not r.recent:
        return None
    losses = torch.stack([loss for _, loss in r.recent])
    if r.ddp:  # the ranks agree on stopping (one that stopped alone would hang the others) here,
        # where the loop waits for the GPU anyway: a check every iteration would make each wait
        losses = torch.cat((losses, torch.full((1,), float(bool(r.signal)), device=r.device)))
        dist.all_reduce(losses)
        losses /= r.world
    losses = losses.tolist()
    if r.ddp and losses.pop() > 0:
        r.stop = r.stop or r.signal or "signal on another rank"
    for (it, _), loss in zip(r.recent, losses):
        if not math.isfinite(loss):
            raise Diverged(f"loss became {loss} at iter {it}")
    r.recent.clear()
    return sum(losses) / len(losses)


def save(r, finished=False):
    if not r.master:
        return
    save_checkpoint(r.out_dir, {
        "model": r.raw_model.state_dict(), "model_args": asdict(r.raw_model.config),
        "config": r.c, "optimizer": r.optimizer.state_dict(), "scaler": r.scaler.state_dict(),
        "iter_num": r.iter_num, "best_val_loss": r.best_val_loss, "tokens_seen": r.tokens_seen,
        "elapsed_s": time.time() - r.t0, "finished": finished, "tokenizer": r.meta["tokenizer"],
        "wandb_run_id": r.wandb_run_id, "rng": rng_states(r.batch_rng, r.device),
    })  # fmt: skip
    r.last_saved = r.iter_num


@torch.no_grad()
def eval_and_log(r, lr):
    """Mean loss over the fixed windows of each split (every rank computes the same), a line in
    log.jsonl (and wandb), a checkpoint if due."""
    c = r.c
    check_losses(r)  # never evaluate, let alone save, a model that has diverged
    r.model.eval()
    losses = {}
    for split, starts in r.eval_starts.items():
        windows = [batch(r, split, starts[i : i + r.B]) for i in range(0, len(starts), r.B)]
        with r.ctx:
            losses[split] = torch.stack([r.model(x, y)[1].float() for x, y in windows])
    r.model.train()
    train_loss, val_loss = (losses[split].mean().item() for split in ("train", "val"))
    if not math.isfinite(val_loss):
        raise Diverged(f"val loss became {val_loss} at iter {r.iter_num}")
    improved, r.best_val_loss = val_loss < r.best_val_loss, min(r.best_val_loss, val_loss)
    saving = 0 < r.iter_num < c["max_iters"] and (c["always_save_checkpoint"] or improved)
    if r.master:
        elapsed = round(time.time() - r.t0, 3)
        record = dict(iter=r.iter_num, train_loss=train_loss, val_loss=val_loss, lr=lr,
                      tokens_seen=r.tokens_seen, elapsed_s=elapsed)  # fmt: skip
        with open(os.path.join(r.out_dir, "log.jsonl"), "a") as f:
            f.write(json.dumps(record) + "\n")
        if r.wandb is not None:
            r.wandb.log(record, step=r.iter_num)
        r.say(f"eval iter {r.iter_num}: train loss {train_loss:.4f}, val loss {val_loss:.4f}"
              + (f"; saving {checkpoint_path(r.out_dir)}" if saving else ""))  # fmt: skip
    if saving:
        save(r)


def train_step(r):
    """One optimizer step. Every rank draws the windows (and positions) of the whole step from
    batch_rng and takes its own rows: rank 0's checkpoint covers every rank, and DDP computes what
    one process accumulating gradient_accumulation_steps micro-batches computes."""
    c, B, T = r.c, r.B, r.T
    rows = c["gradient_accumulation_steps"] * B  # micro-step m of rank k: (m * world + k) * B
    starts = r.batch_rng.integers(0, r.n_tokens["train"] - T, size=rows)
    pos = runtime.random_positions(r.batch_rng, rows, T, r.train_bound) if r.train_bound else None
    step_loss = torch.zeros((), device=r.device)
    for m in range(r.grad_accum):
        i = (m * r.world + r.rank) * B
        # p: [the positions] when they are randomized, else []
        x, y, *p = batch(r, "train", starts[i : i + B], None if pos is None else pos[i : i + B])
        if r.ddp:  # sync gradients only on the last micro-step
            r.model.require_backward_grad_sync = m == r.grad_accum - 1
        with r.ctx:
            loss = r.model(x, y, *p)[1] / r.grad_accum  # summed over micro-steps: the mean
        r.scaler.scale(loss).backward()
        step_loss += loss.detach().float()
    runtime.optimizer_step(r.raw_model.parameters(), r.optimizer, r.scaler, c["grad_clip"])
    r.iter_num += 1
    r.recent.append((r.iter_num, step_loss))  # "iter N" = the N-th step, as in the log
    r.tokens_seen += r.tokens_per_iter


def train(r):
    """config.json and wandb, then the loop, until max_iters or a stop signal."""
    c, say, out, end = r.c, r.say, r.out_dir, r.c["max_iters"]
    if r.master:
        write_json(os.path.join(out, "config.json"), c, indent=1)
    if r.master and c["wandb_log"]:
        import wandb  # only when asked: slow to import. WANDB_MODE=offline needs no network

        name = c["wandb_run_name"] or os.path.basename(os.path.normpath(out))
        run = wandb.init(project=c["wandb_project"], name=name, config=c, dir=out,
                         id=r.wandb_run_id, resume="allow")  # fmt: skip
        r.wandb, r.wandb_run_id = wandb, run.id
    r.t0 = time.time() - r.elapsed_before  # elapsed_s: training time over all resumes

    def request_stop(signum, frame):  # finish the iteration, save, exit 0; a second signal quits
        if r.signal:
            print("second signal: quitting without saving", file=sys.stderr)
            raise SystemExit(130)
        r.signal = signal.Signals(signum).name
        r.stop = r.stop or (None if r.ddp else r.signal)  # DDP: all ranks stop in check_losses
        if r.master:
            when = "by the next progress line" if r.ddp else "after this iteration"
            print(f"\n{r.signal}: saving a checkpoint {when}, then exiting "
                  "(send it again to quit without saving)", file=sys.stderr)  # fmt: skip

    signals = (signal.SIGINT, signal.SIGTERM)  # Ctrl-C; schedulers and `kill`
    r.old_handlers = {s: signal.signal(s, request_stop) for s in signals}
    say(f"training {end - r.iter_num} iterations, from iter {r.iter_num} to {end}")
    t_log, it_log, eval_seconds = time.time(), r.iter_num, 0.0
    while True:
        lr = runtime.lr_at(r.iter_num, c)
        for group in r.optimizer.param_groups:
            group["lr"] = lr
        # evaluate at iter 0, every eval_interval and at the end; the iteration of the checkpoint
        # we resumed from was evaluated (and logged) before that checkpoint was saved
        due = r.iter_num % c["eval_interval"] == 0 or r.iter_num == end
        if due and r.iter_num != r.last_saved:
            t_eval = time.time()
            eval_and_log(r, lr)
            t_log, it_log, eval_seconds = time.time(), r.iter_num, time.time() - t_eval
        if r.iter_num >= end:
            break
        if r.stop:  # under DDP set by check_losses, on every rank at the same iteration
            check_losses(r)
            save(r)
            launcher = f"torchrun --nproc_per_node={r.world}" if r.ddp else "python"
            say(f"saved {checkpoint_path(out)} at iter {r.iter_num}; resume with:\n"
                f"  {launcher} train.py --out_dir={out} --init_from=resume")  # fmt: skip
            return
        train_step(r)
        if r.iter_num % c["log_interval"] == 0:
            loss, left = check_losses(r), end - r.iter_num
            dt = (time.time() - t_log) / (r.iter_num - it_log)
            mfu = f"MFU {r.flops_per_iter / dt / r.peak_flops:.1%} | " if r.peak_flops else ""
            eta = runtime.fmt_duration(left * dt + (left // c["eval_interval"] + 1) * eval_seconds)
            say(f"iter {r.iter_num} | loss {loss:.4f} | lr {lr:.1e} | {dt * 1000:.1f} ms/iter | "
                f"{r.tokens_per_iter / dt:,.0f} tok/s | {mfu}ETA {eta}")  # fmt: skip
            t_log, it_log = time.time(), r.iter_num
    save(r, finished=True)
    say(f"done: iter {r.iter_num}, best val loss {r.best_val_loss:.4f}; "
        f"checkpoint {checkpoint_path(out)}")  # fmt: skip


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if hasattr(sys.stdout, "reconfigure"):  # progress shows up at once in `| tee` and logs
        sys.stdout.reconfigure(line_buffering=True)
    c = load_config(argv, saved_config=saved_config)
    runtime.check_config(c, world=int(os.environ.get("WORLD_SIZE", 1)))
    with lock_run(c):  # released when the run ends (by the kernel if it is killed)
        ckpt = open_run(c)
        if ckpt is not None and ckpt["iter_num"] >= c["max_iters"]:
            return  # finished: open_run said so
        r = setup(c)
        try:
            load_data(r)
            build_model(r, ckpt)
            restore(r, ckpt)
            ckpt = None  # free its memory
            wrap_model(r)
            train(r)
        except Diverged as e:
            kept = f"the last good checkpoint (iter {r.last_saved}) is kept in {r.out_dir}"
            how = f"resume: python train.py --out_dir={r.out_dir} --init_from=resume"
            how += " --learning_rate=X"
            if r.last_saved is None:
                kept, how = "no checkpoint was saved yet", "start again"
            fix = "Lower learning_rate (or raise warmup_iters, or set grad_clip) and"
            print(f"error: {e}; {kept}. {fix} {how}", file=sys.stderr)
            raise SystemExit(1) from None
        finally:
            for s, handler in r.old_handlers.items():
                signal.signal(s, handler)
            if r.wandb is not None:
                r.wandb.finish()
            if r.ddp:
                dist.destroy_process_group()


if __name__ == "__main__":
    run_cli(main)
