"""A sweep's runs (docs/sweeps.md), for scripts/sweep.py and scripts/slurm.py: the sweep file, a
Task per run and seed, the local runner, status.json and the results tables."""

import csv
import importlib.util
import json
import os
import queue
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

import torch

import runtime
from checkpoint import checkpoint_path, eval_encoding_kwargs, load_checkpoint, variant_label
from configurator import UserError, check_keys, exec_config_file, fmt_float, load_config, parse_args
from data.prepare import PrepareError, ensure_prepared, write_json
from scripts import eval_context, eval_lengths

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SWEEP_FILE = dict(  # what a sweep file may set, with the defaults (their types are checked)
    name="",  # a label for tables and plots (default: the file's name)
    out_dir="",  # run r, seed k trains into out_dir/r/seed{k}/ (default: out/sweeps/NAME)
    common={},  # overrides for every run
    runs=[],  # [dict(name="alibi", config="configs/demo/alibi.py", overrides={}), ...]
    seeds=[1337],  # every run is trained once per seed (or per its own seeds=[...])
    eval_args={},  # for scripts/eval_lengths.py, e.g. dict(lengths=[64, 128])
    context_args=None,  # for scripts/eval_context.py, run after eval_lengths; None: no probes
    jobs=None,  # runs trained at the same time (default: 1, or one per GPU group)
    threads=0,  # CPU threads per run (OMP_NUM_THREADS); 0: torch's default
    gpus=None,  # [0, 1, 2, 3] or "all": spread the runs over these GPUs
    gpus_per_run=1,  # > 1: each run trains with DDP under torchrun
    slurm={},  # dict(partition="gpu", time=720, gpus_per_node=1, account=, constraint=)
)
# a runs entry's keys (of these types); eval_variants: the checkpoint evaluated again, a row each
RUN_KEYS = dict(name="alibi", config="configs/alibi.py", overrides={}, seeds=[1], eval_variants=[])
_variant = ("rope_scaling", "rope_factor", "encoding_kwargs", "variant")  # eval_lengths.py's
VARIANT_KEYS = {k: eval_lengths.DEFAULTS[k] for k in _variant}  # an eval_variants entry's
METRICS = {  # tabulated when every record has them
    "ppl": "token-level perplexity",
    "word_ppl": "word-level perplexity (total NLL / (words + one end-of-line per line))",
    "bits_per_byte": "bits per byte",
}
SCRIPTS = dict(eval_lengths=eval_lengths, eval_context=eval_context)  # a run's evaluations
PROBE_OPTIONS = ("tau", "target_stride", "span", "placements", "probe_seeds")  # in its records


# the sweep file -----------------------------------------------------------------------------------
def load_sweep(path):
    """The sweep file's settings over SWEEP_FILE, checked: UserError on anything wrong."""
    sweep = SWEEP_FILE | exec_config_file(path, {}, SWEEP_FILE)  # unknown keys, wrong types
    sweep["groups"] = None  # with gpus: each GPU group's CUDA_VISIBLE_DEVICES (plan_gpus)
    if not sweep["runs"]:
        raise UserError(f"{path}: define runs = [dict(name=..., config=...), ...]")
    if sweep["jobs"] is not None and not (type(sweep["jobs"]) is int and sweep["jobs"] >= 1):
        raise UserError(f"{path}: jobs must be an int, at least 1")
    if not isinstance(sweep["context_args"], dict | None):
        raise UserError(f"{path}: context_args must be a dict of scripts/eval_context.py options")
    sweep["name"] = sweep["name"] or os.path.splitext(os.path.basename(path))[0]
    sweep["out_dir"] = sweep["out_dir"] or os.path.join("out", "sweeps", sweep["name"])
    sweep["runs"] = [check_run(f"{path}: runs[{i}]", r) for i, r in enumerate(sweep["runs"])]
    names = [r["name"] for r in sweep["runs"]]
    if bad := [n for n in names if not re.fullmatch(r"[\w.+-]+", n) or names.count(n) > 1]:
        raise UserError(f"{path}: run names must be unique words, got '{bad[0]}'")
    return sweep


