"""
Train and evaluate every run of a sweep, then tabulate: the overnight workhorse.

    python scripts/sweep.py configs/sweeps/demo.py
    python scripts/sweep.py configs/sweeps/wikitext103.py --dry_run      # what would run
    python scripts/sweep.py configs/sweeps/wikitext103.py --only=alibi,rope
    python scripts/sweep.py configs/sweeps/wikitext103.py --gpus=all      # one run per GPU
    python scripts/sweep.py configs/sweeps/wikitext103.py --gpus=0,1,2,3 --gpus_per_run=2
    python scripts/sweep.py configs/sweeps/wikitext103.py --launcher=slurm  # one SLURM job per run
    python scripts/sweep.py configs/sweeps/wikitext103.py --status         # every run's state
    python scripts/sweep.py configs/sweeps/wikitext103.py --collect        # tables and plots

A sweep file is plain Python (see configs/sweeps/demo.py):
    name = "demo"                      # a label for tables and plots
    out_dir = "out/sweeps/demo"        # run r, seed k trains into out_dir/r/seed{k}/
    common = dict(max_iters=800)       # overrides for every run
    runs = [dict(name="alibi", config="configs/demo/alibi.py", overrides={...}), ...]
    seeds = [1337]                     # every run is trained once per seed
    eval_args = dict(lengths=[64, 128], mode="nonoverlapping")   # for scripts/eval_lengths.py
    jobs = 1                           # runs trained at the same time
    threads = 0                        # CPU threads per run (OMP_NUM_THREADS); 0 = torch default
    gpus = [0, 1, 2, 3]                # or "all": spread the runs over these GPUs (default: none)
    gpus_per_run = 1                   # > 1: each run trains with DDP under torchrun
    slurm = dict(partition="gpu", time=720, gpus_per_node=1, account="...", constraint="...")

For each run and seed: train.py (skipped when its checkpoint is finished, resumed with
--init_from=resume when one exists but is not), then scripts/eval_lengths.py (skipped when
eval_lengths.json already holds every requested length of the current checkpoint). Both run as
subprocesses, so a crash, NaN or bad config fails that run only (its error is recorded and the
sweep goes on) and memory is freed between runs; their output goes to train.log / eval.log in
the run's directory. Rerunning the same command after an interruption (Ctrl-C, a crash, a
reboot) picks up where it stopped.

With gpus (the sweep file's or --gpus=, which wins), runs are spread over a node's GPUs through
CUDA_VISIBLE_DEVICES: the GPUs are cut into groups of gpus_per_run, each run (train, then eval)
takes the first group to free and keeps it until it is done, so no two runs ever share a GPU,
and `jobs` becomes the number of groups (a smaller `jobs` in the file caps it). A run sees its
group as cuda:0, cuda:1, ... (device "auto" or "cuda" in its config); with gpus_per_run > 1 it
trains under torchrun (python -m torch.distributed.run --standalone --nproc_per_node=N train.py)
and evaluates on the first GPU of its group. Device indices are the sweep's own: under
CUDA_VISIBLE_DEVICES=4,5,6,7, gpus=[0, 1] means devices 4 and 5.

With --launcher=slurm (needs `pip install submitit`), each run and seed that is not done, queued
or running is one SLURM job (submitit's slurm_<key> parameters from `slurm`, or --slurm_<key>=
flags, which win; time in minutes is required; gpus_per_node defaults to gpus_per_run). The job
runs the same train and eval subprocesses, with the same logs. Before its time limit (and at a
preemption, where the cluster signals it) it gets USR2: train.py saves and submitit requeues
the job, which resumes. The command then waits for the jobs (Ctrl-C stops the waiting, not the
jobs; the same command later re-attaches to them by the ids in status.json, so nothing is
submitted twice), then collects. --status shows each run's state, job and log; --collect writes
the tables and the plots (scripts/plot.py) from what is done.

Writes out_dir/status.json (one entry per run and seed), results.csv and results.md (one row per
run: mean ± sample std over seeds at each evaluation length). Exit status: 0 if every run
succeeded, else the number of failed runs (run x seed; at most 125); 130 when interrupted;
2 for a bad sweep file or option (printed as `error: ...`).
"""

import csv
import difflib
import importlib.util
import json
import math
import os
import queue
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # repo root

from configurator import UserError, parse_args, run_cli
from data.prepare import write_json

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULTS = dict(
    sweep="",  # the sweep file (the positional argument)
    dry_run=False,  # list what would run, run nothing
    only="",  # names of the runs to do, e.g. --only=alibi,rope (default: all)
    gpus="",  # "all" or device indices, e.g. --gpus=0,1,2,3 (default: the sweep file's gpus)
    gpus_per_run=0,  # GPUs per run (default: the sweep file's gpus_per_run, else 1)
    launcher="local",  # local (this machine) | slurm (one job per run and seed, via submitit)
    status=False,  # show every run's state (and its SLURM job's), run nothing
    collect=False,  # write results.csv / results.md and the plots from what is done, run nothing
    # with --launcher=slurm, win over the sweep file's slurm = dict(...) (see SLURM_KEYS)
    slurm_partition=None,
    slurm_time=None,
    slurm_gpus_per_node=None,
    slurm_account=None,
    slurm_constraint=None,
)
SWEEP_KEYS = dict(
    name=str, out_dir=str, common=dict, runs=list, seeds=list, eval_args=dict, jobs=int,
    threads=int, gpus=(list, str), gpus_per_run=int, slurm=dict,
)  # fmt: skip
# slurm = dict(...) in a sweep file: each key is submitit's slurm_<key> executor parameter
SLURM_KEYS = dict(partition=str, time=int, gpus_per_node=int, account=str, constraint=str)
POLL_S = 2.0  # how often the slurm launcher looks at its jobs (a file check; sacct at most 1/min)
METRICS = ("ppl", "word_ppl", "bits_per_byte")  # tabulated when every record has them
METRIC_TITLES = {
    "ppl": "token-level perplexity",
    "word_ppl": "word-level perplexity (total NLL / (words + one end-of-line per line))",
    "bits_per_byte": "bits per byte",
}


