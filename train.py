"""
Train a GPT with a chosen positional encoding, on one CPU/GPU or on several GPUs with DDP.

    python train.py configs/rope.py                                # one GPU, WikiText-103
    python train.py configs/demo/alibi.py --max_iters=200          # laptop CPU, demo corpus
    python train.py --out_dir=out/wikitext103/rope --init_from=resume          # continue a run
    python train.py --out_dir=out/wikitext103/rope --init_from=resume --max_iters=20000
    torchrun --standalone --nproc_per_node=8 train.py configs/rope.py     # 8 GPUs, one node

Reads top to bottom: config -> DDP -> data -> model -> optimizer -> training loop, after
karpathy/nanoGPT. What it adds:
- validated configs (configurator.py); a bad key or encoding is one line and exit code 2;
- exact resume: every random state is checkpointed, training windows come from a dedicated
  generator, evaluation uses a fixed set of windows, so a run stopped at iter N and resumed to M
  logs the same losses as a run straight to M (bitwise on CPU);
- atomic checkpoints; SIGINT/SIGTERM finish the current iteration, save and exit 0; a NaN/inf
  loss stops the run (exit 1) without touching the last good checkpoint;
- out_dir/log.jsonl: one JSON line per evaluation (iter, train_loss, val_loss, lr, tokens_seen,
  elapsed_s), for plots that need no wandb;
- randomized training positions (Ruoss et al. 2023, train_positions="randomized"): each training
  sequence gets sorted distinct positions drawn from [0, max_train_position); evaluation keeps
  0 .. T-1.
"""

import json
import math
import os
import random
import signal
import sys
import time

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from checkpoint import checkpoint_path, load_checkpoint, save_checkpoint, saved_config
from configurator import ConfigError, UserError, load_base, load_config, run_cli
from data.prepare import ensure_prepared, load_meta, write_json
from model import GPT, GPTConfig
from runtime import (
    autocast,
    check_config,
    flops_per_token,
    fmt_duration,
    has_cpp_compiler,
    lr_at,
    max_train_position,
    peak_tflops,
    pick_dtype,
    resolve_device,
    set_tf32,
)

# keys that define the model and its data: a resumed run must keep them
ARCH_KEYS = ("n_layer", "n_head", "n_embd", "block_size", "bias", "encoding", "encoding_kwargs")
ARCH_KEYS += ("dataset", "time", "time_shared", "train_positions", "max_train_position")


class Diverged(Exception):
    """The loss became NaN/inf: the run stops and the last checkpoint is left as it is."""


# -----------------------------------------------------------------------------
# small helpers, used by main() below


def random_positions(rng, rows, T, bound):
    """(rows, T) int64: each row T distinct positions drawn uniformly from [0, bound), sorted
    (Ruoss et al. 2023). Rows are drawn one by one: a (rows, bound) permutation would cost
    memory in the bound."""
    rows = [rng.choice(bound, size=T, replace=False, shuffle=False) for _ in range(rows)]
    return np.sort(np.stack(rows), axis=1).astype(np.int64)


def rng_states(batch_rng, device):
    """Every random state in the process, in types torch.load(weights_only=True) accepts. Of CUDA
    only the device in use: a resume may see fewer GPUs than the run that saved it."""
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(device) if device.startswith("cuda") else None,
        "numpy": (np_state[0], np_state[1].tolist(), *np_state[2:]),
        "python": random.getstate(),
        "batch": batch_rng.bit_generator.state,
    }


def set_rng_states(rng, batch_rng, device):
    torch.set_rng_state(rng["torch"].cpu())
    cuda = rng["cuda"]
    if device.startswith("cuda") and cuda is not None and len(cuda) > 0:
        if isinstance(cuda, (list, tuple)):  # older checkpoints: a state per GPU visible then
            i = torch.device(device).index
            i = torch.cuda.current_device() if i is None else i
            cuda = cuda[i] if i < len(cuda) else cuda[0]
        torch.cuda.set_rng_state(cuda.cpu(), device)
    np.random.set_state(tuple(rng["numpy"]))
    random.setstate(rng["python"])
    batch_rng.bit_generator.state = rng["batch"]