def check_run(where, r):
    """A runs entry checked, with its name (its config file's), overrides and eval variants."""
    if not isinstance(r, dict) or "config" not in r:
        raise UserError(f"{where} must be dict(name=..., config=..., overrides={{}})")
    r = check_keys(r, RUN_KEYS, where)
    r.setdefault("name", os.path.splitext(os.path.basename(r["config"]))[0])
    r.setdefault("overrides", {})
    r["eval_variants"] = [eval_variant(where, v) for v in r.get("eval_variants", [])]
    return r


def eval_variant(where, v):
    """An eval_variants entry checked, with its label (its rows': "rope + yarn x8")."""
    v = check_keys(v, VARIANT_KEYS, f"{where} eval_variants") if isinstance(v, dict) else {}
    if not (v.get("rope_scaling") or v.get("encoding_kwargs")):
        how = "with rope_scaling or encoding_kwargs, e.g. dict(rope_scaling='yarn')"
        raise UserError(f"{where} eval_variants entries are dicts of {sorted(VARIANT_KEYS)} {how}")
    v.setdefault("variant", variant_label(v))
    return v


# the runs' settings, checked before the first run starts ----------------------------------------
def check_runs(tasks, devices=True):
    """'run: problem' for each problem train.py or an evaluation would meet as it starts, by their
    own checks (one seed stands for all); devices: check them (not for SLURM: other nodes)."""
    one = {t.run["name"]: t for t in tasks if t.status == "pending"}  # not left out by --only
    found = {name: dict.fromkeys(check_task(t, devices)) for name, t in one.items()}
    return [f"{name}: {p}" for name, ps in found.items() for p in ps if p]  # each once


def check_task(t, devices):
    """The problems of t's training and of each of its evaluations (None: a check passed)."""
    where, evals = "", []
    try:
        c = load_config(t.train_args())  # the config file, every key and its type
        for s, a in t.evals():
            where = "context_args: " * (s == "eval_context")
            evals.append((s, where, parse_args(t.eval_cmd(s, a)[2:], SCRIPTS[s].DEFAULTS)))
    except UserError as e:
        return [where + str(e)]
    found = [problem(runtime.check_config, c, max(1, t.sweep["gpus_per_run"]))]
    found += [problem(ensure_prepared, c["dataset"], c["data_dir"], False)]  # or known: built
    for s, where, e in evals:
        why = problem(SCRIPTS[s].check_args, e)
        found += [why and where + why, problem(check_variant, c, e)]
    for device in [c["device"]] + [e["device"] for _, _, e in evals] if devices else []:
        found += [problem(runtime.resolve_device, device)]
    return found


def check_variant(c, e):
    """The model of training config c as eval_lengths.py options e change it."""
    kwargs = eval_encoding_kwargs(c, e)
    runtime.check_model({**c, "encoding_kwargs": kwargs, "attn_backend": e["attn_backend"]})


def problem(check, *args):
    """The message of the UserError check(*args) raises, None if it passes."""
    try:
        check(*args)
    except (UserError, PrepareError) as e:
        return str(e)


# GPUs: one node, one run per GPU group ------------------------------------------------------------
def cuda_devices():
    """The CUDA_VISIBLE_DEVICES entry of each device we see as cuda:i; empty without CUDA."""
    n, own = torch.cuda.device_count(), os.environ.get("CUDA_VISIBLE_DEVICES")
    return [d.strip() for d in own.split(",")][:n] if own is not None else list(map(str, range(n)))


def gpu_groups(gpus, per_run, devices):
    """gpus ("all" or indices i of cuda:i) in groups of per_run, as CUDA_VISIBLE_DEVICES values."""
    if gpus == "all":
        if not devices:
            raise UserError("gpus='all' but no CUDA device is visible")
        gpus = list(range(len(devices)))
    elif not isinstance(gpus, list) or not all(type(i) is int and i >= 0 for i in gpus):
        raise UserError(f"gpus must be 'all' or a list of device indices like [0, 1], got {gpus!r}")
    for i in gpus:
        if gpus.count(i) > 1:
            raise UserError(f"gpus lists device {i} more than once: {gpus}")
        if i >= len(devices):
            seen = f"{len(devices)} visible: 0-{len(devices) - 1}" if devices else "none visible"
            raise UserError(f"gpus: no CUDA device {i} ({seen})")
    if per_run < 1 or per_run > len(gpus) or len(gpus) % per_run:
        msg = f"gpus_per_run={per_run} must be at least 1 and divide the {len(gpus)} GPU(s) in gpus"
        raise UserError(msg)
    names = [devices[i] for i in gpus]
    return [",".join(names[i : i + per_run]) for i in range(0, len(names), per_run)]


