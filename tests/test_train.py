"""train.py end to end on a tiny model and a few-KB corpus: logs, checkpoints, exact resume
(stop/resume, SIGKILL, SIGTERM), NaN handling, wandb. CPU only; a few seconds per test."""

import errno
import io
import json
import os
import random
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

import runtime
import train
from checkpoint import load_checkpoint, rng_states, set_rng_states
from configurator import run_cli
from data.prepare import prepare_text

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORDS = "the a of to and in is was for on that with as by at from his her it an this".split()
WORDS += "river mountain city king music science history station village language".split()


def write_corpus(data_dir, name="tiny", n_words=6000):
    """A deterministic few-KB text, prepared with the byte tokenizer into data_dir/name."""
    rng = random.Random(0)
    text = "\n".join(
        " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 15))) + "."
        for _ in range(n_words // 10)
    )
    src = os.path.join(data_dir, f"{name}.txt")
    os.makedirs(data_dir, exist_ok=True)
    with open(src, "w") as f:
        f.write(text)
    prepare_text(src, name, tokenizer="bytes", data_dir=data_dir)
    return name


def tiny_args(data_dir, out_dir, **overrides):
    """Arguments for a tiny run: 1 layer, 32 wide, block 32; ~5 ms per iteration."""
    args = dict(
        dataset="tiny", data_dir=data_dir, out_dir=out_dir, encoding="alibi",
        n_layer=1, n_head=2, n_embd=32, block_size=32, batch_size=4,
        gradient_accumulation_steps=2, dropout=0.1, learning_rate=3e-3, min_lr=3e-4,
        warmup_iters=5, lr_decay_iters=60, max_iters=30, eval_interval=5, eval_iters=2,
        log_interval=5, device="cpu", compile=False,  # base.py compiles (on CPU too): seconds
    )  # fmt: skip
    args.update(overrides)
    return [f"--{k}={v}" for k, v in args.items()]


def run_train(argv):
    """train.main in this process, as the command line would run it; returns the exit code."""
    try:
        run_cli(lambda: train.main(argv))
    except SystemExit as e:
        return e.code
    return 0


def read_log(out_dir, keys=("iter", "train_loss", "val_loss", "lr", "tokens_seen")):
    with open(os.path.join(out_dir, "log.jsonl")) as f:
        return [{k: json.loads(line)[k] for k in keys} for line in f]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def straight(data_dir, tmp_path_factory, one_thread):
    """An uninterrupted run to iter 30, shared by the tests below."""
    out = str(tmp_path_factory.mktemp("straight"))
    assert run_train(tiny_args(data_dir, out)) == 0
    return out


def test_end_to_end_writes_log_checkpoint_and_config(straight, capsys):
    log = [json.loads(line) for line in open(os.path.join(straight, "log.jsonl"))]
    assert [r["iter"] for r in log] == [0, 5, 10, 15, 20, 25, 30]
    for r in log:
        assert {"iter", "train_loss", "val_loss", "lr", "tokens_seen", "elapsed_s"} <= set(r)
    assert log[-1]["tokens_seen"] == 30 * 4 * 32 * 2
    assert log[-1]["val_loss"] < log[0]["val_loss"] - 1.0  # it learns
    assert log[0]["val_loss"] == pytest.approx(torch.log(torch.tensor(256.0)).item(), abs=0.3)

    ckpt = load_checkpoint(straight)
    assert ckpt["finished"] is True and ckpt["iter_num"] == 30
    assert ckpt["best_val_loss"] == min(r["val_loss"] for r in log)
    assert not any(k.startswith(("_orig_mod.", "module.")) for k in ckpt["model"])
    assert ckpt["config"]["encoding"] == "alibi" and ckpt["model_args"]["n_embd"] == 32
    assert ckpt["model_args"]["attn_backend"] == "auto"  # configs/base.py's key reaches the model
    assert set(ckpt["rng"]) == {"torch", "cuda", "numpy", "python", "batch"}
    assert not os.path.exists(os.path.join(straight, "ckpt.pt.tmp"))
    with open(os.path.join(straight, "config.json")) as f:
        assert json.load(f)["max_iters"] == 30


def test_progress_line(data_dir, tmp_path, capsys):
    assert run_train(tiny_args(data_dir, str(tmp_path), max_iters=10)) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("iter 10 |"))
    parts = line.split(" | ")
    assert parts[1].startswith("loss ") and parts[2].startswith("lr ")
    assert parts[3].endswith(" ms/iter") and parts[4].endswith(" tok/s")
    assert parts[5].startswith("ETA ")