def truncate_log(path, last_iter):
    """Drop log lines past the checkpoint we resume from (written after it, then lost with the
    process), so that log.jsonl always describes the run the checkpoint continues."""
    if not os.path.exists(path):
        return

    def keep(line):  # a line cut short by SIGKILL does not parse: it is dropped like the rest
        try:
            return json.loads(line)["iter"] <= last_iter
        except (ValueError, KeyError, TypeError):
            return False

    with open(path) as f:
        lines = [ln for ln in f if ln.strip() and keep(ln)]
    with open(path + ".tmp", "w") as f:
        f.writelines(lines)
    os.replace(path + ".tmp", path)


# -----------------------------------------------------------------------------


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if hasattr(sys.stdout, "reconfigure"):  # progress shows up at once in `| tee` and logs
        sys.stdout.reconfigure(line_buffering=True)
    # -------------------------------------------------------------------- config
    c = load_config(argv, saved_config=saved_config)
    check_config(c)
    out_dir = c["out_dir"]
    ckpt_file = checkpoint_path(out_dir)
    ckpt = None
    if c["init_from"] == "resume":
        ckpt = load_checkpoint(out_dir, map_location="cpu")
        saved = ckpt["config"]
        defaults = load_base()  # what a checkpoint older than a key was trained with
        for key in ARCH_KEYS:
            if saved.get(key, defaults[key]) != c[key]:
                raise ConfigError(
                    f"cannot resume {out_dir} with {key}={c[key]!r}: it was trained with "
                    f"{saved.get(key, defaults[key])!r}. To continue it as it was: "
                    f"python train.py --out_dir={out_dir} --init_from=resume"
                )
        if ckpt["iter_num"] >= c["max_iters"]:
            if ckpt["iter_num"] == c["max_iters"] and not ckpt.get("finished"):
                # a stopped run resumed with max_iters lowered to where it stands: it is done
                ckpt["finished"] = True
                save_checkpoint(out_dir, ckpt)
            print(
                f"{out_dir} already finished at iter {ckpt['iter_num']} (max_iters="
                f"{c['max_iters']}); pass a larger --max_iters to train further"
            )
            return
    elif os.path.exists(ckpt_file):
        raise UserError(
            f"{out_dir} already holds a checkpoint; continue it with --init_from=resume, "
            "or pick another --out_dir (or delete that one to start over)"
        )
    lr_decay_iters = c["lr_decay_iters"] or c["max_iters"]

    # ----------------------------------------------------------------------- DDP
    # torchrun sets RANK, LOCAL_RANK and WORLD_SIZE; a plain `python train.py` never touches dist
    ddp = int(os.environ.get("RANK", -1)) != -1
    device = resolve_device(c["device"])
    if ddp:
        rank, local_rank = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
        world_size = int(os.environ["WORLD_SIZE"])
        if c["gradient_accumulation_steps"] % world_size:
            raise ConfigError(
                f"gradient_accumulation_steps ({c['gradient_accumulation_steps']}) must be a "
                f"multiple of the number of processes ({world_size})"
            )
        if device.startswith("cuda"):
            device = f"cuda:{local_rank}"
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
    else:
        rank, world_size = 0, 1
    master = rank == 0  # the process that logs and writes checkpoints
    say = print if master else (lambda *a, **k: None)
    grad_accum = c["gradient_accumulation_steps"] // world_size
    device_type = "cuda" if device.startswith("cuda") else device.split(":")[0]
    dtype, dtype_note = pick_dtype(c["dtype"], device_type)
    if dtype_note:
        say(f"note: {dtype_note}; training in float32 on {device}")
    B, T = c["batch_size"], c["block_size"]
    tokens_per_iter = grad_accum * world_size * B * T
    if master:
        os.makedirs(out_dir, exist_ok=True)

    # dropout masks differ per rank; the training windows come from batch_rng, the same on every
    # rank (each rank takes its own slice of one global batch), so rank 0's checkpoint has it all
    torch.manual_seed(c["seed"] + rank)
    np.random.seed(c["seed"])
    random.seed(c["seed"])
    batch_rng = np.random.default_rng(c["seed"])
    if device_type == "cuda":
        set_tf32(c["tf32"])
    ctx = autocast(device, dtype)

    # ---------------------------------------------------------------------- data
    dataset_dir = os.path.join(c["data_dir"], c["dataset"])
    # the master builds the demo corpus / WikiText-103 on first use; the others wait for it
    meta = ensure_prepared(c["dataset"], c["data_dir"]) if master else None
    if ddp:
        dist.barrier()
        meta = meta or load_meta(dataset_dir)

    def tokens(split):
        # a new memmap per batch, as nanoGPT does: a long-lived one slowly leaks memory
        return np.memmap(os.path.join(dataset_dir, f"{split}.bin"), dtype=meta["dtype"], mode="r")

    n_tokens = {split: len(tokens(split)) for split in ("train", "val")}
    for split, n in n_tokens.items():
        if n < T + 1:
            raise UserError(
                f"{dataset_dir}/{split}.bin has {n} tokens, fewer than block_size+1 = {T + 1}: "
                "use a smaller --block_size or more text"
            )

    def batch(split, starts):
        """Inputs and targets (len(starts), T) of the windows data[s : s + T + 1]."""
        data = tokens(split)
        w = torch.from_numpy(np.stack([data[s : s + T + 1] for s in starts]).astype(np.int64))
        x, y = w[:, :-1].contiguous(), w[:, 1:].contiguous()
        if device_type == "cuda":  # pinned memory lets the copy overlap with compute
            return tuple(t.pin_memory().to(device, non_blocking=True) for t in (x, y))
        return x.to(device), y.to(device)

    train_bound = max_train_position(c)  # 0: positions 0 .. T-1

    def step_batches():
        """This rank's micro-batches (x, y, positions or None) of one optimizer step. The windows
        of the whole step, every rank's, are drawn at once from batch_rng, then their randomized
        positions: every rank draws the same and takes its own rows, so the checkpointed state
        covers them all, and DDP ranks see what one process accumulating sees. Drawn per step,
        not prefetched: batch_rng's state stays in step with iter_num at a checkpoint. Windows
        load when needed; on CUDA the CPU runs ahead of the GPU anyway (no sync between
        micro-steps), so loading still overlaps with compute."""
        rows = c["gradient_accumulation_steps"] * B  # micro-step m of rank r: (m * world + r) * B
        starts = batch_rng.integers(0, n_tokens["train"] - T, size=rows)
        pos = random_positions(batch_rng, rows, T, train_bound) if train_bound else None
        for m in range(grad_accum):
            mine = slice((m * world_size + rank) * B, (m * world_size + rank + 1) * B)
            x, y = batch("train", starts[mine])
            yield x, y, None if pos is None else torch.from_numpy(pos[mine]).to(device)

    # evaluation: the same eval_iters * batch_size windows every time, evenly spaced over each
    # split, so that curves of one run and of different runs are comparable point by point.
    # train_loss in the log is measured the same way, on fixed windows of train.bin.
    n_eval = c["eval_iters"] * B
    eval_starts = {
        s: np.linspace(0, n_tokens[s] - T - 1, n_eval).round().astype(np.int64)
        for s in ("train", "val")
    }

    # --------------------------------------------------------------------- model
    vocab_size = (meta["vocab_size"] + 63) // 64 * 64  # a multiple of 64: faster matmuls
    model_args = dict(
        n_layer=c["n_layer"], n_head=c["n_head"], n_embd=c["n_embd"], block_size=T,
        bias=c["bias"], vocab_size=vocab_size, dropout=c["dropout"],
        encoding=c["encoding"], encoding_kwargs=c["encoding_kwargs"],
        attn_backend=c["attn_backend"], time=c["time"], time_shared=c["time_shared"],
        max_train_position=train_bound,
    )  # fmt: skip
    if ckpt is not None:  # the saved architecture wins; dropout and the kernel may change
        kept = {k: v for k, v in ckpt["model_args"].items() if k not in ("dropout", "attn_backend")}
        model_args.update(kept)
    model = GPT(GPTConfig(**model_args))
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
    model.to(device)
    raw_model = model  # the plain module: what we checkpoint, never the compiled/DDP wrapper
    n_params = raw_model.get_num_params()
    say(
        f"model: {n_params / 1e6:.2f}M parameters, encoding {c['encoding']}, "
        f"{c['n_layer']} layers x {c['n_embd']} wide, block_size {T}"
        + (f", time {c['time']}" if c["time"] != "index" else "")
        + (f"; training positions randomized in [0, {train_bound})" if train_bound else "")
    )

    # ----------------------------------------------------------------- optimizer
    optimizer = raw_model.configure_optimizers(
        c["weight_decay"], c["learning_rate"], (c["beta1"], c["beta2"]), device_type
    )
    # the grad scaler only does something for float16 (bfloat16 has float32's exponent range)
    scaler = torch.amp.GradScaler(device_type, enabled=(dtype == "float16"))
    iter_num, best_val_loss, tokens_seen, elapsed_before = 0, float("inf"), 0, 0.0
    wandb_run_id = None
    if ckpt is not None:
        # the checkpoint supplies the moments and step counts (and the flags saying how they are
        # stored: fused, foreach...); the config wins for every hyperparameter a param group holds
        # (weight_decay, betas, eps...), so that a resume with --weight_decay/--beta1/--beta2
        # does what it says (lr is set every iteration anyway)
        stored = ("params", "fused", "foreach", "capturable", "differentiable")
        hyper = [{k: v for k, v in g.items() if k not in stored} for g in optimizer.param_groups]
        optimizer.load_state_dict(ckpt["optimizer"])
        for group, h in zip(optimizer.param_groups, hyper):
            group.update(h)
        if ckpt["scaler"]:
            scaler.load_state_dict(ckpt["scaler"])
        iter_num, best_val_loss = ckpt["iter_num"], ckpt["best_val_loss"]
        tokens_seen, elapsed_before = ckpt["tokens_seen"], ckpt.get("elapsed_s", 0.0)
        wandb_run_id = ckpt.get("wandb_run_id")
        if master:
            changed = [
                f"{k} {ckpt['config'].get(k, defaults[k])!r} -> {c[k]!r}"
                for k in c
                if k != "init_from" and ckpt["config"].get(k, defaults[k]) != c[k]
            ]
            say(
                f"resuming {out_dir} at iter {iter_num}"
                + (f"; changed: {', '.join(changed)}" if changed else "")
            )
            if c["lr_decay_iters"] == 0 and ckpt["config"]["max_iters"] != c["max_iters"]:
                say("note: lr_decay_iters=0 follows max_iters, so the LR schedule is stretched")
        if master:
            truncate_log(os.path.join(out_dir, "log.jsonl"), iter_num)
        set_rng_states(ckpt["rng"], batch_rng, device)
        if rank > 0:
            # only rank 0's torch/CUDA streams are saved: the other ranks get fresh streams that
            # still differ per rank (so their dropout masks do), though not the ones they had
            torch.manual_seed(c["seed"] + rank + 7919 * iter_num)
        ckpt = None  # free the memory
    elif master and os.path.exists(os.path.join(out_dir, "log.jsonl")):
        os.remove(os.path.join(out_dir, "log.jsonl"))  # a run that died before its first save
    start_iter, resumed = iter_num, c["init_from"] == "resume"

    # torch.compile: inductor on CUDA and on CPU (it needs a C++ compiler there); MPS stays eager
    compiled = c["compile"] and device_type in ("cuda", "cpu")
    if c["compile"] and not compiled:
        say(f"note: torch.compile is not used on {device_type} (experimental there); eager")
    if compiled and device_type == "cpu" and not has_cpp_compiler():
        say("note: torch.compile on CPU needs a C++ compiler (g++); none found: running eager")
        compiled = False
    if compiled:
        say("compiling the model (the first iterations and evaluation take a while)...")
        model = torch.compile(model)
    if ddp:
        model = DDP(
            model, device_ids=[int(os.environ["LOCAL_RANK"])] if device_type == "cuda" else None
        )
    # MFU in the progress line: model FLOPs per second over the peak of all processes' devices
    peak, peak_note = peak_tflops(device, c["peak_tflops"])
    if peak_note:
        say(f"note: {peak_note}")
    flops_per_iter = flops_per_token(n_params, c["n_layer"], c["n_embd"], T) * tokens_per_iter
    how = "compiled" if compiled else "eager"
    say(
        f"device {device}, {dtype}, {how}; {world_size} process(es); "
        f"{tokens_per_iter:,} tokens per iteration ({B} x {T} x {grad_accum} x {world_size})"
    )

    if master:
        write_json(os.path.join(out_dir, "config.json"), c, indent=1)
    wandb = None
    if c["wandb_log"] and master:
        import wandb  # only when asked: it is slow to import. WANDB_MODE=offline needs no network

        run = wandb.init(
            project=c["wandb_project"],
            name=c["wandb_run_name"] or os.path.basename(os.path.normpath(out_dir)),
            config=c,
            dir=out_dir,
            id=wandb_run_id,
            resume="allow",
        )
        wandb_run_id = getattr(run, "id", None)

    # ------------------------------------------------------------- helpers on state
    @torch.no_grad()
    def evaluate():
        """Mean loss over the fixed windows of each split (every rank computes the same)."""
        model.eval()
        out = {}
        for split, starts in eval_starts.items():
            losses = []
            for i in range(0, len(starts), B):
                x, y = batch(split, starts[i : i + B])
                with ctx:
                    _, loss = model(x, y)
                losses.append(loss.float())
            out[split] = torch.stack(losses).mean().item()
        model.train()
        return out

    recent = []  # (iter, loss tensor) since the last check: no GPU sync per iteration

    def check_losses():
        """Mean of the recent training losses; Diverged if any is NaN/inf."""
        if not recent:
            return None
        losses = torch.stack([loss for _, loss in recent])
        if ddp:  # every rank must see the same thing, or they would disagree on stopping
            dist.all_reduce(losses)
            losses /= world_size
        losses = losses.cpu()
        bad = (~torch.isfinite(losses)).nonzero()
        if len(bad):
            it = recent[bad[0].item()][0]
            raise Diverged(f"loss became {losses[bad[0].item()].item()} at iter {it}")
        recent.clear()
        return losses.mean().item()

    t_start = time.time()
    elapsed = lambda: elapsed_before + time.time() - t_start  # training time over all resumes
    last_saved = [start_iter if resumed else None]  # iter of the checkpoint on disk

    def save(finished=False):
        if not master:
            return
        save_checkpoint(out_dir, {
            "model": raw_model.state_dict(),
            "model_args": model_args,
            "config": c,
            "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict(),
            "iter_num": iter_num,
            "best_val_loss": best_val_loss,
            "tokens_seen": tokens_seen,
            "elapsed_s": elapsed(),
            "finished": finished,
            "tokenizer": meta["tokenizer"],
            "wandb_run_id": wandb_run_id,
            "rng": rng_states(batch_rng, device),
        })  # fmt: skip
        last_saved[0] = iter_num

    # SIGINT (Ctrl-C) and SIGTERM (cluster schedulers, `kill`) ask for a clean stop: the current
    # iteration finishes, a checkpoint is written, exit 0. A second signal quits at once.
    stop = []

    def request_stop(signum, frame):
        if stop:
            print("second signal: quitting without saving", file=sys.stderr)
            raise SystemExit(130)
        stop.append(signal.Signals(signum).name)
        if master:
            print(f"\n{stop[0]}: saving a checkpoint after this iteration, then exiting "
                  "(send it again to quit without saving)", file=sys.stderr)  # fmt: skip

    old_handlers = {s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)}

    # ---------------------------------------------------------------- training loop
    say(
        f"training {c['max_iters'] - iter_num} iterations, from iter {iter_num} to {c['max_iters']}"
    )
    t_log, iters_since_log, eval_seconds = time.time(), 0, 0.0
    try:
        while True:
            lr = lr_at(iter_num, c, lr_decay_iters)
            for group in optimizer.param_groups:
                group["lr"] = lr

            # evaluate at iter 0, every eval_interval and at the end; a resumed run already
            # evaluated (and logged) its first iteration before that checkpoint was saved
            if (iter_num % c["eval_interval"] == 0 or iter_num == c["max_iters"]) and not (
                resumed and iter_num == start_iter
            ):
                t_eval = time.time()
                check_losses()  # never evaluate, let alone save, a model that has diverged
                losses = evaluate()
                if not math.isfinite(losses["val"]):
                    raise Diverged(f"val loss became {losses['val']} at iter {iter_num}")
                improved = losses["val"] < best_val_loss
                best_val_loss = min(best_val_loss, losses["val"])
                record = dict(
                    iter=iter_num, train_loss=losses["train"], val_loss=losses["val"], lr=lr,
                    tokens_seen=tokens_seen, elapsed_s=round(elapsed(), 3),
                )  # fmt: skip
                saving = 0 < iter_num < c["max_iters"] and (c["always_save_checkpoint"] or improved)
                if master:
                    with open(os.path.join(out_dir, "log.jsonl"), "a") as f:
                        f.write(json.dumps(record) + "\n")
                    if wandb is not None:
                        wandb.log({"iter": iter_num, "train/loss": losses["train"],
                                   "val/loss": losses["val"], "lr": lr,
                                   "tokens_seen": tokens_seen}, step=iter_num)  # fmt: skip
                    say(
                        f"eval iter {iter_num}: train loss {losses['train']:.4f}, val loss "
                        f"{losses['val']:.4f}" + (f"; saving {ckpt_file}" if saving else "")
                    )
                if saving:
                    save()
                eval_seconds = time.time() - t_eval
                t_log, iters_since_log = time.time(), 0  # keep evaluation out of ms/iter
            if iter_num >= c["max_iters"]:
                break
            if ddp:  # stop together: a rank that left alone would hang the others
                flag = torch.tensor([float(bool(stop))], device=device)
                dist.all_reduce(flag, op=dist.ReduceOp.MAX)
                if flag.item() and not stop:
                    stop.append("signal on another rank")
            if stop:
                check_losses()
                save()
                launcher = f"torchrun --nproc_per_node={world_size}" if ddp else "python"
                say(
                    f"saved {ckpt_file} at iter {iter_num}; resume with:\n"
                    f"  {launcher} train.py --out_dir={out_dir} --init_from=resume"
                )
                return

            # one optimizer step: gradient_accumulation_steps micro-batches
            step_loss = torch.zeros((), device=device)
            for micro_step, (x, y, pos) in enumerate(step_batches()):
                if ddp:  # sync gradients only on the last micro-step
                    model.require_backward_grad_sync = micro_step == grad_accum - 1
                with ctx:
                    _, loss = model(x, y, pos=pos)
                    loss = loss / grad_accum  # the sum over micro-steps is the batch mean
                scaler.scale(loss).backward()
                step_loss += loss.detach().float()
            if c["grad_clip"] > 0.0:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(raw_model.parameters(), c["grad_clip"])
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            iter_num += 1
            recent.append((iter_num, step_loss))  # "iter N" = the N-th step, as in the log
            tokens_seen += tokens_per_iter
            iters_since_log += 1

            if iter_num % c["log_interval"] == 0:
                loss_mean = check_losses()  # mean over the iterations since the last line
                dt = (time.time() - t_log) / iters_since_log
                left = c["max_iters"] - iter_num
                evals_left = left // c["eval_interval"] + 1
                eta = left * dt + evals_left * eval_seconds
                mfu = flops_per_iter / dt / (world_size * peak * 1e12) if peak else None
                mfu = "" if mfu is None else f"MFU {mfu:.1%} | "
                say(
                    f"iter {iter_num} | loss {loss_mean:.4f} | lr {lr:.1e} | "
                    f"{dt * 1000:.1f} ms/iter | {tokens_per_iter / dt:,.0f} tok/s | {mfu}"
                    f"ETA {fmt_duration(eta)}"
                )
                t_log, iters_since_log = time.time(), 0

        save(finished=True)
        say(f"done: iter {iter_num}, best val loss {best_val_loss:.4f}; checkpoint {ckpt_file}")
    except Diverged as e:
        if last_saved[0] is None:
            print(f"error: {e}; no checkpoint was saved yet. Lower learning_rate (or raise "
                  "warmup_iters, or set grad_clip) and start again", file=sys.stderr)  # fmt: skip
        else:
            print(
                f"error: {e}; the last good checkpoint (iter {last_saved[0]}) is kept in "
                f"{out_dir}. Lower learning_rate (or raise warmup_iters, or set grad_clip) and "
                f"resume: python train.py --out_dir={out_dir} --init_from=resume --learning_rate=X",
                file=sys.stderr,
            )
        raise SystemExit(1) from None
    finally:
        for s, handler in old_handlers.items():
            signal.signal(s, handler)
        if wandb is not None:
            wandb.finish()
        if ddp:
            dist.destroy_process_group()


if __name__ == "__main__":
    run_cli(main)
