"""
scripts/sweep.py --launcher=slurm (docs/sweeps.md): a SLURM job (via submitit, imported only when
used) per run and seed not done, queued or running, running the local launcher's train and eval.
Job ids go to status.json: the same command later re-attaches instead of resubmitting.
"""

import os
import signal
import sys
import threading
import time

import scripts.runs as runs
from configurator import UserError, check_keys

POLL_S = 2.0  # how often we look at the jobs (a file check; submitit runs sacct at most 1/min)
# slurm = dict(...) in the sweep file: submitit's slurm_<key> parameters; the types of these
SLURM_KEYS = dict(partition="gpu", time=720, gpus_per_node=1, account="name", constraint="a100")


def import_submitit():
    try:
        import submitit
    except ImportError:
        raise UserError("SLURM jobs need submitit: pip install submitit") from None
    return submitit


def parameters(sweep, cfg):
    """submitit's slurm_* parameters. UserError on an unknown key, a wrong type or no time."""
    import_submitit()  # first: without it nothing of a SLURM sweep can run
    flags = {k: cfg[f"slurm_{k}"] for k in SLURM_KEYS if cfg[f"slurm_{k}"] is not None}
    flags = {k: str(v) if type(SLURM_KEYS[k]) is str else v for k, v in flags.items()}  # a name
    given = check_keys(sweep["slurm"] | flags, SLURM_KEYS, "slurm")  # flags win; time: minutes
    if "time" not in given:  # submitit's default is 5 minutes
        raise UserError("slurm: set a time limit in minutes: dict(time=720) or --slurm_time=720")
    sweep["gpus_per_run"] = given.setdefault("gpus_per_node", sweep["gpus_per_run"])
    if not given["gpus_per_node"]:
        del given["gpus_per_node"]  # a CPU job: no --gpus-per-node=0 for sbatch
    return {f"slurm_{k}": v for k, v in given.items()}


def executor(sweep, params):
    submitit = import_submitit()
    try:
        ex = submitit.AutoExecutor(folder=os.path.join(sweep["out_dir"], "slurm"), cluster="slurm")
    except RuntimeError as e:  # no srun here
        raise UserError(f"--launcher=slurm: {e}") from None
    ex.update_parameters(**params)
    # a job unpickles scripts.slurm.RunJob, from whatever directory: sbatch passes this on
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [runs.REPO, os.getenv("PYTHONPATH")]))
    return ex


class RunJob:
    """A SLURM job: one run at one seed, by Sweep.do. At the time limit or a preemption submitit
    calls checkpoint(): train.py saves, and a fresh RunJob requeued resumes from it."""

    def __init__(self, sweep, run, seed):
        self.args = (sweep, run, seed)

    def __call__(self):
        task = runs.Task(*self.args)
        self.live = live = runs.Sweep(self.args[0], [task])
        # SLURM's SIGTERM (scancel, a preemption without warning) reaches train.py, which saves:
        # end without a result, so that the job counts as unfinished, not failed
        signal.signal(signal.SIGTERM, lambda *a: setattr(live, "stopping", True))

        def work():
            # inherited by the children: SLURM signals every process of the job, and train.py
            # must save on checkpoint()'s SIGTERM, not die of the USR signal
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1, signal.SIGUSR2})
            live.do(task)

        self.thread = threading.Thread(target=work)
        self.thread.start()
        self.thread.join()  # submitit's signal handler runs in this (the main) thread
        if task.status == "interrupted":
            sys.exit(1)
        return {k: getattr(task, k) for k in runs.Task.RESULT}

    def checkpoint(self):
        from submitit.helpers import DelayedSubmission

        if getattr(self, "live", None) is not None:
            self.live.terminate()
            self.thread.join()  # the checkpoint is on disk
        return DelayedSubmission(RunJob(*self.args))


def refresh(task, job):
    """task's status from its SLURM job (or None) and its files: queued, running, done (trained and
    evaluated), else what the job returned, or failed."""
    if job is not None:
        active = not job.done()  # updates job.state
        mtime = lambda s: os.path.getmtime(task.log(s)) if os.path.exists(task.log(s)) else 0
        task.job_state, task.step = job.state, "eval" if mtime("eval") > mtime("train") else "train"
        if active:
            task.status = "running" if job.state == "RUNNING" else "queued"
            return
        if job.paths.result_pickle.exists():
            try:
                r = job.result()
                task.status, task.step, task.error, task.seconds = (r[k] for k in runs.Task.RESULT)
            except Exception as e:  # the job raised: its last line says what
                task.status, task.error = "failed", str(e).strip().splitlines()[-1]
        else:  # killed, cancelled, out of time or memory
            why = runs.tail(task.log())
            task.status, task.error = "failed", f"job ended {job.state}, no result: {why}"
    if task.is_done():
        task.status, task.step, task.error = "done", "", ""


def attach(sweep, tasks):
    """Each task's status and SLURM job as status.json has them, refreshed. {task name: job}."""
    rows, jobs = {f"{r['run']}/seed{r['seed']}": r for r in runs.status_rows(sweep)}, {}
    for t in tasks:
        r = rows.get(t.name, {})
        if t.status == "pending":  # not left out by --only
            t.status, t.step, t.error = (r.get(k, "") for k in ("status", "step", "error"))
            t.status = t.status or "pending"
        t.job_id = r.get("job", "")
        if t.job_id:
            folder = os.path.join(sweep["out_dir"], "slurm")
            jobs[t.name] = import_submitit().SlurmJob(folder, t.job_id)
    for t in tasks:  # after every job is known: one sacct call looks at them all
        refresh(t, jobs.get(t.name))
    return jobs


def launch(sweep, tasks, params):
    """A job per task neither done, queued nor running (status.json's ids); wait for every job (a
    line as each ends), collect. The exit status as run_local's; 130: Ctrl-C stopped the wait."""
    ex = executor(sweep, params)
    os.makedirs(sweep["out_dir"], exist_ok=True)
    mine = [t for t in tasks if t.status == "pending"]  # not left out by --only
    jobs = attach(sweep, tasks)
    todo = [t for t in mine if t.status not in ("done", "queued", "running")]
    for t in todo:
        ex.update_parameters(name=f"{sweep['name']}/{t.name}")
        jobs[t.name] = ex.submit(RunJob(sweep, t.run, t.seed))
        t.job_id, t.job_state, t.status, t.step, t.error = jobs[t.name].job_id, "", "queued", "", ""
        runs.write_status(sweep, tasks)  # at once: an id not written down would be submitted again
    msg = f"sweep {sweep['name']}: submitted {len(todo)} SLURM job(s) ({params}); logs in each"
    print(msg + " run's train.log / eval.log. Waiting: Ctrl-C stops the waiting, not the jobs")
    waiting, last = [t for t in tasks if t.status in ("queued", "running")], ""
    try:
        while waiting:
            for t in list(waiting):
                refresh(t, jobs[t.name])
                if t.status not in ("queued", "running"):
                    waiting.remove(t)
                    print(f"{t.name}: {t.status}" + (f": {t.error}" if t.error else ""), flush=True)
                    runs.write_status(sweep, tasks)
            if runs.summary(sweep, tasks) != last:
                last = runs.summary(sweep, tasks)
                print(last, flush=True)
            time.sleep(POLL_S if waiting else 0)
    except KeyboardInterrupt:
        print("\nstopped waiting; the jobs go on (see --status; the same command waits again)")
        return 130
    runs.collect_all(sweep, tasks)
    return runs.report_failures(tasks)