# -----------------------------------------------------------------------------
# the sweep file


def _nearest(key, valid):
    close = difflib.get_close_matches(key, list(valid), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def load_sweep(path):
    """Run the sweep file and check what it defines. UserError on anything wrong with it."""
    if not os.path.isfile(path):
        raise UserError(f"sweep file not found: {path}")
    ns = {}
    try:
        with open(path) as f:
            exec(compile(f.read(), path, "exec"), ns)
    except Exception as e:
        raise UserError(f"{path}: {type(e).__name__}: {e}") from e
    ns = {k: v for k, v in ns.items() if not k.startswith("_") and not callable(v)}
    ns = {k: v for k, v in ns.items() if type(v).__name__ != "module"}
    for k, v in ns.items():
        if k not in SWEEP_KEYS:
            raise UserError(f"{path}: unknown key '{k}'{_nearest(k, SWEEP_KEYS)}")
        if not isinstance(v, SWEEP_KEYS[k]):
            kind = "a list or 'all'" if k == "gpus" else f"a {SWEEP_KEYS[k].__name__}"
            raise UserError(f"{path}: {k} must be {kind}, got {v!r}")
    if not ns.get("runs"):
        raise UserError(f"{path}: define runs = [dict(name=..., config=...), ...]")
    sweep = dict(
        name=os.path.splitext(os.path.basename(path))[0],
        common={},
        seeds=[1337],
        eval_args={},
        jobs=None,  # None: 1, or one per GPU group with gpus (see plan_gpus)
        threads=0,
        gpus=None,
        gpus_per_run=1,
        slurm={},
        groups=None,  # with gpus: the CUDA_VISIBLE_DEVICES value of each GPU group
    )
    sweep.update(ns)
    sweep.setdefault("out_dir", os.path.join("out", "sweeps", sweep["name"]))
    names = set()
    for i, r in enumerate(sweep["runs"]):
        if not isinstance(r, dict) or "config" not in r:
            raise UserError(f"{path}: runs[{i}] must be dict(name=..., config=..., overrides={{}})")
        bad = set(r) - {"name", "config", "overrides", "seeds", "eval_variants"}
        if bad:
            raise UserError(f"{path}: runs[{i}] has unknown keys {sorted(bad)}")
        r.setdefault("name", os.path.splitext(os.path.basename(r["config"]))[0])
        r.setdefault("overrides", {})
        r["eval_variants"] = [dict(v) for v in r.get("eval_variants", [])]
        for v in r["eval_variants"]:
            extra = set(v) - VARIANT_KEYS
            if extra or not (v.get("rope_scaling") or v.get("encoding_kwargs")):
                raise UserError(
                    f"{path}: runs[{i}] eval_variants entries are dicts of {sorted(VARIANT_KEYS)}"
                    " with rope_scaling or encoding_kwargs, e.g. dict(rope_scaling='yarn')"
                )
            if "variant" not in v:  # `variant=...` names it explicitly
                from checkpoint import ROPE_FACTOR, variant_label  # torch: only when needed

                args = (v.get("rope_scaling"), v.get("rope_factor", ROPE_FACTOR))
                v["variant"] = variant_label(*args, v.get("encoding_kwargs"))
        if not re.fullmatch(r"[\w.+-]+", r["name"]) or r["name"] in names:
            raise UserError(f"{path}: run names must be unique words, got '{r['name']}' twice")
        names.add(r["name"])
    if sweep["jobs"] is not None and sweep["jobs"] < 1:
        raise UserError(f"{path}: jobs must be at least 1")
    return sweep


# -----------------------------------------------------------------------------
# GPUs: one node, one run per GPU group


def cuda_devices():
    """How each CUDA device this process sees is named in CUDA_VISIBLE_DEVICES: the entries of
    our own CUDA_VISIBLE_DEVICES when it is set (so that a child gets the device we call cuda:i),
    else 0 ... device_count - 1. Empty without CUDA."""
    import torch

    n = torch.cuda.device_count()
    own = os.environ.get("CUDA_VISIBLE_DEVICES")
    if own is not None:
        return [d.strip() for d in own.split(",")][:n]
    return [str(i) for i in range(n)]


def parse_gpus(text):
    """--gpus=all / --gpus=0,1,2,3 -> "all" / [0, 1, 2, 3]."""
    text = text.strip().strip("[]()")
    if text == "all":
        return text
    try:
        return [int(d) for d in text.split(",") if d.strip()]
    except ValueError:
        raise UserError(
            f"--gpus must be 'all' or device indices like 0,1,2,3, got '{text}'"
        ) from None


def gpu_groups(gpus, per_run, devices):
    """The GPU groups the runs take turns on: `gpus` ("all" or indices i of cuda:i, as this
    process sees them) cut into groups of per_run, each as the CUDA_VISIBLE_DEVICES value its
    runs get. `devices`: cuda_devices(). UserError on anything invalid."""
    if gpus == "all":
        if not devices:
            raise UserError("gpus='all' but no CUDA device is visible")
        gpus = list(range(len(devices)))
    elif isinstance(gpus, str) or not all(type(i) is int and i >= 0 for i in gpus):
        raise UserError(f"gpus must be 'all' or a list of device indices like [0, 1], got {gpus!r}")
    twice = sorted({i for i in gpus if gpus.count(i) > 1})
    if twice:
        raise UserError(f"gpus lists device {twice[0]} more than once: {gpus}")
    missing = [i for i in gpus if i >= len(devices)]
    if missing:
        seen = f"{len(devices)} visible: 0-{len(devices) - 1}" if devices else "none visible"
        raise UserError(f"gpus: no CUDA device {missing[0]} ({seen})")
    if per_run < 1 or per_run > len(gpus) or len(gpus) % per_run:
        raise UserError(
            f"gpus_per_run={per_run} must be at least 1 and divide the {len(gpus)} GPU(s) in gpus"
        )
    names = [devices[i] for i in gpus]
    return [",".join(names[i : i + per_run]) for i in range(0, len(names), per_run)]


def plan_gpus(sweep, cfg):
    """Resolve gpus / gpus_per_run (the CLI's win over the file's) into sweep["groups"] and set
    sweep["jobs"]: one run per group unless the file asks for fewer; 1 without gpus."""
    gpus = parse_gpus(cfg["gpus"]) if cfg["gpus"] else sweep["gpus"]
    per_run = cfg["gpus_per_run"] or sweep["gpus_per_run"]
    if not gpus:  # None or []: today's behaviour, every run on the device its config names
        if per_run != 1:
            raise UserError(f"gpus_per_run={per_run} needs gpus (e.g. --gpus=all)")
        sweep["jobs"] = sweep["jobs"] or 1
        return
    for where, d in device_settings(sweep):
        if d.startswith("cuda:") and d != "cuda:0":
            raise UserError(
                f"{where} sets device='{d}': with gpus each run sees its own GPU(s) as cuda:0, ..."
                " (use 'cuda' or 'auto')"
            )
    sweep["groups"] = gpu_groups(gpus, per_run, cuda_devices())
    sweep["gpus_per_run"] = per_run
    sweep["jobs"] = min(sweep["jobs"] or len(sweep["groups"]), len(sweep["groups"]))


def device_settings(sweep):
    """(where, device) for every `device` the sweep file sets."""
    found = [
        ("common", sweep["common"].get("device")),
        ("eval_args", sweep["eval_args"].get("device")),
    ]
    found += [(f"run {r['name']}", r["overrides"].get("device")) for r in sweep["runs"]]
    return [(w, d) for w, d in found if isinstance(d, str)]


VARIANT_KEYS = {"rope_scaling", "rope_factor", "encoding_kwargs", "variant"}


def flag(key, value):
    """--key=value as train.py / eval_lengths.py parse it (literals; bare strings)."""
    if isinstance(value, (list, tuple)):
        value = ",".join(str(v) for v in value) if value else "()"
    return f"--{key}={value if isinstance(value, str) else repr(value)}"


class Task:
    """One run at one seed: out_dir/<run>/seed<k>."""

    RESULT = ("status", "step", "error", "seconds")  # what a SLURM job returns

    def __init__(self, sweep, run, seed):
        self.run, self.seed = run, seed
        self.name = f"{run['name']}/seed{seed}"
        self.dir = os.path.join(sweep["out_dir"], run["name"], f"seed{seed}")
        self.sweep = sweep
        self.status, self.step, self.error, self.seconds = "pending", "", "", 0.0
        self.gpus = ""  # with gpus: the CUDA_VISIBLE_DEVICES of the group it runs on
        self.job_id, self.job_state = "", ""  # with --launcher=slurm

    def train_cmd(self, resume):
        overrides = {**self.sweep["common"], **self.run["overrides"], "seed": self.seed}
        cmd = [sys.executable]
        if self.sweep["gpus_per_run"] > 1:  # a GPU group, or a SLURM job with several GPUs
            # DDP over the run's GPUs, as the README's torchrun line; --standalone: each run's
            # rendezvous on a free port of its own, so several torchruns share the node
            n = self.sweep["gpus_per_run"]
            cmd += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}"]
        cmd += [os.path.join(REPO, "train.py"), self.run["config"]]
        cmd += [flag(k, v) for k, v in overrides.items()] + [flag("out_dir", self.dir)]
        return cmd + (["--init_from=resume"] if resume else [])

    def eval_cmd(self, args=None):
        args = self.eval_args() if args is None else args
        cmd = [sys.executable, os.path.join(REPO, "scripts", "eval_lengths.py")]
        return cmd + [flag("out_dir", self.dir)] + [flag(k, v) for k, v in args.items()]

    def eval_args(self):
        # the training data_dir follows the run (eval_lengths reads it from the checkpoint)
        return dict(self.sweep["eval_args"])

    def evals(self):
        """Every evaluation of this run: the model as trained, then each eval_variant (the same
        checkpoint evaluated with e.g. RoPE scaling); eval args carry the variant's label."""
        return [self.eval_args()] + [{**self.eval_args(), **v} for v in self.run["eval_variants"]]

    def evals_done(self, iter_num):
        return all(eval_done(self.dir, a, iter_num) for a in self.evals())

    def log(self, step=None):
        return os.path.join(self.dir, f"{step or self.step or 'train'}.log")