def test_stop_and_resume_equals_straight_run(straight, data_dir, tmp_path, capsys):
    out = str(tmp_path)
    assert run_train(tiny_args(data_dir, out, max_iters=15)) == 0
    assert load_checkpoint(out)["iter_num"] == 15
    # resume needs only the run directory: the config comes from the checkpoint
    code = run_train(["--out_dir=" + out, "--init_from=resume", "--max_iters=30"])
    assert code == 0
    assert "changed: max_iters 15 -> 30" in capsys.readouterr().out
    assert read_log(out) == read_log(straight)  # bitwise: same floats, same lr, same tokens
    a, b = load_checkpoint(out)["model"], load_checkpoint(straight)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_refuses_a_different_architecture(straight, data_dir, tmp_path, capsys):
    code = run_train(tiny_args(data_dir, straight, n_embd=64, init_from="resume"))
    assert code == 2
    err = capsys.readouterr().err
    assert "cannot resume" in err and "n_embd=64" in err and "Traceback" not in err


def test_finished_run_is_not_retrained_and_scratch_does_not_overwrite(straight, data_dir, capsys):
    mtime = os.path.getmtime(os.path.join(straight, "ckpt.pt"))
    assert run_train(["--out_dir=" + straight, "--init_from=resume"]) == 0
    assert "already finished at iter 30" in capsys.readouterr().out
    assert run_train(tiny_args(data_dir, straight)) == 2  # init_from=scratch
    assert "already holds a checkpoint" in capsys.readouterr().err
    assert os.path.getmtime(os.path.join(straight, "ckpt.pt")) == mtime


def test_nan_loss_stops_and_keeps_last_good_checkpoint(data_dir, tmp_path, capsys):
    out = str(tmp_path)
    assert run_train(tiny_args(data_dir, out, max_iters=10)) == 0
    good = load_checkpoint(out)
    capsys.readouterr()
    # a learning rate of 1e30 blows the weights up to inf within a step or two
    argv = ["--out_dir=" + out, "--init_from=resume", "--max_iters=20", "--learning_rate=1e30"]
    argv += ["--warmup_iters=0", "--grad_clip=0.0", "--log_interval=1"]
    assert run_train(argv) == 1
    err = capsys.readouterr().err
    assert re.search(r"^error: loss became (nan|inf) at iter 1[1-9];", err, re.M), err
    assert f"last good checkpoint (iter 10) is kept in {out}" in err
    kept = load_checkpoint(out)
    assert kept["iter_num"] == 10
    assert all(torch.equal(kept["model"][k], good["model"][k]) for k in good["model"])


def test_wandb_offline(data_dir, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")  # no network, no account
    monkeypatch.setenv("WANDB_SILENT", "true")
    assert run_train(tiny_args(data_dir, str(tmp_path), max_iters=5, wandb_log=True)) == 0
    assert len(read_log(str(tmp_path))) == 2
    assert os.path.isdir(tmp_path / "wandb" / "latest-run")  # the offline run, for `wandb sync`
    assert load_checkpoint(str(tmp_path))["wandb_run_id"]  # a resume continues the same run


# -----------------------------------------------------------------------------
# real processes: SIGKILL and SIGTERM


def start_train(argv, out_dir):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    log = open(os.path.join(out_dir, "stdout.txt"), "w")
    cmd = [sys.executable, os.path.join(REPO, "train.py"), *argv]
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)