def plan_gpus(sweep, cfg):
    """sweep["groups"] from gpus / gpus_per_run (flags win), and jobs: at most one per group."""
    gpus, text = sweep["gpus"], cfg["gpus"].strip("[]() ")
    if text:  # --gpus=all / --gpus=0,1,2,3
        if not re.fullmatch(r"all|\d+( *, *\d+)*", text):
            raise UserError(f"--gpus must be 'all' or device indices like 0,1,2,3, got '{text}'")
        gpus = text if text == "all" else [int(d) for d in text.split(",")]
    per_run = cfg["gpus_per_run"] or sweep["gpus_per_run"]
    if gpus in (None, []):  # every run on the device its config names
        if per_run != 1:
            raise UserError(f"gpus_per_run={per_run} needs gpus (e.g. --gpus=all)")
        sweep["jobs"] = sweep["jobs"] or 1
        return
    settings = [("common", sweep["common"]), ("eval_args", sweep["eval_args"])]
    settings += [("context_args", sweep["context_args"] or {})]
    settings += [(f"run {r['name']}", r["overrides"]) for r in sweep["runs"]]
    for where, d in [(w, s.get("device")) for w, s in settings]:
        if isinstance(d, str) and d.startswith("cuda:") and d != "cuda:0":
            msg = f"{where} sets device='{d}': with gpus a run sees its GPU(s) as cuda:0, ..."
            raise UserError(msg + " (use 'cuda' or 'auto')")
    sweep["groups"] = gpu_groups(gpus, per_run, cuda_devices())
    sweep["gpus_per_run"] = per_run
    sweep["jobs"] = min(sweep["jobs"] or len(sweep["groups"]), len(sweep["groups"]))


def gpu_plan(sweep):
    """One line saying how the runs use the GPUs."""
    groups, n, jobs = sweep["groups"], sweep["gpus_per_run"], sweep["jobs"]
    line = f"GPUs: {len(groups)} group(s) of {n} (CUDA_VISIBLE_DEVICES={' | '.join(groups)}); "
    line += f"{jobs} run(s) at a time, each on the first group to free"
    if n > 1:
        line += f"; train with torchrun --nproc_per_node={n}, eval on the group's first GPU"
    return line


# a run at a seed, and its state on disk -----------------------------------------------------------
def flag(key, value):
    """--key=value as train.py / eval_lengths.py parse it (literals; bare strings)."""
    if isinstance(value, (list, tuple)):
        value = ",".join(str(v) for v in value) if value else "()"
    return f"--{key}={value if isinstance(value, str) else repr(value)}"


class Task:
    """One run at one seed: out_dir/<run>/seed<k>."""

    RESULT = ("status", "step", "error", "seconds")  # what a SLURM job returns

    def __init__(self, sweep, run, seed):
        self.sweep, self.run, self.seed, self.name = sweep, run, seed, f"{run['name']}/seed{seed}"
        self.dir = os.path.join(sweep["out_dir"], run["name"], f"seed{seed}")
        self.status, self.step, self.error, self.seconds = "pending", "", "", 0.0
        self.gpus = ""  # with gpus: the CUDA_VISIBLE_DEVICES of the group it runs on
        self.job_id, self.job_state = "", ""  # with --launcher=slurm

    def train_args(self):
        """train.py's arguments: the run's config file, then the sweep's overrides."""
        kv = {**self.sweep["common"], **self.run["overrides"], "seed": self.seed}
        return [self.run["config"]] + [flag(k, v) for k, v in {**kv, "out_dir": self.dir}.items()]

    def train_cmd(self, resume):
        n, cmd = self.sweep["gpus_per_run"], [sys.executable]
        if n > 1:  # a GPU group or a SLURM job with several GPUs; --standalone: a port of its own
            cmd += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}"]
        cmd += [os.path.join(REPO, "train.py"), *self.train_args()]
        return cmd + (["--init_from=resume"] if resume else [])

    def eval_cmd(self, script, args):
        cmd = [sys.executable, os.path.join(REPO, "scripts", f"{script}.py")]
        return cmd + [flag("out_dir", self.dir)] + [flag(k, v) for k, v in args.items()]

    def evals(self):
        """(script, args) of each evaluation: eval_lengths.py of the model as trained, then of each
        eval variant (same checkpoint), then eval_context.py of each if context_args is set."""
        variants, probes = [{}] + self.run["eval_variants"], self.sweep["context_args"]
        out = [("eval_lengths", {**self.sweep["eval_args"], **v}) for v in variants]
        return out + [("eval_context", {**probes, **v}) for v in variants if probes is not None]

    def todo(self):
        """train_state(), and the evaluations of this checkpoint not written yet."""
        state, iter_num = train_state(self.dir)
        return state, [e for e in self.evals() if not eval_done(self.dir, *e, iter_num)]

    def is_done(self):
        return self.todo() == ("finished", [])

    def log(self, step=None):
        return os.path.join(self.dir, f"{step or self.step or 'train'}.log")


