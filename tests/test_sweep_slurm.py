"""scripts/sweep.py --launcher=slurm (scripts/slurm.py). submitit's local executor runs the jobs
here (real subprocesses: scripts/sweep.py runs with submitit.AutoExecutor answering
cluster="local"): end to end, exact resume after a preemption, failure isolation, no
resubmission. The settings' mapping onto submitit's parameters and the job bookkeeping are tested
with fakes; errors are one line."""

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import submitit
import torch
from test_sweep import ROOT, make_dataset, write_sweep

from configurator import UserError
from scripts import slurm
from scripts import sweep as sw

# scripts/sweep.py as a user runs it, with SLURM replaced by submitit's local executor
LOCAL_SLURM = """
import os, runpy, sys
import submitit

sys.path.insert(0, os.getcwd())
import scripts.slurm

scripts.slurm.POLL_S = 0.1  # jobs of seconds: look at them often
_auto = submitit.AutoExecutor

def local(folder, cluster):
    ex = _auto(folder, cluster="local")
    ex.update_parameters(timeout_min=10)  # the local default (2 min) is tight on a busy machine
    return ex

submitit.AutoExecutor, submitit.SlurmJob = local, submitit.LocalJob
sys.argv = ["scripts/sweep.py", *sys.argv[1:]]
runpy.run_path("scripts/sweep.py", run_name="__main__")
"""


def slurm_sweep(root, runs, **kw):
    path = write_sweep(root, runs, **kw)
    path.write_text(path.read_text() + "slurm = dict(time=30, partition='gpu')\n")
    return path


def command(root, path, *args):
    wrapper = root / "local_slurm.py"
    wrapper.write_text(LOCAL_SLURM)
    return [sys.executable, str(wrapper), str(path), *args]


def sweep(root, path, *args):
    return subprocess.run(
        command(root, path, *args), cwd=ROOT, capture_output=True, text=True, timeout=300
    )


def statuses(root):
    rows = json.loads((root / "sweep" / "status.json").read_text())["runs"]
    return {r["run"]: r for r in rows}


def test_jobs_end_to_end_failure_isolated_finished_runs_not_resubmitted(tmp_path):
    make_dataset(tmp_path)
    runs = [
        dict(name="alibi", config="configs/demo/alibi.py"),
        dict(name="broken", config="configs/demo/rope.py"),  # valid settings; fails as it runs
    ]
    path = slurm_sweep(tmp_path, runs)
    (tmp_path / "sweep" / "broken" / "seed1").mkdir(parents=True)
    (tmp_path / "sweep" / "broken" / "seed1" / "ckpt.pt").write_bytes(b"garbage")  # to resume
    p = sweep(tmp_path, path, "--launcher=slurm")
    assert p.returncode == 1, p.stdout + p.stderr  # one failed run
    assert "submitted 2 SLURM job(s)" in p.stdout and "FAILED broken/seed1" in p.stdout
    st = statuses(tmp_path)
    assert st["alibi"]["status"] == "done" and st["alibi"]["job"]
    assert st["broken"]["status"] == "failed" and "ckpt.pt" in st["broken"]["error"]
    run_dir = tmp_path / "sweep" / "alibi" / "seed1"
    records = json.loads((run_dir / "eval_lengths.json").read_text())
    assert [r["length"] for r in records] == [16, 32]
    # collected at the end: the tables and the plots
    with open(tmp_path / "sweep" / "results.csv") as f:
        rows = {r["run"]: r for r in csv.DictReader(f)}
    assert float(rows["alibi"]["ppl@32"]) == pytest.approx(records[1]["ppl"], rel=1e-5)
    assert "failed" in rows["broken"]["status"]
    assert (tmp_path / "sweep" / "ppl_vs_length.png").exists()
    # --status: every run's state, job and log
    s = sweep(tmp_path, path, "--status")
    assert s.returncode == 0, s.stderr
    lines = s.stdout.splitlines()
    alibi = next(line for line in lines if "alibi/seed1" in line)
    assert re.search(r"alibi/seed1 +done +job \d+", alibi) and alibi.endswith("train.log")
    bad = next(i for i, line in enumerate(lines) if "broken/seed1" in line)
    assert "failed" in lines[bad] and "ckpt.pt" in lines[bad + 1]
    assert "1/2 done, 1 failed" in s.stdout
    # the same command again: the finished run is not resubmitted, the failed one is
    again = sweep(tmp_path, path, "--launcher=slurm")
    assert again.returncode == 1 and "submitted 1 SLURM job(s)" in again.stdout
    st2 = statuses(tmp_path)
    assert st2["alibi"]["job"] == st["alibi"]["job"] and st2["broken"]["job"] != st["broken"]["job"]
    assert (run_dir / "train.log").read_text().count("\n=== ") == 1