# -----------------------------------------------------------------------------
# the state of a run on disk


def train_state(run_dir):
    """'finished', 'partial' (a checkpoint to resume) or 'none', and the checkpoint's iter_num."""
    path = os.path.join(run_dir, "ckpt.pt")
    if not os.path.exists(path):
        return "none", None
    import torch  # only here: --dry_run and the tables do not need torch otherwise

    try:  # mmap: reading two small fields must not load gigabytes of optimizer state
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:
        return "partial", None  # unreadable: let train.py's resume say what is wrong
    return ("finished" if ckpt.get("finished") else "partial"), ckpt.get("iter_num")


def eval_done(run_dir, eval_args, iter_num):
    """True when eval_lengths.json has every requested length, for this checkpoint."""
    path = os.path.join(run_dir, "eval_lengths.json")
    if not os.path.exists(path):
        return False
    try:
        with open(path) as f:
            records = json.load(f)
    except (OSError, ValueError):
        return False
    mode, split = eval_args.get("mode", "nonoverlapping"), eval_args.get("split", "val")
    variant = eval_args.get("variant", "")
    have = {
        r["length"]
        for r in records
        if r.get("mode") == mode
        and r.get("split") == split
        and r.get("iter_num") == iter_num
        and (r.get("variant") or "") == variant
    }
    wanted = eval_args.get("lengths")
    wanted = [wanted] if isinstance(wanted, int) else wanted
    return bool(have) and (not wanted or set(wanted) <= have)