def train_state(run_dir):
    """'finished', 'partial' (a checkpoint to resume) or 'none', and the checkpoint's iter_num."""
    if not os.path.exists(checkpoint_path(run_dir)):
        return "none", None
    try:  # mmap: reading two small fields must not load gigabytes of optimizer state
        ckpt = load_checkpoint(run_dir, mmap=True)
    except UserError:
        return "partial", None  # unreadable: let train.py's resume say what is wrong
    return ("finished" if ckpt.get("finished") else "partial"), ckpt.get("iter_num")


def eval_done(run_dir, script, a, iter_num):
    """True when script's JSON has every requested length for this checkpoint (eval_context.json:
    gain records at each length and copy records at each distance, with the probe options asked)."""
    records = read_records(run_dir, script)
    fields = lambda r: (r.get("mode"), r.get("split"), r.get("iter_num"), r.get("variant") or "")
    same = lambda r: all(r.get(k, v) == v for k, v in a.items() if k in PROBE_OPTIONS and v)
    asked = dict(gain="lengths", copy="distances") if script == "eval_context" else None
    ev = eval_lengths.DEFAULTS | a  # its mode, split and variant
    for mode, option in (asked or {ev["mode"]: "lengths"}).items():
        key = (mode, ev["split"], iter_num, ev["variant"])
        have = {r["length"] for r in records if fields(r) == key and same(r)}
        wanted = [a[option]] if isinstance(a.get(option), int) else a.get(option)
        if not have or (wanted and not set(wanted) <= have):
            return False
    return True