def job_process(controller_pid):
    """The pid of the process running a local job (the child of its controller process)."""
    for d in os.listdir("/proc"):
        try:
            with open(f"/proc/{d}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmd = f.read()
        except (OSError, ValueError, IndexError):
            continue
        if ppid == controller_pid and b"submitit.core._submit" in cmd:
            return int(d)
    return None


def iter_losses(log):
    return dict(re.findall(r"^iter (\d+) \| loss (\S+)", log, flags=re.M))


def test_preempted_job_is_requeued_and_resumes_exactly(tmp_path):
    """The preemption signal in the middle of training: train.py saves, submitit requeues the
    job, which resumes: every iteration's loss, the final weights and the evaluation equal those
    of the same run never interrupted."""
    make_dataset(tmp_path)
    runs = [dict(name=n, config="configs/demo/alibi.py") for n in ("preempted", "reference")]
    path = slurm_sweep(tmp_path, runs, max_iters=300)
    path.write_text(path.read_text().replace("'eval_interval': 2", "'eval_interval': 500"))
    p = subprocess.Popen(
        command(tmp_path, path, "--launcher=slurm"),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    run_dir = tmp_path / "sweep" / "preempted" / "seed1"
    log = run_dir / "train.log"
    deadline = time.time() + 120
    while time.time() < deadline and not (log.exists() and "iter 50 " in log.read_text()):
        time.sleep(0.1)
    job_id = statuses(tmp_path)["preempted"]["job"]
    pid = job_process(int(job_id))
    assert pid, "no job process"
    os.kill(pid, signal.SIGUSR2)  # what SLURM sends before a preemption or the time limit
    out, _ = p.communicate(timeout=240)
    assert p.returncode == 0, out
    text = log.read_text()
    assert text.count("\n=== ") == 2 and "--init_from=resume" in text and "resuming" in text
    job_log = (tmp_path / "sweep" / "slurm" / f"{job_id}_0_log.out").read_text()
    assert "Requeued job" in job_log
    ref_dir = tmp_path / "sweep" / "reference" / "seed1"
    losses, ref = iter_losses(text), iter_losses((ref_dir / "train.log").read_text())
    assert len(ref) == 300 and losses == ref
    a = torch.load(run_dir / "ckpt.pt", weights_only=True)
    b = torch.load(ref_dir / "ckpt.pt", weights_only=True)
    assert a["finished"] and a["iter_num"] == 300
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in b["model"])
    ppl = [json.loads((d / "eval_lengths.json").read_text())[0]["ppl"] for d in (run_dir, ref_dir)]
    assert ppl[0] == ppl[1]
    assert statuses(tmp_path)["preempted"]["status"] == "done"


def test_without_submitit_one_line_error(tmp_path, monkeypatch, capsys):
    path = slurm_sweep(tmp_path, [dict(name="alibi", config="configs/demo/alibi.py")])
    monkeypatch.setitem(sys.modules, "submitit", None)  # `import submitit` fails
    with pytest.raises(SystemExit) as e:
        sw.run_cli(lambda: sw.main([str(path), "--launcher=slurm"]))
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("error:") and err.count("\n") == 1
    assert "pip install submitit" in err


class FakeExecutor:
    made = []

    def __init__(self, folder, cluster):
        self.folder, self.cluster, self.params, self.submitted = folder, cluster, {}, []
        FakeExecutor.made.append(self)

    def update_parameters(self, **kwargs):
        self.params.update(kwargs)

    def submit(self, fn):
        self.submitted.append(fn)
        return FakeJob(str(100 + len(self.submitted)), states=["PENDING", "COMPLETED"])


class FakeJob:
    """A SLURM job whose state goes through `states`, one per look (done()); it returns ok."""

    jobs = {}

    def __init__(self, job_id, states):
        self.job_id, self.states = job_id, list(states)
        self.paths = type("Paths", (), dict(result_pickle=Path(__file__)))  # a result exists
        FakeJob.jobs[job_id] = self

    def done(self):
        self.state = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        return self.state == "COMPLETED"

    def result(self):
        return dict(status="ok", step="eval", error="", seconds=1.0)


def test_settings_map_onto_submitit_parameters(tmp_path, monkeypatch):
    monkeypatch.setattr(submitit, "AutoExecutor", FakeExecutor)
    monkeypatch.delenv("PYTHONPATH", raising=False)  # restored after the test
    path = slurm_sweep(tmp_path, [dict(name="alibi", config="configs/demo/alibi.py")])
    argv = [path, "--slurm_time=720", "--slurm_gpus_per_node=2", "--slurm_account=1234"]
    argv += ["--slurm_constraint=a100"]
    cfg = sw.parse_args([str(a) for a in argv], sw.DEFAULTS, positional="sweep")
    s = sw.runs.load_sweep(str(path))
    ex = slurm.executor(s, slurm.parameters(s, cfg))
    assert ex.cluster == "slurm" and ex.folder == str(tmp_path / "sweep" / "slurm")
    assert os.environ["PYTHONPATH"] == str(ROOT)  # a job imports scripts.slurm from anywhere
    assert ex.params == dict(
        slurm_partition="gpu",  # from the file
        slurm_time=720,  # the flag wins over the file's 30
        slurm_gpus_per_node=2,
        slurm_account="1234",
        slurm_constraint="a100",
    )
    # two GPUs per job: train.py under torchrun, as with gpus_per_run=2 on one node
    cmd = sw.runs.Task(s, s["runs"][0], 1).train_cmd(resume=False)
    assert cmd[1:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    # without GPUs per job: the sweep's gpus_per_run (1)
    s = sw.runs.load_sweep(str(path))
    cfg = sw.parse_args([str(path)], sw.DEFAULTS, positional="sweep")
    assert slurm.parameters(s, cfg)["slurm_gpus_per_node"] == 1
    # 0: a CPU job, which asks sbatch for no GPUs at all
    cfg = sw.parse_args([str(path), "--slurm_gpus_per_node=0"], sw.DEFAULTS, positional="sweep")
    assert "slurm_gpus_per_node" not in slurm.parameters(s, cfg)


@pytest.mark.parametrize(
    "slurm, message",
    [
        (
            "dict(partiton='gpu', time=60)",
            "'partiton' (did you mean 'partition'?); valid: partition",
        ),
        ("dict(partition='gpu')", "time limit in minutes"),
        ("dict(time='12:00:00')", "time must be an int"),
    ],
)
def test_bad_slurm_settings_are_one_line_errors(tmp_path, slurm, message):
    path = write_sweep(tmp_path, [dict(name="alibi", config="configs/demo/alibi.py")])
    path.write_text(path.read_text() + f"slurm = {slurm}\n")
    p = subprocess.run(
        [sys.executable, "scripts/sweep.py", str(path), "--launcher=slurm", "--dry_run"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert p.returncode == 2 and p.stderr.startswith("error:") and p.stderr.count("\n") == 1
    assert message in p.stderr, p.stderr


def test_queued_or_running_jobs_are_not_submitted_twice(tmp_path, monkeypatch, capsys):
    """status.json names a job for run a that SLURM still runs: only b is submitted, and the
    command waits for both."""
    monkeypatch.setattr(submitit, "AutoExecutor", FakeExecutor)
    monkeypatch.setattr(submitit, "SlurmJob", lambda folder, job_id: FakeJob.jobs[job_id])
    monkeypatch.delenv("PYTHONPATH", raising=False)
    monkeypatch.setattr(slurm, "POLL_S", 0.01)
    monkeypatch.setattr(slurm.runs, "collect_all", lambda sweep, tasks: None)
    FakeJob("42", states=["RUNNING", "RUNNING", "COMPLETED"])
    make_dataset(tmp_path)  # the sweep checks every run's settings before it submits
    runs = [dict(name=n, config="configs/demo/alibi.py") for n in ("a", "b")]
    path = slurm_sweep(tmp_path, runs)
    (tmp_path / "sweep").mkdir()
    rows = [dict(run="a", seed=1, status="queued", job="42")]
    (tmp_path / "sweep" / "status.json").write_text(json.dumps(dict(name="tiny", runs=rows)))
    assert sw.main([str(path), "--launcher=slurm"]) == 0
    ex = FakeExecutor.made[-1]
    assert [fn.args[1]["name"] for fn in ex.submitted] == ["b"]
    out = capsys.readouterr().out
    assert "submitted 1 SLURM job(s)" in out and "1 running, 1 queued" in out
    st = statuses(tmp_path)
    assert st["a"]["job"] == "42" and st["b"]["job"] == "101"
    assert st["a"]["status"] == st["b"]["status"] == "ok"
    with pytest.raises(UserError, match="--launcher must be one of local, slurm; got 'slrum'"):
        sw.main([str(path), "--launcher=slrum"])