def tail(path, n=6):
    """The lines that explain a failure: the `error:` line if there is one, else the last n."""
    try:
        with open(path, errors="replace") as f:
            lines = [line.rstrip() for line in f.read().splitlines()[-200:] if line.strip()]
    except OSError:
        return ""
    lines = [line.split("\r")[-1] for line in lines]
    errors = [line for line in lines if line.startswith("error:")]
    return errors[-1] if errors else " | ".join(lines[-n:])


# -----------------------------------------------------------------------------
# running


class Sweep:
    def __init__(self, sweep, tasks):
        self.sweep, self.tasks = sweep, tasks
        self.stopping = False
        self.procs = set()
        self.lock = threading.Lock()
        self.free = queue.Queue()  # the GPU groups no run holds, first freed first taken
        for group in sweep["groups"] or []:
            self.free.put(group)
        self.env = dict(os.environ, PYTHONUNBUFFERED="1")
        if sweep["threads"]:
            self.env.update(
                OMP_NUM_THREADS=str(sweep["threads"]), MKL_NUM_THREADS=str(sweep["threads"])
            )

    def call(self, task, cmd, log_name, gpus=""):
        """Run cmd with its output appended to the run's log; returns the exit code. gpus: its
        CUDA_VISIBLE_DEVICES (with gpus in the sweep; otherwise the environment is ours)."""
        log = os.path.join(task.dir, log_name)
        env = dict(self.env, CUDA_VISIBLE_DEVICES=gpus) if gpus else self.env
        shown = (f"CUDA_VISIBLE_DEVICES={gpus} " if gpus else "") + " ".join(cmd)
        with open(log, "a") as f:
            f.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} $ {shown}\n")
            f.flush()
            # stdin closed, a new process group is not used: Ctrl-C reaches the child too, and
            # train.py answers it by saving a checkpoint (torchrun passes it on to its workers)
            p = subprocess.Popen(
                cmd, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
            )
            with self.lock:
                self.procs.add(p)
                if self.stopping:  # started as the sweep was told to stop: it saves and exits
                    p.send_signal(signal.SIGTERM)
            try:
                return p.wait()
            finally:
                with self.lock:
                    self.procs.discard(p)

    def do(self, task):
        t0 = time.time()
        # with gpus: hold a GPU group from train to the end of eval (jobs <= groups, so one is
        # free whenever a worker starts a task)
        group = self.free.get() if self.sweep["groups"] else ""
        task.gpus = group
        try:
            self._do(task)
        except Exception as e:  # a bug of ours must not take the other runs down either
            task.status, task.error = "failed", f"{type(e).__name__}: {e}"
        finally:
            if group:
                self.free.put(group)
        task.seconds = time.time() - t0
        return task

    def _do(self, task):
        os.makedirs(task.dir, exist_ok=True)
        state, _ = train_state(task.dir)
        if state != "finished":
            if self.stopping:
                task.status = "interrupted"
                return
            task.status, task.step = "running", "train"
            cmd = task.train_cmd(resume=state == "partial")
            rc = self.call(task, cmd, "train.log", task.gpus)
            state, _ = train_state(task.dir)
            if state != "finished":
                if self.stopping:
                    task.status = "interrupted"
                else:
                    task.status = "failed"
                    why = tail(os.path.join(task.dir, "train.log"))
                    task.error = why if rc else f"training stopped before max_iters: {why}"
                return
        state, iter_num = train_state(task.dir)
        if task.evals_done(iter_num) and task.status == "pending":
            task.status = "done"  # nothing to do: finished and evaluated before
            return
        for args in task.evals():
            if eval_done(task.dir, args, iter_num):
                continue
            task.status, task.step = "running", "eval"
            rc = self.call(task, task.eval_cmd(args), "eval.log", task.gpus.split(",")[0])
            if rc != 0 or not eval_done(task.dir, args, iter_num):
                task.status = "interrupted" if self.stopping else "failed"
                task.error = tail(os.path.join(task.dir, "eval.log"))
                return
        task.status = "ok"

    def progress(self):
        """Fraction of the work done (runs that were already complete do not count)."""
        todo = [t for t in self.tasks if t.status != "done"]
        if not todo:
            return 1.0
        f = 0.0
        for t in todo:
            if t.status in ("ok", "failed", "interrupted"):
                f += 1.0
            elif t.status == "running" and t.step == "eval":
                f += 0.9
            elif t.status == "running":
                f += 0.9 * train_fraction(t.dir)
        return f / len(todo)

    def status_line(self, t0):
        done = sum(t.status in ("ok", "done", "failed") for t in self.tasks)
        failed = sum(t.status == "failed" for t in self.tasks)
        running = [
            f"{t.name} ({t.step}{', GPU ' + t.gpus if t.gpus else ''})"
            for t in self.tasks
            if t.status == "running"
        ]
        elapsed = time.time() - t0
        f = self.progress()
        eta = fmt_duration(elapsed * (1 - f) / f) if f > 0.02 else "?"
        line = f"[sweep {self.sweep['name']}] {done}/{len(self.tasks)} runs done"
        line += f", {failed} failed" if failed else ""
        line += f" | {', '.join(running)}" if running else ""
        return line + f" | {100 * f:.0f}% | {fmt_duration(elapsed)} elapsed, ETA {eta}"

    def run(self):
        t0 = time.time()
        tty = sys.stdout.isatty()
        last_print = 0.0
        with ThreadPoolExecutor(max_workers=self.sweep["jobs"]) as pool:
            futures = [pool.submit(self.do, t) for t in self.tasks]
            reported = set()
            try:
                while True:
                    for fut in futures:
                        if fut.done() and fut not in reported:
                            reported.add(fut)
                            t = fut.result()
                            msg = f"{t.name}: {t.status} ({fmt_duration(t.seconds)})"
                            msg += f": {t.error}" if t.error else ""
                            print(("\r\033[K" if tty else "") + msg, flush=True)
                    if len(reported) == len(futures):
                        break
                    now = time.time()
                    if tty:
                        print("\r\033[K" + self.status_line(t0)[:150], end="", flush=True)
                    elif now - last_print > 60:
                        print(self.status_line(t0), flush=True)
                        last_print = now
                    time.sleep(1.0)
            except KeyboardInterrupt:
                self.stopping = True  # the children got the Ctrl-C too: they save and exit
                print("\ninterrupted: waiting for the running steps to save ...", flush=True)
                for fut in futures:
                    fut.cancel()
                for t in self.tasks:
                    if t.status == "pending":
                        t.status = "interrupted"
                while any(not f.done() for f in futures):
                    try:
                        time.sleep(0.5)
                    except KeyboardInterrupt:
                        with self.lock:
                            for p in self.procs:
                                p.kill()
        print(self.status_line(t0), flush=True)


