"""train.py's loop does not wait for the device between progress lines, and a run directory has
one writer (out_dir/.lock). CPU only; a few seconds per test."""

import collections
import fcntl
import os
import signal
import socket
import subprocess
import sys

import pytest
import torch
from test_train import read_log, run_train, tiny_args

import train
from checkpoint import load_checkpoint
from configurator import UserError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# what copies a device tensor to the host, so waits for the device, when called on one
SYNCS = ("item", "tolist", "cpu", "numpy", "nonzero", "equal", "__bool__", "__int__", "__float__")
SYNCS += ("__index__", "__complex__", "__format__", "__array__", "__repr__")
pytestmark = pytest.mark.usefixtures("one_thread")


def spy_on_syncs(monkeypatch):
    """Every sync the repo's own code asks for, as "name file:line" (torch's internals left out:
    their .item() on the optimizer's step count reads a CPU tensor). The training loop runs as on
    CUDA: batches go through pinned memory (faked on CPU), and a host->device .to() made by
    train.py without non_blocking=True counts, as it waits for the device there."""
    calls = []

    def caller():
        f = sys._getframe(2)
        name = f.f_code.co_filename
        inside = name.startswith(REPO) and os.sep + ".venv" + os.sep not in name
        return f"{os.path.relpath(name, REPO)}:{f.f_lineno}" if inside else None

    def spy(name, original):
        def wrapper(*args, **kwargs):
            where = caller()
            if name == "to":  # a blocking copy to a device (a dtype cast copies nothing across)
                to_device = any(isinstance(a, (str, torch.device)) for a in args[1:])
                blocking = to_device and not kwargs.get("non_blocking")
                where = where if blocking and where and where.startswith("train.py") else None
            if where:
                calls.append(f"{name} {where}")
            return original(*args, **kwargs)

        return wrapper

    for name in (*SYNCS, "to"):
        monkeypatch.setattr(torch.Tensor, name, spy(name, getattr(torch.Tensor, name)))
    monkeypatch.setattr(torch, "equal", spy("torch.equal", torch.equal))
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda t: t)
    loop = train.train

    def as_on_cuda(r):
        r.device_type = "cuda"  # after the model is built and wrapped: only the loop sees it
        return loop(r)

    monkeypatch.setattr(train, "train", as_on_cuda)
    return calls


def as_one_ddp_process(monkeypatch):
    """torch.distributed with one gloo process, in this process: train.py's DDP code runs."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    env = dict(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
    for k, v in env.items():
        monkeypatch.setenv(k, v)


@pytest.mark.parametrize(
    "ddp, overrides",
    [(False, dict(train_positions="randomized")),
     (True, dict(train_positions="randomized", time="learned"))],
)  # fmt: skip
def test_no_sync_between_progress_lines(data_dir, tmp_path, monkeypatch, ddp, overrides):
    """Log and eval intervals longer than the run: the syncs of 24 iterations are those of 12
    (evaluation at iter 0 and at the end), so no iteration syncs. ddp: torch.distributed with one
    gloo process, so that the ranks' agreement on a stop signal is counted too."""
    if ddp:
        as_one_ddp_process(monkeypatch)
    calls = spy_on_syncs(monkeypatch)
    counts = []
    for n in (12, 24):
        calls.clear()
        args = dict(max_iters=n, log_interval=1000, eval_interval=1000, **overrides)
        assert run_train(tiny_args(data_dir, str(tmp_path / str(n)), **args)) == 0
        counts.append(collections.Counter(calls))
    assert any(c.startswith("item train.py") for c in counts[0])  # the evaluations are seen
    assert not counts[1] - counts[0], f"syncs every iteration: {counts[1] - counts[0]}"


def test_ddp_stops_at_the_next_progress_line(data_dir, tmp_path, monkeypatch, capsys):
    """Under DDP the ranks agree on a stop signal where the loop waits for the device anyway
    (progress lines, evaluations): SIGTERM at iter 7 saves at iter 10 and says how to resume."""
    as_one_ddp_process(monkeypatch)
    step = train.train_step

    def step_then_signal(r):
        step(r)
        if r.iter_num == 7:
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(train, "train_step", step_then_signal)
    args = dict(max_iters=30, log_interval=5, eval_interval=100)
    assert run_train(tiny_args(data_dir, str(tmp_path), **args)) == 0
    printed = capsys.readouterr()
    assert "SIGTERM: saving a checkpoint by the next progress line" in printed.err
    assert load_checkpoint(str(tmp_path))["iter_num"] == 10
    assert "saved" in printed.out and "torchrun --nproc_per_node=1 train.py" in printed.out


# -----------------------------------------------------------------------------
# one writer per run directory


def hold_lock(out_dir, text):
    f = open(os.path.join(out_dir, ".lock"), "a+")
    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    f.write(text)
    f.flush()
    return f


def read_lock(out_dir):
    with open(os.path.join(out_dir, ".lock")) as f:
        return f.read()


def test_a_second_run_on_a_locked_directory_is_refused(data_dir, tmp_path, capsys, monkeypatch):
    out = str(tmp_path)
    held = hold_lock(out, "train.py (pid 4242 on node7)\n")
    assert run_train(tiny_args(data_dir, out, max_iters=2)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pid 4242 on node7" in err and "--out_dir" in err, err
    assert os.listdir(out) == [".lock"]  # nothing written
    held.close()  # released: the run goes ahead, and its lock names it while it runs
    seen, loop = [], train.train
    monkeypatch.setattr(train, "train", lambda r: (seen.append(read_lock(out)), loop(r))[1])
    assert run_train(tiny_args(data_dir, out, max_iters=2)) == 0
    assert f"pid {os.getpid()} on {os.uname().nodename}" in seen[0]
    assert len(read_log(out)) == 2


def test_a_killed_run_leaves_no_lock(tmp_path):
    """Another process holds the lock as train.py does, and is SIGKILLed: the kernel drops the
    lock with it and the directory is free (no torch in that process: it starts in ~50 ms)."""
    out, c = str(tmp_path), dict(out_dir=str(tmp_path), init_from="scratch")
    code = (f"import fcntl, os, time\nf = open({os.path.join(out, '.lock')!r}, 'a+')\n"
            "fcntl.flock(f, fcntl.LOCK_EX)\nf.write(f'pid {os.getpid()}')\nf.flush()\n"
            "print('locked', flush=True)\ntime.sleep(60)")  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(UserError, match=f"pid {proc.pid}"):
            train.lock_run(c)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        with train.lock_run(c):  # free
            assert f"pid {os.getpid()}" in read_lock(out)
    finally:
        proc.kill()
        proc.wait()
