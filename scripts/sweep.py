"""
Train and evaluate every run of a sweep, then tabulate: the overnight workhorse.

    python scripts/sweep.py configs/sweeps/demo.py [--dry_run] [--only=alibi,rope]
    python scripts/sweep.py configs/sweeps/wikitext103.py --gpus=all   # one run per GPU
    python scripts/sweep.py configs/sweeps/wikitext103.py --gpus=0,1,2,3 --gpus_per_run=2
    python scripts/sweep.py configs/sweeps/wikitext103.py --launcher=slurm  # scripts/slurm.py
    python scripts/sweep.py configs/sweeps/wikitext103.py --status     # or --collect: the tables

A sweep file sets keys of SWEEP_FILE (scripts/runs.py); the guide is docs/sweeps.md. Every run's
settings are checked before anything runs (--dry_run: the checks, then the plan). A run trains
(resumed if interrupted), then evaluates, skipping what is done: rerun the same command after a
crash. Exit status: 0 every run succeeded; 1 some runs failed; 2 the sweep file, an option or a
run's settings are invalid (nothing ran); 130 interrupted.
"""

import os
import re
import shlex
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # repo root

import scripts.runs as runs
from configurator import UserError, check_choice, parse_args, run_cli
from runtime import hold_lock
from scripts import slurm

DEFAULTS = dict(
    sweep="",  # the sweep file (the positional argument)
    dry_run=False,  # list what would run, run nothing
    only="",  # names of the runs to do, e.g. --only=alibi,rope (default: all)
    seeds=(),  # every run at these seeds, e.g. --seeds=1337,1338,1339 (default: the sweep file's)
    gpus="",  # "all" or device indices, e.g. --gpus=0,1,2,3 (default: the sweep file's gpus)
    gpus_per_run=0,  # GPUs per run (default: the sweep file's gpus_per_run, else 1)
    launcher="local",  # local (this machine) | slurm (one job per run and seed, via submitit)
    status=False,  # show every run's state (and its SLURM job's), run nothing
    collect=False,  # write results.csv / results.md and the plots from what is done, run nothing
    **{f"slurm_{k}": None for k in slurm.SLURM_KEYS},  # --slurm_<key>: wins over the file's slurm
)


def parse_cli(argv):
    """The options; --dry-run is --dry_run, and --dry_run, --status, --collect need no =True."""
    if "-h" in argv or "--help" in argv:
        print(__doc__.strip() + "\n")  # then parse_args lists the keys
    argv = [re.sub(r"^--dry-run", "--dry_run", a) for a in argv]
    argv = [a + "=True" if a in ("--dry_run", "--status", "--collect") else a for a in argv]
    cfg = parse_args(argv, DEFAULTS, positional="sweep", usage="SWEEP_FILE [--key=value ...]")
    if not cfg["sweep"]:
        raise UserError("usage: python scripts/sweep.py configs/sweeps/NAME.py [--dry_run]")
    check_choice("--launcher", cfg["launcher"], ("local", "slurm"))
    if cfg["launcher"] == "slurm" and (cfg["gpus"] or cfg["gpus_per_run"]):
        raise UserError("--gpus and --gpus_per_run are for one node; SLURM: slurm gpus_per_node")
    return cfg


def make_tasks(sweep, only):
    """A task per run and seed; with --only, the others are 'done' (tabulated) or 'not run'."""
    only, names = [n for n in only.split(",") if n], [r["name"] for r in sweep["runs"]]
    if set(only) - set(names):
        unknown = ", ".join(n for n in only if n not in names)
        raise UserError(f"--only: no run named {unknown} (runs: {', '.join(names)})")
    tasks = [runs.Task(sweep, r, s) for r in sweep["runs"] for s in r.get("seeds", sweep["seeds"])]
    for t in [t for t in tasks if only and t.run["name"] not in only]:
        t.status = "done" if t.is_done() else "not run"
    return tasks


def dry_run(sweep, tasks, slurm_params):
    """What the run would do, with the commands; runs nothing."""
    print(f"sweep {sweep['name']}: {len(tasks)} runs into {sweep['out_dir']}")
    if sweep["groups"]:
        print(f"  {runs.gpu_plan(sweep)}")
    if slurm_params:
        print(f"  SLURM: one job per run and seed to do, {slurm_params}")
    starting = (sweep["groups"] or [])[: sweep["jobs"]]  # the first runs with work take these
    for t in [t for t in tasks if t.status == "pending"]:
        state, todo = t.todo()
        gpus = starting.pop(0) if starting and (state != "finished" or todo) else ""
        where = f" on CUDA_VISIBLE_DEVICES={gpus}" if gpus else " on the first GPUs to free"
        where = where if sweep["groups"] else ""
        cmds = [t.eval_cmd(*e) for e in (todo if state == "finished" else t.evals())]
        if state == "finished":
            print(f"  {t.name}: trained; {'evaluate' + where if todo else 'evaluated'}")
        else:
            verb = "resume" if state == "partial" else "train"
            print(f"  {t.name}: {verb}, then evaluate{where}")
            cmds.insert(0, t.train_cmd(resume=state == "partial"))
        print("".join(f"    {shlex.join(cmd)}\n" for cmd in cmds), end="")
    return 0


def run_local(sweep, tasks, argv):
    """Train and evaluate on this machine; the exit status."""
    os.makedirs(sweep["out_dir"], exist_ok=True)
    msg = f"sweep {sweep['name']}: {len(tasks)} runs into {sweep['out_dir']} ({sweep['jobs']} at"
    print(msg + " a time); logs in each run's train.log / eval.log")
    if sweep["groups"]:
        print(runs.gpu_plan(sweep))
    s = runs.Sweep(sweep, [t for t in tasks if t.status == "pending"])

    def on_sigterm(signum, frame):  # `kill` or a scheduler: the steps save, then as Ctrl-C
        s.terminate()
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    s.run()
    runs.write_status(sweep, tasks)
    print(f"wrote {runs.write_results(sweep, tasks)}")
    if s.stopping:
        print(f"interrupted; to continue, run it again: python scripts/sweep.py {shlex.join(argv)}")
        return 130
    return runs.report_failures(tasks)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    cfg = parse_cli(argv)
    sweep = runs.load_sweep(cfg["sweep"])
    for r in sweep["runs"] if cfg["seeds"] else []:  # a run's own seeds=[...] too
        r["seeds"] = list(cfg["seeds"])
    look = cfg["status"] or cfg["collect"]
    params = slurm.parameters(sweep, cfg) if cfg["launcher"] == "slurm" else None
    if not (params or look):
        runs.plan_gpus(sweep, cfg)
    tasks = make_tasks(sweep, cfg["only"])
    if look:
        if cfg["collect"] and not os.path.isdir(sweep["out_dir"]):
            raise UserError(f"{sweep['out_dir']} does not exist: the sweep has not run yet")
        slurm.attach(sweep, tasks)  # before its first run: every run pending
        (runs.collect_all if cfg["collect"] else runs.show_status)(sweep, tasks)
        return 0
    if problems := runs.check_runs(tasks, devices=params is None):
        raise UserError("\nerror: ".join(problems))  # a line each; run_cli: exit status 2
    if cfg["dry_run"]:
        return dry_run(sweep, tasks, params)
    with hold_lock(sweep["out_dir"], "set another out_dir in the sweep file"):  # one sweep at once
        if params:
            return slurm.launch(sweep, tasks, params)
        return run_local(sweep, tasks, argv)


if __name__ == "__main__":
    run_cli(lambda: sys.exit(main()))