def train_fraction(run_dir):
    """How far the training of a running run is, from its config.json and its log's last line."""
    try:
        with open(os.path.join(run_dir, "config.json")) as f:
            max_iters = json.load(f)["max_iters"]
        with open(os.path.join(run_dir, "train.log"), "rb") as f:
            f.seek(max(0, os.path.getsize(f.name) - 4096))
            its = re.findall(rb"^iter (\d+) ", f.read(), flags=re.M)
        return min(1.0, int(its[-1]) / max_iters) if its and max_iters else 0.0
    except (OSError, ValueError, KeyError):
        return 0.0


def fmt_duration(s):
    s = int(s)
    return f"{s // 3600}h{s // 60 % 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


# -----------------------------------------------------------------------------
# results tables


def collect(tasks, eval_args):
    """{row name: {"tasks": [...], "records": {length: [record per seed]}}}, one row per run and
    one per evaluation variant of it ("rope + yarn x8")."""
    mode, split = eval_args.get("mode", "nonoverlapping"), eval_args.get("split", "val")
    out = {}
    for t in tasks:
        labels = [""] + [v["variant"] for v in t.run["eval_variants"]]
        for v in labels:
            entry = out.setdefault(t.run["name"] + (f" + {v}" if v else ""), dict(records={}))
            entry.setdefault("tasks", []).append(t)
        path = os.path.join(t.dir, "eval_lengths.json")
        if t.status not in ("ok", "done") or not os.path.exists(path):
            continue
        with open(path) as f:
            for r in json.load(f):
                v = r.get("variant") or ""
                if r.get("mode") == mode and r.get("split") == split and v in labels:
                    row = out[t.run["name"] + (f" + {v}" if v else "")]
                    row["records"].setdefault(r["length"], []).append(r)
    return out


def mean_std(values):
    m = sum(values) / len(values)
    s = math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0
    return m, s


def write_results(sweep, tasks):
    ev = sweep["eval_args"]
    results = collect(tasks, ev)
    lengths = sorted({n for e in results.values() for n in e["records"]})
    recs = [r for e in results.values() for rs in e["records"].values() for r in rs]
    done = [r for r in recs if not r.get("skipped")]
    metrics = [m for m in METRICS if done and all(r.get(m) is not None for r in done)]
    metrics = metrics or ["ppl"]
    out = sweep["out_dir"]

    def status(entry):
        ts = entry["tasks"]
        bad = [t for t in ts if t.status not in ("ok", "done")]
        if not bad:
            return "ok"
        return "; ".join(f"seed {t.seed} {t.status}: {t.error[:120]}".rstrip(": ") for t in bad)

    def cell(entry, n, metric, digits):
        rs = entry["records"].get(n, [])
        vals = [r[metric] for r in rs if not r.get("skipped") and r.get(metric) is not None]
        if not vals:
            return ("skipped" if any(r.get("skipped") for r in rs) else ""), None, None
        m, s = mean_std(vals)
        text = f"{m:.{digits}f}" + (f" ± {s:.{digits}f}" if len(vals) > 1 else "")
        return text, m, s

    # results.csv: one row per run; mean and std of each metric at each length
    with open(os.path.join(out, "results.csv"), "w", newline="") as f:
        w = csv.writer(f)
        header = ["run", "encoding", "seeds", "status"]
        header += [f"{m}@{n}{s}" for m in metrics for n in lengths for s in ("", "_std")]
        w.writerow(header)
        for name, e in results.items():
            enc = next((r["encoding"] for rs in e["records"].values() for r in rs), "")
            row = [name, enc, len(e["tasks"]), status(e)]
            for m in metrics:
                for n in lengths:
                    _, mean, std = cell(e, n, m, 6)
                    row += [
                        "" if mean is None else f"{mean:.6g}",
                        "" if std is None else f"{std:.3g}",
                    ]
            w.writerow(row)

    # results.md: one table per metric
    first = done[0] if done else {}
    trained = sorted({r["block_size"] for r in recs}) or ["?"]
    seeds = sorted({t.seed for t in tasks})
    lines = [f"# Sweep `{sweep['name']}`", ""]
    lines.append(
        f"Dataset `{first.get('dataset', '?')}` ({ev.get('split', 'val')} split, "
        f"{first.get('tokenizer', '?')} tokens), trained at L = {', '.join(map(str, trained))}, "
        f"evaluated {ev.get('mode', 'nonoverlapping')}"
        + (f" with stride {ev['stride']}" if ev.get("stride") else "")
        + (f" on the first {first['max_tokens']:,} tokens" if first.get("max_tokens") else "")
        + f"; mean ± sample std over {len(seeds)} seed(s) ({', '.join(map(str, seeds))})."
    )
    notes = {}
    for m in metrics:
        digits = 3 if m == "bits_per_byte" else 2
        lines += ["", f"**{METRIC_TITLES[m]}** by evaluation length (columns):", ""]
        lines.append("| run | " + " | ".join(str(n) for n in lengths) + " | status |")
        lines.append("|---|" + "---:|" * len(lengths) + "---|")
        for name, e in results.items():
            cells = []
            for n in lengths:
                text, _, _ = cell(e, n, m, digits)
                if text == "skipped":
                    reason = next(r.get("reason", "") for r in e["records"][n] if r.get("skipped"))
                    notes.setdefault(name, reason)
                    text = "—"
                cells.append(text)
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {status(e)} |")
    if notes:
        lines += ["", "— = skipped: " + "; ".join(f"{k}: {v}" for k, v in notes.items())]
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    return os.path.join(out, "results.md")


