"""
Train and evaluate every run of a sweep, then tabulate: the overnight workhorse.

    python scripts/sweep.py configs/sweeps/demo.py
    python scripts/sweep.py configs/sweeps/wikitext103.py --dry_run      # what would run
    python scripts/sweep.py configs/sweeps/wikitext103.py --only=alibi,rope

A sweep file is plain Python (see configs/sweeps/demo.py):
    name = "demo"                      # a label for tables and plots
    out_dir = "out/sweeps/demo"        # run r, seed k trains into out_dir/r/seed{k}/
    common = dict(max_iters=800)       # overrides for every run
    runs = [dict(name="alibi", config="configs/demo/alibi.py", overrides={...}), ...]
    seeds = [1337]                     # every run is trained once per seed
    eval_args = dict(lengths=[64, 128], mode="nonoverlapping")   # for scripts/eval_lengths.py
    jobs = 1                           # runs trained at the same time
    threads = 0                        # CPU threads per run (OMP_NUM_THREADS); 0 = torch default

For each run and seed: train.py (skipped when its checkpoint is finished, resumed with
--init_from=resume when one exists but is not), then scripts/eval_lengths.py (skipped when
eval_lengths.json already holds every requested length of the current checkpoint). Both run as
subprocesses, so a crash, NaN or bad config fails that run only (its error is recorded and the
sweep goes on) and memory is freed between runs; their output goes to train.log / eval.log in
the run's directory. Rerunning the same command after an interruption (Ctrl-C, a crash, a
reboot) picks up where it stopped.

Writes out_dir/status.json (one entry per run and seed), results.csv and results.md (one row per
run: mean ± sample std over seeds at each evaluation length). Exit status: 0 if every run
succeeded, else the number of failed runs (run x seed; at most 125); 130 when interrupted;
2 for a bad sweep file or option (printed as `error: ...`).
"""

import csv
import difflib
import json
import math
import os
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
)
SWEEP_KEYS = dict(
    name=str, out_dir=str, common=dict, runs=list, seeds=list, eval_args=dict, jobs=int, threads=int
)
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
            raise UserError(f"{path}: {k} must be a {SWEEP_KEYS[k].__name__}, got {v!r}")
    if not ns.get("runs"):
        raise UserError(f"{path}: define runs = [dict(name=..., config=...), ...]")
    sweep = dict(
        name=os.path.splitext(os.path.basename(path))[0],
        common={},
        seeds=[1337],
        eval_args={},
        jobs=1,
        threads=0,
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
    if sweep["jobs"] < 1:
        raise UserError(f"{path}: jobs must be at least 1")
    return sweep


VARIANT_KEYS = {"rope_scaling", "rope_factor", "encoding_kwargs", "variant"}


def flag(key, value):
    """--key=value as train.py / eval_lengths.py parse it (literals; bare strings)."""
    if isinstance(value, (list, tuple)):
        value = ",".join(str(v) for v in value) if value else "()"
    return f"--{key}={value if isinstance(value, str) else repr(value)}"


class Task:
    """One run at one seed: out_dir/<run>/seed<k>."""

    def __init__(self, sweep, run, seed):
        self.run, self.seed = run, seed
        self.name = f"{run['name']}/seed{seed}"
        self.dir = os.path.join(sweep["out_dir"], run["name"], f"seed{seed}")
        self.sweep = sweep
        self.status, self.step, self.error, self.seconds = "pending", "", "", 0.0

    def train_cmd(self, resume):
        overrides = {**self.sweep["common"], **self.run["overrides"], "seed": self.seed}
        cmd = [sys.executable, os.path.join(REPO, "train.py"), self.run["config"]]
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
        self.env = dict(os.environ, PYTHONUNBUFFERED="1")
        if sweep["threads"]:
            self.env.update(
                OMP_NUM_THREADS=str(sweep["threads"]), MKL_NUM_THREADS=str(sweep["threads"])
            )

    def call(self, task, cmd, log_name):
        """Run cmd with its output appended to the run's log; returns the exit code."""
        log = os.path.join(task.dir, log_name)
        with open(log, "a") as f:
            f.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} $ {' '.join(cmd)}\n")
            f.flush()
            # stdin closed, a new process group is not used: Ctrl-C reaches the child too, and
            # train.py answers it by saving a checkpoint
            p = subprocess.Popen(
                cmd, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=self.env
            )
            with self.lock:
                self.procs.add(p)
            try:
                return p.wait()
            finally:
                with self.lock:
                    self.procs.discard(p)

    def do(self, task):
        t0 = time.time()
        try:
            self._do(task)
        except Exception as e:  # a bug of ours must not take the other runs down either
            task.status, task.error = "failed", f"{type(e).__name__}: {e}"
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
            rc = self.call(task, task.train_cmd(resume=state == "partial"), "train.log")
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
            rc = self.call(task, task.eval_cmd(args), "eval.log")
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
        running = [f"{t.name} ({t.step})" for t in self.tasks if t.status == "running"]
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
        )
        for t in tasks
    ]
    write_json(path, {"name": sweep["name"], "runs": rows}, indent=1)


# -----------------------------------------------------------------------------


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    argv = [
        a.replace("--dry-run", "--dry_run", 1) if a.startswith("--dry-run") else a for a in argv
    ]
    argv = ["--dry_run=True" if a == "--dry_run" else a for a in argv]
    cfg = parse_args(argv, DEFAULTS, positional="sweep")
    if not cfg["sweep"]:
        raise UserError("usage: python scripts/sweep.py configs/sweeps/NAME.py [--dry_run]")
    sweep = load_sweep(cfg["sweep"])
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

    if cfg["dry_run"]:
        print(f"sweep {sweep['name']}: {len(tasks)} runs into {sweep['out_dir']}")
        for t in [t for t in tasks if t.status == "pending"]:
            state, iter_num = train_state(t.dir)
            if state == "finished":
                todo = [a for a in t.evals() if not eval_done(t.dir, a, iter_num)]
                print(f"  {t.name}: trained; {'evaluate' if todo else 'evaluated'}")
                for args in todo:
                    print("    " + shlex.join(t.eval_cmd(args)))
            else:
                print(f"  {t.name}: {'resume' if state == 'partial' else 'train'}, then evaluate")
                print("    " + shlex.join(t.train_cmd(resume=state == "partial")))
                for args in t.evals():
                    print("    " + shlex.join(t.eval_cmd(args)))
        return 0

    os.makedirs(sweep["out_dir"], exist_ok=True)
    print(
        f"sweep {sweep['name']}: {len(tasks)} runs into {sweep['out_dir']} "
        f"({sweep['jobs']} at a time); logs in each run's train.log / eval.log"
    )
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
    failed = [t for t in tasks if t.status == "failed"]
    for t in failed:
        print(f"FAILED {t.name}: {t.error}  (log: {t.dir}/{t.step or 'train'}.log)")
    return min(len(failed), 125)


if __name__ == "__main__":
    code = 0

    def _main():
        global code
        code = main()

    run_cli(_main)
    sys.exit(code)