def wait_for(predicate, proc, timeout=60):
    t0 = time.time()
    while not predicate():
        assert proc.poll() is None, "training ended before the test could interrupt it"
        assert time.time() - t0 < timeout, "timed out"
        time.sleep(0.01)


def test_sigkill_then_sigterm_then_resume_equals_straight_run(data_dir, tmp_path):
    """Kill -9 after the first checkpoint, resume, SIGTERM that, resume to K: the log equals an
    uninterrupted run to K."""
    out, ref = str(tmp_path / "run"), str(tmp_path / "ref")
    os.makedirs(out)
    os.makedirs(ref)
    ckpt = os.path.join(out, "ckpt.pt")
    endless = tiny_args(data_dir, out, max_iters=10**6, lr_decay_iters=200)

    proc = start_train(endless, out)
    wait_for(lambda: os.path.exists(ckpt), proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    c1 = load_checkpoint(out)["iter_num"]

    proc = start_train(endless + ["--init_from=resume"], out)
    # wait until it has saved a checkpoint of its own, then ask it to stop
    wait_for(lambda: load_checkpoint(out)["iter_num"] > c1 + 5, proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    with open(os.path.join(out, "stdout.txt")) as f:
        assert "--init_from=resume" in f.read()  # the message says how to continue
    c2 = load_checkpoint(out)["iter_num"]
    assert c2 > c1 + 5

    k = c2 + 7
    proc = start_train(endless + ["--init_from=resume", f"--max_iters={k}"], out)
    assert proc.wait(timeout=120) == 0
    proc = start_train(tiny_args(data_dir, ref, max_iters=k, lr_decay_iters=200), ref)
    assert proc.wait(timeout=120) == 0
    assert read_log(out) == read_log(ref)
    assert read_log(out)[-1]["iter"] == k


@pytest.mark.parametrize("positions", ["index", "randomized"])
def test_ddp_two_processes_match_one_process(data_dir, tmp_path, positions):
    """torchrun with 2 CPU processes (gloo) and gradient_accumulation_steps=2 sees the same
    windows, at the same randomized positions too, as one process accumulating 2 micro-batches:
    the logs agree (a rank that drew its own positions, or took another's rows, would not)."""
    ddp, single = str(tmp_path / "ddp"), str(tmp_path / "single")
    args = dict(max_iters=10, dropout=0.0, train_positions=positions)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    p = subprocess.run(
        [*cmd, "train.py", *tiny_args(data_dir, ddp, **args)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr[-2000:]
    assert "2 process(es)" in p.stdout and p.stdout.count("eval iter 10") == 1  # rank 0 prints
    assert run_train(tiny_args(data_dir, single, **args)) == 0
    a, b = read_log(ddp), read_log(single)
    assert [r["iter"] for r in a] == [r["iter"] for r in b] == [0, 5, 10]
    for ra, rb in zip(a, b):
        assert ra["val_loss"] == pytest.approx(rb["val_loss"], rel=1e-5)
        assert ra["tokens_seen"] == rb["tokens_seen"]


def test_resume_survives_a_log_line_cut_short(tmp_path):
    """SIGKILL can leave half a JSON line at the end of log.jsonl: resume drops it."""
    log = tmp_path / "log.jsonl"
    log.write_text('{"iter": 0, "val_loss": 5.0}\n{"iter": 5, "val_loss": 4.0}\n{"iter": 10, "va')
    train.truncate_log(str(log), 5)
    assert [json.loads(x)["iter"] for x in log.read_text().splitlines()] == [0, 5]


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EACCES])  # a full disk, read-only dir
def test_log_that_cannot_be_rewritten_is_one_line(code, tmp_path, monkeypatch, capsys):
    """Cutting log.jsonl back fails on a full disk or a read-only directory: one line saying what
    to do (exit 2), the log as it was."""
    log, text = tmp_path / "log.jsonl", '{"iter": 0}\n{"iter": 5}\n'
    log.write_text(text)

    def fail(*args):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(SystemExit) as e:
        run_cli(lambda: train.truncate_log(str(log), 0))
    assert e.value.code == 2 and log.read_text() == text
    fix = "free space or fix permissions, then run the same command again\n"
    assert capsys.readouterr().err == f"error: cannot write {log}: {os.strerror(code)}; {fix}"


def test_resume_at_exactly_max_iters_marks_the_run_finished(tmp_path):
    """A stopped run resumed with max_iters lowered to the iteration it stands at is complete:
    its checkpoint is marked finished instead of staying unfinished (sweeps skip finished runs)."""
    from checkpoint import load_checkpoint, save_checkpoint

    data_dir, out = str(tmp_path / "data"), str(tmp_path / "run")
    write_corpus(data_dir)
    run_train(tiny_args(data_dir, out, max_iters=10))
    ckpt = load_checkpoint(out)
    ckpt["finished"] = False  # as a run stopped at iteration 10 of a longer max_iters leaves it
    save_checkpoint(out, ckpt)
    run_train(tiny_args(data_dir, out, max_iters=10) + ["--init_from=resume"])
    assert load_checkpoint(out)["finished"] and load_checkpoint(out)["iter_num"] == 10


# -----------------------------------------------------------------------------
# CUDA random states, faked on CPU


class FakeCuda:
    """n CUDA devices' generator states, on CPU. An index past the last device is an IndexError,
    as torch.cuda.default_generators[idx] is on a real machine."""

    def __init__(self, n):
        self.states = [torch.full((8,), 100 + i, dtype=torch.uint8) for i in range(n)]

    def index(self, device):
        return device if isinstance(device, int) else (torch.device(device).index or 0)

    def get_rng_state(self, device="cuda"):
        return self.states[self.index(device)].clone()

    def set_rng_state(self, state, device="cuda"):
        self.states[self.index(device)] = state.clone()

    def get_rng_state_all(self):
        return [s.clone() for s in self.states]

    def set_rng_state_all(self, states):
        for i, s in enumerate(states):
            self.set_rng_state(s, i)


def fake_cuda(monkeypatch, n):
    cuda = FakeCuda(n)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: n)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    for name in ("get_rng_state", "set_rng_state", "get_rng_state_all", "set_rng_state_all"):
        monkeypatch.setattr(torch.cuda, name, getattr(cuda, name))
    return cuda


def through_disk(obj):
    """obj as it comes back from a checkpoint (torch.save, then torch.load(weights_only=True))."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


@pytest.mark.parametrize("saved_on, resumed_on", [("cuda", "cuda"), ("cuda:3", "cuda:0")])
def test_cuda_rng_state_resumes_on_fewer_gpus(monkeypatch, saved_on, resumed_on):
    """Saved by a run on an 8-GPU machine, resumed on a 1-GPU one: only the state of the device in
    use is saved, and it comes back exactly."""
    batch_rng = np.random.default_rng(0)
    eight = fake_cuda(monkeypatch, 8)
    rng = through_disk(rng_states(batch_rng, saved_on))
    one = fake_cuda(monkeypatch, 1)
    set_rng_states(rng, batch_rng, resumed_on)
    assert torch.equal(one.states[0], eight.states[eight.index(saved_on)])


def test_cuda_rng_states_of_older_checkpoints(monkeypatch):
    """A checkpoint holding a list of CUDA states (one per visible GPU): the current device's
    state is taken when the list has it, else the first one."""
    batch_rng = np.random.default_rng(0)
    rng = through_disk(rng_states(batch_rng, "cpu"))
    assert rng["cuda"] is None  # a CPU run saves no CUDA state...
    old = [torch.full((8,), i, dtype=torch.uint8) for i in range(8)]
    rng["cuda"] = old
    one = fake_cuda(monkeypatch, 1)
    set_rng_states(rng, batch_rng, "cuda")
    assert torch.equal(one.states[0], old[0])
    eight = fake_cuda(monkeypatch, 8)
    set_rng_states(rng, batch_rng, "cuda:3")
    assert torch.equal(eight.states[3], old[3]) and eight.states[0][0] == 100  # only cuda:3
    two = fake_cuda(monkeypatch, 2)
    set_rng_states(dict(rng, cuda=old[5:6]), batch_rng, "cuda:1")
    assert torch.equal(two.states[1], old[5])
    set_rng_states(rng, batch_rng, "cpu")  # ...and a CPU resume touches none
    assert two.states[0][0] == 100


def test_resume_applies_optimizer_overrides(data_dir, tmp_path, capsys):
    """--weight_decay/--beta1/--beta2 on resume reach the optimizer (the config wins over the
    checkpoint's param groups); a resume without them keeps the values the run has."""
    out = str(tmp_path)
    assert run_train(tiny_args(data_dir, out, max_iters=5)) == 0
    before = load_checkpoint(out)["optimizer"]["param_groups"]
    assert 0.1 in {g["weight_decay"] for g in before}  # the decayed parameters' group
    assert all(tuple(g["betas"]) == (0.9, 0.95) for g in before)
    argv = ["--out_dir=" + out, "--init_from=resume", "--max_iters=10"]
    assert run_train(argv + ["--weight_decay=0.3", "--beta1=0.8", "--beta2=0.9"]) == 0
    assert "weight_decay 0.1 -> 0.3, beta1 0.9 -> 0.8, beta2 0.95 -> 0.9" in capsys.readouterr().out
    after = load_checkpoint(out)["optimizer"]["param_groups"]
    wd = [g["weight_decay"] for g in before]  # groups exempt from decay stay at theirs
    assert [g["weight_decay"] for g in after] == [0.3 if w == 0.1 else w for w in wd]
    assert all(tuple(g["betas"]) == (0.8, 0.9) for g in after)
    assert [g["params"] for g in after] == [g["params"] for g in before]
    assert run_train(["--out_dir=" + out, "--init_from=resume", "--max_iters=15"]) == 0
    again = load_checkpoint(out)["optimizer"]["param_groups"]
    assert [(g["weight_decay"], tuple(g["betas"])) for g in again] == [
        (g["weight_decay"], tuple(g["betas"])) for g in after
    ]


def test_compile_on_cpu_matches_eager(data_dir, tmp_path, capsys):
    """--compile=True on CPU (inductor) trains, and logs eager's losses (dropout off: compiled
    dropout draws other masks). Compiling costs ~10-25 s (more on a busy machine)."""
    eager, compiled = str(tmp_path / "eager"), str(tmp_path / "compiled")
    args = dict(max_iters=4, eval_interval=2, log_interval=2, dropout=0.0)
    assert run_train(tiny_args(data_dir, eager, **args)) == 0
    assert ", eager;" in capsys.readouterr().out
    assert run_train(tiny_args(data_dir, compiled, compile=True, **args)) == 0
    assert "device cpu, float32, compiled;" in capsys.readouterr().out
    a, b = read_log(eager), read_log(compiled)
    assert [r["iter"] for r in a] == [r["iter"] for r in b] == [0, 2, 4]
    for ra, rb in zip(a, b):
        assert rb["train_loss"] == pytest.approx(ra["train_loss"], rel=1e-4)
        assert rb["val_loss"] == pytest.approx(ra["val_loss"], rel=1e-4)
    assert b[-1]["val_loss"] < b[0]["val_loss"]  # it trains
    assert not any(k.startswith("_orig_mod.") for k in load_checkpoint(compiled)["model"])


def test_compile_on_cpu_without_a_compiler_runs_eager(data_dir, tmp_path, capsys, monkeypatch):
    """No g++ (inductor needs one on CPU): one note, then eager training, not a traceback."""
    monkeypatch.setattr(runtime, "has_cpp_compiler", lambda: False)
    out = str(tmp_path / "run")
    assert run_train(tiny_args(data_dir, out, compile=True, max_iters=2, eval_interval=2)) == 0
    printed = capsys.readouterr().out
    assert "needs a C++ compiler (g++); none found: running eager" in printed
    assert "device cpu, float32, eager;" in printed