def write_status(sweep, tasks):
    path = os.path.join(sweep["out_dir"], "status.json")
    rows = [
        dict(
            run=t.run["name"],
            seed=t.seed,
            dir=t.dir,
            status=t.status,
            step=t.step,
            error=t.error,
            seconds=round(t.seconds, 1),
            **(dict(gpus=t.gpus) if sweep["groups"] else {}),
            **(dict(job=t.job_id, job_state=t.job_state) if t.job_id else {}),
        )
        for t in tasks
    ]
    write_json(path, {"name": sweep["name"], "runs": rows}, indent=1)


# -----------------------------------------------------------------------------
# SLURM: one job per run and seed, through submitit (imported only here)


def import_submitit():
    try:
        import submitit
    except ImportError:
        raise UserError("SLURM jobs need submitit: pip install submitit") from None
    return submitit


def slurm_parameters(sweep, cfg):
    """submitit's slurm_* executor parameters: the sweep file's slurm = dict(...), --slurm_* flags
    winning. GPUs per job default to gpus_per_run; with more than one, train.py runs under
    torchrun as on one node. UserError on an unknown key, a wrong type or no time limit."""
    given = dict(sweep["slurm"])
    for k, kind in SLURM_KEYS.items():
        v = cfg[f"slurm_{k}"]
        if v is not None:
            given[k] = str(v) if kind is str else v  # --slurm_account=1234 is a name
    for k, v in given.items():
        if k not in SLURM_KEYS:
            raise UserError(
                f"slurm: unknown key '{k}'{_nearest(k, SLURM_KEYS)}; valid: {', '.join(SLURM_KEYS)}"
            )
        if type(v) is not SLURM_KEYS[k]:
            kind = "an int (minutes for time)" if SLURM_KEYS[k] is int else "a string"
            raise UserError(f"slurm {k} must be {kind}, got {v!r}")
    if "time" not in given:  # submitit's default is 5 minutes
        raise UserError(
            "slurm: set a time limit in minutes: slurm = dict(time=720) or --slurm_time=720"
        )
    given.setdefault("gpus_per_node", sweep["gpus_per_run"])
    sweep["gpus_per_run"] = given["gpus_per_node"]
    if not given["gpus_per_node"]:
        del given["gpus_per_node"]  # a CPU job: no --gpus-per-node=0 for sbatch
    return {f"slurm_{k}": v for k, v in given.items()}


def slurm_executor(sweep, params):
    submitit = import_submitit()
    try:
        ex = submitit.AutoExecutor(folder=os.path.join(sweep["out_dir"], "slurm"), cluster="slurm")
    except RuntimeError as e:  # no srun here
        raise UserError(f"--launcher=slurm: {e}") from None
    ex.update_parameters(**params)
    return ex


class RunJob:
    """A SLURM job: one run at one seed, trained then evaluated by Sweep.do exactly as the local
    launcher does it (same commands, logs, resume). At the preemption or time-limit signal
    submitit calls checkpoint() (its Checkpointable protocol): train.py is asked to save, and the
    job is requeued as a fresh RunJob, which resumes from that checkpoint."""

    def __init__(self, sweep, run, seed):
        self.args = (sweep, run, seed)

    def __call__(self):
        task = Task(*self.args)
        self.live = live = Sweep(self.args[0], [task])
        # SLURM's SIGTERM (scancel, a preemption without warning) reaches train.py itself, which
        # saves: then end without a result, so that the job counts as unfinished, not failed
        signal.signal(signal.SIGTERM, lambda *a: setattr(live, "stopping", True))

        def work():
            # the children inherit this mask: SLURM sends its USR signal to every process of the
            # job, and train.py must save on checkpoint()'s SIGTERM, not die of the USR signal
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1, signal.SIGUSR2})
            live.do(task)

        self.thread = threading.Thread(target=work)
        self.thread.start()
        self.thread.join()  # submitit's signal handler runs in this (the main) thread
        if task.status == "interrupted":
            sys.exit(1)
        return {k: getattr(task, k) for k in Task.RESULT}

    def checkpoint(self):
        from submitit.helpers import DelayedSubmission

        live = getattr(self, "live", None)
        if live is not None:
            with live.lock:
                if not live.stopping:  # once: a second SIGTERM makes train.py quit unsaved
                    for p in live.procs:
                        p.send_signal(signal.SIGTERM)
                live.stopping = True
            self.thread.join()  # the checkpoint is on disk
        return DelayedSubmission(RunJob(*self.args))