def read_records(run_dir, script):
    """What run_dir's script.json holds, [] if there is none or it cannot be read."""
    try:
        with open(os.path.join(run_dir, f"{script}.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return []


def tail(path, n=6):
    """The lines that explain a failure: the `error:` line if there is one, else the last n."""
    try:
        with open(path, errors="replace") as f:
            lines = [x.rstrip().split("\r")[-1] for x in f.read().splitlines()[-200:] if x.strip()]
    except OSError:
        return ""
    errors = [line for line in lines if line.startswith("error:")]
    return errors[-1] if errors else " | ".join(lines[-n:])


def train_fraction(run_dir):
    """How far a running run has trained: its log's last `iter N` / config.json's max_iters."""
    try:
        with open(os.path.join(run_dir, "config.json")) as f:
            max_iters = json.load(f)["max_iters"]
        with open(os.path.join(run_dir, "train.log"), "rb") as f:
            f.seek(max(0, os.path.getsize(f.name) - 4096))
            its = re.findall(rb"^iter (\d+) ", f.read(), flags=re.M)
        return min(1.0, int(its[-1]) / max_iters) if its and max_iters else 0.0
    except (OSError, ValueError, KeyError):
        return 0.0


# running ------------------------------------------------------------------------------------------
class Sweep:
    """Runs tasks, `jobs` at a time, each train then eval as subprocesses (a SLURM job: one)."""

    def __init__(self, sweep, tasks):
        self.sweep, self.tasks = sweep, tasks
        self.stopping, self.procs, self.lock = False, set(), threading.Lock()
        self.free = queue.Queue()  # the GPU groups no run holds, first freed first taken
        for group in sweep["groups"] or []:
            self.free.put(group)
        self.env = dict(os.environ, PYTHONUNBUFFERED="1")
        if n := str(sweep["threads"] or ""):
            self.env.update(OMP_NUM_THREADS=n, MKL_NUM_THREADS=n)

    def call(self, task, cmd, step, gpus):
        """task running step cmd: its exit code; on CUDA_VISIBLE_DEVICES=gpus if any, logged."""
        task.status, task.step = "running", step
        env = dict(self.env, CUDA_VISIBLE_DEVICES=gpus) if gpus else self.env
        shown = (f"CUDA_VISIBLE_DEVICES={gpus} " if gpus else "") + " ".join(cmd)
        with open(task.log(), "a") as f:
            f.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} $ {shown}\n")
            f.flush()
            # in our process group: Ctrl-C reaches it and train.py saves (torchrun passes it on)
            p = subprocess.Popen(
                cmd, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
            )
            with self.lock:
                self.procs.add(p)
                if self.stopping:  # started as the sweep was told to stop: it saves and exits
                    p.send_signal(signal.SIGTERM)
            rc = p.wait()
            with self.lock:
                self.procs.discard(p)
            return rc

    def terminate(self, sig=signal.SIGTERM):
        """Nothing new starts; the running steps get SIGTERM once (they save, exit) or SIGKILL."""
        with self.lock:
            if sig == signal.SIGKILL or not self.stopping:
                for p in self.procs:
                    p.send_signal(sig)
            self.stopping = True

    def do(self, task):
        t0 = time.time()
        # with gpus, hold a group from train to the end of eval (jobs <= groups: one is free)
        task.gpus = self.free.get() if self.sweep["groups"] else ""
        try:
            if self.train(task):
                self.evaluate(task)
        except Exception as e:  # a bug of ours must not take the other runs down either
            task.status, task.error = "failed", f"{type(e).__name__}: {e}"
        if task.gpus:
            self.free.put(task.gpus)
        task.seconds = round(time.time() - t0, 1)
        return task

    def train(self, task):
        """Train or resume unless finished; False when it did not finish (interrupted or failed)."""
        os.makedirs(task.dir, exist_ok=True)
        state, _ = train_state(task.dir)
        if state != "finished" and not self.stopping:
            rc = self.call(task, task.train_cmd(resume=state == "partial"), "train", task.gpus)
            state, _ = train_state(task.dir)
        if state == "finished":
            return True
        task.status = "interrupted" if self.stopping else "failed"
        if not self.stopping:  # then it ran
            why = tail(task.log("train"))
            task.error = why if rc else f"training stopped before max_iters: {why}"
        return False

    def evaluate(self, task):
        """Every evaluation not written yet, on the group's first GPU. 'done': nothing to do."""
        for e in task.todo()[1]:
            rc = self.call(task, task.eval_cmd(*e), "eval", task.gpus.split(",")[0])
            if rc != 0 or e in task.todo()[1]:
                task.status = "interrupted" if self.stopping else "failed"
                task.error = tail(task.log("eval"))
                return
        task.status = "ok" if task.status == "running" else "done"

    def status_line(self, t0):
        """summary(), what runs where; the fraction f of the work done (of runs not done before;
        training is 90% of a run), elapsed time and ETA."""
        todo = [t for t in self.tasks if t.status != "done"]
        running = [t for t in todo if t.status == "running"]
        f = sum(t.status in ("ok", "failed", "interrupted") for t in todo)
        f += sum(0.9 * (1.0 if t.step == "eval" else train_fraction(t.dir)) for t in running)
        f, elapsed = f / len(todo) if todo else 1.0, time.time() - t0
        where = [f"{t.name} ({t.step}{f', GPU {t.gpus}' if t.gpus else ''})" for t in running]
        eta = runtime.fmt_duration(elapsed * (1 - f) / f) if f > 0.02 else "?"
        line = summary(self.sweep, self.tasks) + (f" | {', '.join(where)}" if where else "")
        return line + f" | {100 * f:.0f}% | {runtime.fmt_duration(elapsed)} elapsed, ETA {eta}"

    def run(self):
        """Every task: a line as each ends, the status line (live on a terminal, else each minute).
        Ctrl-C or terminate(): the running steps save and exit; a second Ctrl-C kills them."""
        t0, tty, last = time.time(), sys.stdout.isatty(), 0.0
        with ThreadPoolExecutor(max_workers=self.sweep["jobs"]) as pool:
            futures = [pool.submit(self.do, t) for t in self.tasks]
            running = set(futures)
            try:
                while running:
                    ended, running = wait(running, timeout=1.0, return_when=FIRST_COMPLETED)
                    for t in [fut.result() for fut in futures if fut in ended]:
                        error = f": {t.error}" if t.error else ""
                        msg = f"{t.name}: {t.status} ({runtime.fmt_duration(t.seconds)}){error}"
                        print(("\r\033[K" if tty else "") + msg, flush=True)
                    if tty:
                        print("\r\033[K" + self.status_line(t0)[:150], end="", flush=True)
                    elif time.time() - last > 60:
                        print(self.status_line(t0), flush=True)
                        last = time.time()
            except KeyboardInterrupt:
                self.stopping = True  # the children got the Ctrl-C (or SIGTERM) too
                print("\ninterrupted: waiting for the running steps to save ...", flush=True)
                pool.shutdown(wait=False, cancel_futures=True)
                for t in [t for t in self.tasks if t.status == "pending"]:
                    t.status = "interrupted"
                while not all(fut.done() for fut in futures):
                    try:
                        time.sleep(0.5)
                    except KeyboardInterrupt:
                        self.terminate(signal.SIGKILL)
        print(self.status_line(t0), flush=True)


# results: status.json, results.csv, results.md ----------------------------------------------------
def status_rows(sweep):
    """The rows of out_dir/status.json, a run and seed each ([] before the first run)."""
    return (read_records(sweep["out_dir"], "status") or {}).get("runs", [])


def write_status(sweep, tasks):
    """status.json: a row per task; the rows of seeds not among them (--seeds) are kept."""
    keys = Task.RESULT + ("gpus",) * bool(sweep["groups"])
    rows = [dict(run=t.run["name"], seed=t.seed, dir=t.dir) for t in tasks]
    for row, t in zip(rows, tasks):
        row.update({k: getattr(t, k) for k in keys})
        if t.job_id:
            row.update(job=t.job_id, job_state=t.job_state)
    ours = {(r["run"], r["seed"]) for r in rows}  # a job id not written down is submitted again
    rows += [r for r in status_rows(sweep) if (r["run"], r["seed"]) not in ours]
    path = os.path.join(sweep["out_dir"], "status.json")
    write_json(path, {"name": sweep["name"], "runs": rows}, indent=1)


def collect(tasks, args, script="eval_lengths", mode=None):
    """{row: {"tasks": [...], "records": {length: [a record per seed]}}}, a row per run and eval
    variant ("rope + yarn x8"), from each run's script.json: records of args' split and mode."""
    ev = eval_lengths.DEFAULTS | args
    mode, split = mode or ev["mode"], ev["split"]
    out = {}
    for t in tasks:
        labels = [""] + [v["variant"] for v in t.run["eval_variants"]]
        rows = {v: t.run["name"] + (f" + {v}" if v else "") for v in labels}
        for row in rows.values():
            out.setdefault(row, dict(tasks=[], records={}))["tasks"].append(t)
        for r in read_records(t.dir, script) if t.status in ("ok", "done") else []:
            v = r.get("variant") or ""
            if r.get("mode") == mode and r.get("split") == split and v in rows:
                out[rows[v]]["records"].setdefault(r["length"], []).append(r)
    return out


def probe_tables(tasks, probes):
    """table()'s arguments for eval_context.py's probes: the gain at each length, and the retrieval
    horizon (every copy record of a run carries it) as a column of one record per seed."""
    gain = collect(tasks, probes, "eval_context", "gain")
    copy = collect(tasks, probes, "eval_context", "copy")
    dists = ", ".join(map(str, sorted({d for e in copy.values() for d in e["records"]})))
    for e in copy.values():
        seeds = {r["out_dir"]: r["horizon"] for rs in e["records"].values() for r in rs}
        e["records"] = {"horizon": [dict(horizon=h) for h in seeds.values()]} if seeds else {}
    return [
        ("**distant-context gain**, nats (loss with the context cut to the training length minus "
         "with the whole window; > 0: the far context helps) by evaluation length (columns):",
         gain, sorted({n for e in gain.values() for n in e["records"]}), "gain", 3),
        (f"**retrieval horizon**: the largest distance D ({dists}) at which the copy probe's "
         "repeat loss is below half the first occurrence's", copy, ["horizon"] if dists else [],
         "horizon", 0),
    ]  # fmt: skip


def row_status(entry):
    """'ok', or each seed that is not: its status and error."""
    bad = [t for t in entry["tasks"] if t.status not in ("ok", "done")]
    return "; ".join(f"seed {t.seed} {t.status}: {t.error[:120]}".rstrip(": ") for t in bad) or "ok"


def cell(entry, n, metric, digits):
    """(text, mean, sample std, seeds) of a metric at length n over the seeds; "none": no seed has
    a value (no retrieval horizon, a loss not finite); "(k of m)": k of the m seeds have one."""
    rs = entry["records"].get(n, [])
    done = [r for r in rs if not r.get("skipped")]
    vals = [r[metric] for r in done if r.get(metric) is not None]
    if not vals:
        return ("none" if done else "skipped" if rs else ""), None, None, 0
    m, s = statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else 0
    text = fmt_float(m, digits) + (f" ± {fmt_float(s, digits)}" if len(vals) > 1 else "")
    return text + (f" ({len(vals)} of {len(done)})" * (len(vals) < len(done))), m, s, len(vals)


def table(title, results, keys, metric, digits):
    """results.md's lines for one metric: a row per run, a column per key (length), then flags()."""
    lines = ["", title, "", "| run | " + " | ".join(map(str, keys)) + " | status |"]
    lines += ["|---|" + "---:|" * len(keys) + "---|"]
    cells = {name: [cell(e, n, metric, digits) for n in keys] for name, e in results.items()}
    notes = {}
    for name, e in results.items():
        for n in [n for n, c in zip(keys, cells[name]) if c[0] == "skipped"]:
            why = next(r.get("reason", "") for r in e["records"][n] if r.get("skipped"))
            notes.setdefault(name, why)
        texts = ["—" if c[0] == "skipped" else c[0] for c in cells[name]]
        lines.append(f"| {name} | " + " | ".join(texts) + f" | {row_status(e)} |")
    if notes:
        lines += ["", "— = skipped: " + "; ".join(f"{k}: {v}" for k, v in notes.items())]
    return lines + (["", line] if (line := flags(cells, keys)) else [])


def flags(cells, keys):
    """The line under a table: per column, the rows adjacent in rank whose means differ by at most
    2 x the larger of their sample stds (each over >= 2 seeds), a pair with its columns."""
    if not any(c[3] > 1 for cs in cells.values() for c in cs):
        return "one seed: no error bars" if any(c[3] for cs in cells.values() for c in cs) else ""
    close, order = {}, list(cells)
    for i, n in enumerate(keys):
        ranked = sorted((c[1], c[2], name) for name, cs in cells.items() if (c := cs[i])[3] > 1)
        for (m1, s1, a), (m2, s2, b) in zip(ranked, ranked[1:]):
            if m2 - m1 <= 2 * max(s1, s2):
                close.setdefault(tuple(sorted((a, b), key=order.index)), []).append(str(n))
    pairs = "; ".join(f"{a} vs {b} ({', '.join(ns)})" for (a, b), ns in close.items())
    return "not separated by the seeds (means within 2 std): " + (pairs or "none")


def write_results(sweep, tasks):
    """results.csv and results.md (a table per metric, then the probes'); results.md's path."""
    results = collect(tasks, sweep["eval_args"])
    lengths = sorted({n for e in results.values() for n in e["records"]})
    recs = [r for e in results.values() for rs in e["records"].values() for r in rs]
    done = [r for r in recs if not r.get("skipped")]
    by_byte = bool(done) and all(r.get("tokenizer") == "bytes" for r in done)  # bpb says it
    metrics = [m for m in METRICS if done and all(r.get(m) is not None for r in done)
               and not (by_byte and m == "word_ppl")] or ["ppl"]  # fmt: skip
    title = lambda m: f"**{METRICS[m]}** by evaluation length (columns):"
    tables = [(title(m), results, lengths, m, 2 + (m == "bits_per_byte")) for m in metrics]
    if sweep["context_args"] is not None:
        tables += probe_tables(tasks, sweep["context_args"])
    with open(os.path.join(sweep["out_dir"], "results.csv"), "w", newline="") as f:
        w = csv.writer(f)
        name = lambda m, n: m if n == m else f"{m}@{n}"  # the horizon: one column
        stats = [name(m, n) + s for _, _, keys, m, _ in tables for n in keys for s in ("", "_std")]
        w.writerow(["run", "encoding", "seeds", "status", *stats])
        for row_name, e in results.items():
            enc = next((r["encoding"] for rs in e["records"].values() for r in rs), "")
            row = [row_name, enc, len(e["tasks"]), row_status(e)]
            for _, res, keys, metric, _ in tables:
                for _, m, s, _ in [cell(res[row_name], n, metric, 6) for n in keys]:
                    row += ["" if m is None else f"{m:.6g}", "" if s is None else f"{s:.3g}"]
            w.writerow(row)
    lines = [f"# Sweep `{sweep['name']}`", "", describe(sweep, tasks, recs, done)]
    for t in [t for t in tables if t[2]]:  # those with columns
        lines += table(*t)
    with open(os.path.join(sweep["out_dir"], "results.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    return os.path.join(sweep["out_dir"], "results.md")


def describe(sweep, tasks, recs, done):
    """The sentence under results.md's title: data, training length, evaluation, seeds."""
    ev, first = eval_lengths.DEFAULTS | sweep["eval_args"], done[0] if done else {}
    trained = sorted({r["block_size"] for r in recs}) or ["?"]
    seeds = sorted({t.seed for t in tasks})
    return (
        f"Dataset `{first.get('dataset', '?')}` ({ev['split']} split, "
        f"{first.get('tokenizer', '?')} tokens), trained at L = {', '.join(map(str, trained))}, "
        f"evaluated {ev['mode']}"
        + (f" with stride {ev['stride']}" if ev["stride"] else "")
        + (f" on the first {first['max_tokens']:,} tokens" if first.get("max_tokens") else "")
        + f"; mean ± sample std over {len(seeds)} seed(s) ({', '.join(map(str, seeds))})."
    )


def collect_all(sweep, tasks):
    """status.json, results.csv / results.md, and the plots (scripts/plot.py, as `make demo`)."""
    write_status(sweep, tasks)
    print(f"wrote {write_results(sweep, tasks)}")
    plot = [sys.executable, os.path.join(REPO, "scripts", "plot.py"), sweep["out_dir"]]
    if importlib.util.find_spec("matplotlib") is None:
        print("plots skipped: matplotlib is not installed (pip install matplotlib)")
    elif subprocess.run(plot).returncode:
        print("plots failed (see above); the tables are written")


def summary(sweep, tasks):
    n = {s: sum(t.status == s for t in tasks) for s in ("failed", "running", "queued")}
    done = f"{sum(t.status in ('ok', 'done') for t in tasks)}/{len(tasks)} done"
    return f"[sweep {sweep['name']}] {done}" + "".join(f", {v} {k}" for k, v in n.items() if v)


def show_status(sweep, tasks):
    print(summary(sweep, tasks))
    for t in tasks:
        job = f"job {t.job_id} {t.job_state}" if t.job_id else ""
        what = t.status + (f" ({t.step})" if t.status == "running" else "")
        print(f"  {t.name:<24} {what:<16} {job:<24} {t.log()}")
        if t.status == "failed" and t.error:
            print(f"      {t.error}")
        if t.status != "running" and (todo := t.todo())[0] == "finished" and todo[1]:
            print(f"      to evaluate: {', '.join(dict.fromkeys(f'{s}.py' for s, _ in todo[1]))}")


def report_failures(tasks):
    """FAILED lines; the exit status: 1 if a run failed, else 0."""
    failed = [t for t in tasks if t.status == "failed"]
    for t in failed:
        print(f"FAILED {t.name}: {t.error}  (log: {t.log()})")
    return int(bool(failed))