def current_step(task):
    """'train' or 'eval': the step whose log was written last."""
    t = [os.path.getmtime(p) if os.path.exists(p) else 0 for p in map(task.log, ("train", "eval"))]
    return "eval" if t[1] > t[0] else "train"


def refresh(task, job):
    """task.status from its SLURM job (None: none) and its files: queued or running while the
    job is; else done when trained and evaluated, else what the job returned, or failed."""
    if job is not None:
        active = not job.done()
        task.job_state = job.state
        task.step = current_step(task)
        if active:
            task.status = "running" if task.job_state == "RUNNING" else "queued"
            return
        if job.paths.result_pickle.exists():
            try:
                r = job.result()
                task.status, task.step, task.error, task.seconds = (r[k] for k in Task.RESULT)
            except Exception as e:  # the job raised: its last line says what
                task.status, task.error = "failed", str(e).strip().splitlines()[-1]
        else:  # killed, cancelled, out of time or memory
            why = tail(task.log())
            task.status, task.error = "failed", f"job ended {task.job_state}, no result: {why}"
    state, iter_num = train_state(task.dir)
    if state == "finished" and task.evals_done(iter_num):
        task.status, task.step, task.error = "done", "", ""


def attach(sweep, tasks):
    """Each run's status and SLURM job as status.json has them, refreshed. {task name: job}."""
    path = os.path.join(sweep["out_dir"], "status.json")
    rows = {}
    if os.path.exists(path):
        with open(path) as f:
            rows = {f"{r['run']}/seed{r['seed']}": r for r in json.load(f)["runs"]}
    jobs = {}
    for t in tasks:
        r = rows.get(t.name, {})
        if t.status == "pending":  # not left out by --only
            t.status = r.get("status", t.status)
            t.step, t.error = r.get("step", ""), r.get("error", "")
        t.job_id = r.get("job", "")
        if t.job_id:
            folder = os.path.join(sweep["out_dir"], "slurm")
            jobs[t.name] = import_submitit().SlurmJob(folder, t.job_id)
    for t in tasks:  # after every job is known: one sacct call looks at them all
        refresh(t, jobs.get(t.name))
    return jobs


def summary(sweep, tasks):
    n = {s: sum(t.status == s for t in tasks) for s in ("done", "failed", "running", "queued")}
    parts = [f"{n.pop('done')}/{len(tasks)} done"] + [f"{v} {k}" for k, v in n.items() if v]
    return f"[sweep {sweep['name']}] " + ", ".join(parts)


def show_status(sweep, tasks):
    print(summary(sweep, tasks))
    for t in tasks:
        job = f"job {t.job_id} {t.job_state}" if t.job_id else ""
        what = t.status + (f" ({t.step})" if t.status == "running" else "")
        print(f"  {t.name:<24} {what:<16} {job:<24} {t.log()}")
        if t.status == "failed" and t.error:
            print(f"      {t.error}")


def collect_all(sweep, tasks):
    """status.json, results.csv / results.md, and the plots (scripts/plot.py, as `make demo`)."""
    write_status(sweep, tasks)
    print(f"wrote {write_results(sweep, tasks)}")
    if importlib.util.find_spec("matplotlib") is None:
        print("plots skipped: matplotlib is not installed (pip install matplotlib)")
        return
    plot = [sys.executable, os.path.join(REPO, "scripts", "plot.py"), sweep["out_dir"]]
    if subprocess.run(plot).returncode:
        print("plots failed (see above); the tables are written")


def wait_jobs(sweep, tasks, jobs):
    """Until every job has ended: a line per run as it ends, one when the counts change. False
    if interrupted (Ctrl-C): the jobs go on."""
    waiting = [t for t in tasks if t.status in ("queued", "running")]
    last = ""
    try:
        while waiting:
            for t in list(waiting):
                refresh(t, jobs[t.name])
                if t.status not in ("queued", "running"):
                    waiting.remove(t)
                    print(f"{t.name}: {t.status}" + (f": {t.error}" if t.error else ""), flush=True)
                    write_status(sweep, tasks)
            line = summary(sweep, tasks)
            if line != last:
                print(line, flush=True)
                last = line
            time.sleep(POLL_S if waiting else 0)
    except KeyboardInterrupt:
        print("\nstopped waiting; the jobs go on (see --status; the same command waits again)")
        return False
    return True


def launch_slurm(sweep, tasks, params):
    """Submit a job for each run and seed that is neither done nor queued or running (the ids in
    status.json say which), wait for every job, then collect. Exit status as the local one's."""
    ex = slurm_executor(sweep, params)
    os.makedirs(sweep["out_dir"], exist_ok=True)
    mine = [t for t in tasks if t.status == "pending"]  # not left out by --only
    jobs = attach(sweep, tasks)
    todo = [t for t in mine if t.status not in ("done", "queued", "running")]
    for t in todo:
        ex.update_parameters(name=f"{sweep['name']}/{t.name}")
        jobs[t.name] = ex.submit(RunJob(sweep, t.run, t.seed))
        t.job_id, t.job_state, t.status, t.step, t.error = jobs[t.name].job_id, "", "queued", "", ""
        write_status(sweep, tasks)  # at once: an id not written down would be submitted again
    print(
        f"sweep {sweep['name']}: submitted {len(todo)} SLURM job(s) ({params}); logs in each "
        f"run's train.log / eval.log. Waiting: Ctrl-C stops the waiting, not the jobs"
    )
    if not wait_jobs(sweep, tasks, jobs):
        return 130
    collect_all(sweep, tasks)
    return report_failures(tasks)


# -----------------------------------------------------------------------------


def report_failures(tasks):
    """FAILED lines; the exit status: the number of failed runs (at most 125)."""
    failed = [t for t in tasks if t.status == "failed"]
    for t in failed:
        print(f"FAILED {t.name}: {t.error}  (log: {t.log()})")
    return min(len(failed), 125)


def gpu_plan(sweep):
    """One line saying how the runs use the GPUs."""
    groups, n, jobs = sweep["groups"], sweep["gpus_per_run"], sweep["jobs"]
    parts = [
        f"GPUs: {len(groups)} group(s) of {n} (CUDA_VISIBLE_DEVICES={' | '.join(groups)})",
        f"{jobs} run(s) at a time, each on the first group to free",
    ]
    if n > 1:
        parts.append(f"train with torchrun --nproc_per_node={n}, eval on the group's first GPU")
    if jobs < len(groups):
        parts.append(f"jobs = {jobs} in the sweep file leaves {len(groups) - jobs} group(s) idle")
    return "; ".join(parts)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    argv = [
        a.replace("--dry-run", "--dry_run", 1) if a.startswith("--dry-run") else a for a in argv
    ]
    argv = [a + "=True" if a in ("--dry_run", "--status", "--collect") else a for a in argv]
    cfg = parse_args(argv, DEFAULTS, positional="sweep")
    if not cfg["sweep"]:
        raise UserError("usage: python scripts/sweep.py configs/sweeps/NAME.py [--dry_run]")
    if cfg["launcher"] not in ("local", "slurm"):
        raise UserError(f"--launcher must be local or slurm, got '{cfg['launcher']}'")
    sweep = load_sweep(cfg["sweep"])
    slurm = cfg["launcher"] == "slurm"
    if slurm and (cfg["gpus"] or cfg["gpus_per_run"]):
        raise UserError("--gpus and --gpus_per_run are for one node; SLURM: slurm gpus_per_node")
    if slurm:
        params = slurm_parameters(sweep, cfg)
    elif not (cfg["status"] or cfg["collect"]):
        plan_gpus(sweep, cfg)
    runs = sweep["runs"]
    only = [n for n in cfg["only"].split(",") if n]
    if only:
        unknown = [n for n in only if n not in {r["name"] for r in runs}]
        if unknown:
            names = ", ".join(r["name"] for r in runs)
            raise UserError(f"--only: no run named {', '.join(map(str, unknown))} (runs: {names})")
    tasks = [Task(sweep, r, s) for r in runs for s in r.get("seeds", sweep["seeds"])]
    if only:
        # the others are not run, but their results still belong in the tables
        for t in tasks:
            if t.run["name"] not in only:
                state, iter_num = train_state(t.dir)
                done = state == "finished" and t.evals_done(iter_num)
                t.status = "done" if done else "not run"

    if cfg["status"] or cfg["collect"]:
        if not os.path.isdir(sweep["out_dir"]):
            raise UserError(f"{sweep['out_dir']} does not exist: the sweep has not run yet")
        attach(sweep, tasks)
        if cfg["collect"]:
            collect_all(sweep, tasks)
        else:
            show_status(sweep, tasks)
        return 0

    groups = sweep["groups"] or []
    if cfg["dry_run"]:
        print(f"sweep {sweep['name']}: {len(tasks)} runs into {sweep['out_dir']}")
        if groups:
            print(f"  {gpu_plan(sweep)}")
        if slurm:
            print(f"  SLURM: one job per run and seed to do, {params}")
        starting = list(groups[: sweep["jobs"]])  # the first runs with work take these in order
        for t in [t for t in tasks if t.status == "pending"]:
            state, iter_num = train_state(t.dir)
            todo = [a for a in t.evals() if not eval_done(t.dir, a, iter_num)]
            where = ""
            if groups and (state != "finished" or todo):
                gpus = starting.pop(0) if starting else ""
                where = f" on CUDA_VISIBLE_DEVICES={gpus}" if gpus else " on the first GPUs to free"
            if state == "finished":
                print(f"  {t.name}: trained; {'evaluate' + where if todo else 'evaluated'}")
                for args in todo:
                    print("    " + shlex.join(t.eval_cmd(args)))
            else:
                verb = "resume" if state == "partial" else "train"
                print(f"  {t.name}: {verb}, then evaluate{where}")
                print("    " + shlex.join(t.train_cmd(resume=state == "partial")))
                for args in t.evals():
                    print("    " + shlex.join(t.eval_cmd(args)))
        return 0
    if slurm:
        return launch_slurm(sweep, tasks, params)

    os.makedirs(sweep["out_dir"], exist_ok=True)
    print(
        f"sweep {sweep['name']}: {len(tasks)} runs into {sweep['out_dir']} "
        f"({sweep['jobs']} at a time); logs in each run's train.log / eval.log"
    )
    if groups:
        print(gpu_plan(sweep))
    s = Sweep(sweep, [t for t in tasks if t.status == "pending"])

    def on_sigterm(signum, frame):
        # `kill PID` or a job scheduler: pass it on to the running steps (they save and exit),
        # then stop like Ctrl-C. (Ctrl-C in a terminal already reaches the children itself.)
        with s.lock:
            for p in s.procs:
                p.send_signal(signal.SIGTERM)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    s.run()
    write_status(sweep, tasks)
    print(f"wrote {write_results(sweep, tasks)}")
    if s.stopping:
        print(
            f"interrupted; run the same command again to continue: "
            f"python scripts/sweep.py {cfg['sweep']}"
        )
        return 130
    return report_failures(tasks)


if __name__ == "__main__":
    code = 0

    def _main():
        global code
        code = main()

    run_cli(_main)
    sys.exit(code)
