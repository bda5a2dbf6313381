"""scripts/sweep.py on tiny runs: skip, resume, failure isolation, tables, exit status; runs
spread over (faked) GPUs."""

import csv
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import load_script, write_token_dataset

import scripts.runs as runs
from configurator import UserError, load_config
from encoding import available_encodings

ROOT = Path(__file__).resolve().parent.parent
VOCAB = 32


def make_dataset(root):
    rng = np.random.default_rng(0)
    splits = {}
    for split, n in (("train", 3000), ("val", 600), ("test", 600)):
        # a learnable pattern (counting mod VOCAB with noise) so that losses are not all equal
        x = (np.arange(n) + (rng.random(n) < 0.2) * rng.integers(0, VOCAB, n)) % VOCAB
        splits[split] = x.astype(np.uint16)
    write_token_dataset(root, splits, VOCAB)


def write_sweep(root, runs, max_iters=4, seeds=(1,)):
    common = dict(
        dataset="tiny",
        data_dir=str(root / "data"),
        n_layer=1,
        n_head=2,
        n_embd=16,
        block_size=16,
        batch_size=4,
        max_iters=max_iters,
        warmup_iters=1,
        eval_interval=2,
        eval_iters=1,
        log_interval=1,
        device="cpu",
    )
    path = root / "sweep_tiny.py"
    path.write_text(
        f"name = 'tiny'\nout_dir = {str(root / 'sweep')!r}\ncommon = {common!r}\n"
        f"runs = {runs!r}\nseeds = {list(seeds)!r}\njobs = 2\nthreads = 1\n"
        "eval_args = dict(lengths=[16, 32], max_tokens=200, device='cpu')\n"
    )
    return path


def sweep(path, *args):
    return subprocess.run(
        [sys.executable, "scripts/sweep.py", str(path), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def statuses(root):
    rows = json.loads((root / "sweep" / "status.json").read_text())["runs"]
    return {(r["run"], r["seed"]): r for r in rows}


def n_train_calls(run_dir):
    log = run_dir / "train.log"
    return log.read_text().count("\n=== ") if log.exists() else 0


def test_failures_are_isolated_then_finished_runs_are_skipped(tmp_path):
    make_dataset(tmp_path)
    runs = [
        dict(name="alibi", config="configs/demo/alibi.py"),
        # valid settings, but an unreadable ckpt.pt to resume: fails as it runs
        dict(name="broken", config="configs/demo/rope.py", seeds=[1, 2]),
    ]
    path = write_sweep(tmp_path, runs)
    probes = "dict(lengths=[16, 32], distances=[4, 8], max_tokens=200, device='cpu')"
    path.write_text(path.read_text() + f"context_args = {probes}\n")
    for seed in (1, 2):
        (tmp_path / "sweep" / "broken" / f"seed{seed}").mkdir(parents=True)
        (tmp_path / "sweep" / "broken" / f"seed{seed}" / "ckpt.pt").write_bytes(b"garbage")
    p = sweep(path)
    assert p.returncode == 1, p.stdout + p.stderr  # some runs failed (two here)
    st = statuses(tmp_path)
    assert st[("alibi", 1)]["status"] == "ok"
    assert st[("broken", 2)]["status"] == "failed" and "ckpt.pt" in st[("broken", 2)]["error"]
    assert p.stdout.count("FAILED") == 2
    ok_dir = tmp_path / "sweep" / "alibi" / "seed1"
    records = json.loads((ok_dir / "eval_lengths.json").read_text())
    assert [r["length"] for r in records] == [16, 32] and all(r["ppl"] > 1 for r in records)
    # the tables: a row per run, the failures say why
    with open(tmp_path / "sweep" / "results.csv") as f:
        rows = {r["run"]: r for r in csv.DictReader(f)}
    assert set(rows) == {"alibi", "broken"}
    assert float(rows["alibi"]["ppl@32"]) == pytest.approx(records[1]["ppl"], rel=1e-5)
    assert rows["broken"]["ppl@16"] == "" and "failed" in rows["broken"]["status"]
    md = (tmp_path / "sweep" / "results.md").read_text()
    assert "| alibi |" in md and "perplexity" in md and "nonoverlapping" in md
    # the probes ran after eval_lengths.py: the gain at L = L_train is 0 by construction
    probes = json.loads((ok_dir / "eval_context.json").read_text())
    assert [(r["mode"], r["length"]) for r in probes] == [(m, n) for m, ns in
            (("copy", (4, 8)), ("gain", (16, 32))) for n in ns]  # fmt: skip
    assert probes[2]["gain"] == 0 and float(rows["alibi"]["gain@32"]) == pytest.approx(
        probes[3]["gain"], abs=1e-6)  # fmt: skip
    assert "**distant-context gain**" in md and "**retrieval horizon**" in md
    # second time: the finished run is neither retrained nor re-evaluated
    mtimes = [(ok_dir / f).stat().st_mtime for f in ("eval_lengths.json", "eval_context.json")]
    p = sweep(path, "--only=alibi")
    assert p.returncode == 0, p.stdout + p.stderr
    assert n_train_calls(ok_dir) == 1
    assert [
        (ok_dir / f).stat().st_mtime for f in ("eval_lengths.json", "eval_context.json")
    ] == mtimes
    assert statuses(tmp_path)[("alibi", 1)]["status"] == "done"
    with open(tmp_path / "sweep" / "results.csv") as f:  # --only keeps the other runs' rows
        assert {r["run"] for r in csv.DictReader(f)} == {"alibi", "broken"}


def test_every_invalid_run_is_listed_before_anything_runs(tmp_path, monkeypatch):
    """A misspelt encoding, a dataset never prepared, bad evaluation lengths: --dry_run lists
    every problem of every run, a line each, and exits 2; the real command too, before training."""
    make_dataset(tmp_path)
    runs = [
        dict(name="alibi", config="configs/demo/alibi.py"),
        dict(name="typo", config="configs/demo/rope.py", overrides=dict(encoding="rop")),
        dict(name="nodata", config="configs/demo/alibi.py", overrides=dict(dataset="never")),
    ]
    path = write_sweep(tmp_path, runs)
    path.write_text(path.read_text().replace("lengths=[16, 32]", "lengths=[32, 0, -4]"))
    p = sweep(path, "--dry_run")
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stdout + p.stderr
    lines = p.stderr.splitlines()
    assert len(lines) == 5 and all(line.startswith("error: ") for line in lines)
    lengths = "--lengths must be positive integers like --lengths=512,1024, got (32, 0, -4)"
    assert [line.split(": ")[1] for line in lines if lengths in line] == ["alibi", "typo", "nodata"]
    assert "error: typo: unknown encoding 'rop' (did you mean 'rope'?)" in p.stderr
    assert "error: nodata: dataset not found at" in p.stderr
    # the real command: the same lines, and no run starts
    fake = FakeRuns()
    with pytest.raises(UserError) as e:
        run_main(load_script("sweep"), monkeypatch, [path], fake)
    assert "error: " + str(e.value) + "\n" == p.stderr
    assert fake.events == [] and not (tmp_path / "sweep").exists()


def test_status_before_the_first_run_lists_every_run_as_pending(tmp_path, monkeypatch, capsys):
    sw = load_script("sweep")
    path = gpu_sweep(tmp_path, runs=("a", "b"))
    assert run_main(sw, monkeypatch, [path, "--status"], FakeRuns()) == 0
    out = capsys.readouterr().out
    assert "0/4 done" in out and not (tmp_path / "sweep").exists()
    assert sum(f"{r}/seed{s}" in line and "pending" in line for r in "ab" for s in (1, 2)
               for line in out.splitlines()) == 4  # fmt: skip


def test_seeds_flag_trains_every_run_at_those_seeds(tmp_path, monkeypatch, capsys):
    sw = load_script("sweep")
    path = gpu_sweep(tmp_path, runs=("a", "b"))  # seeds (1, 2) in the file
    assert run_main(sw, monkeypatch, [path, "--status", "--seeds=3,1"], FakeRuns()) == 0
    out = capsys.readouterr().out
    assert "0/4 done" in out and "a/seed3" in out and "b/seed1" in out and "seed2" not in out


def test_status_keeps_the_rows_of_seeds_not_given(tmp_path):
    """--seeds=1 on a sweep whose status.json has seeds 1 and 2: seed 2's row (its SLURM job id)
    stays, or a later run would submit it again."""
    sweep = runs.load_sweep(str(gpu_sweep(tmp_path, runs=("a",))))
    tasks = [runs.Task(sweep, sweep["runs"][0], seed) for seed in (1, 2)]
    tasks[1].job_id = "42"
    os.makedirs(sweep["out_dir"])
    runs.write_status(sweep, tasks)
    tasks[0].status = "ok"
    runs.write_status(sweep, tasks[:1])
    rows = {r["seed"]: (r["status"], r.get("job")) for r in runs.status_rows(sweep)}
    assert rows == {1: ("ok", None), 2: ("pending", "42")}


def test_help_states_the_exit_codes(monkeypatch, capsys):
    sw = load_script("sweep")
    with pytest.raises(SystemExit) as e:
        sw.main(["--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0 and "--dry_run=False" in out
    assert "0 every run succeeded; 1 some runs failed" in " ".join(out.split())


def test_interrupted_run_is_resumed(tmp_path):
    make_dataset(tmp_path)
    path = write_sweep(tmp_path, [dict(name="alibi", config="configs/demo/alibi.py")], max_iters=4)
    run_dir = tmp_path / "sweep" / "alibi" / "seed1"
    # a run stopped at iter 2 of 4: train 2 iterations, then mark the checkpoint unfinished
    common = json.loads(json.dumps(dict(dataset="tiny", data_dir=str(tmp_path / "data"))))
    args = [f"--{k}={v}" for k, v in common.items()]
    args += [
        "--n_layer=1",
        "--n_head=2",
        "--n_embd=16",
        "--block_size=16",
        "--batch_size=4",
        "--max_iters=2",
        "--warmup_iters=1",
        "--eval_interval=2",
        "--eval_iters=1",
        "--log_interval=1",
        "--device=cpu",
        "--seed=1",
        f"--out_dir={run_dir}",
    ]
    subprocess.run(
        [sys.executable, "train.py", "configs/demo/alibi.py", *args],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    ckpt = torch.load(run_dir / "ckpt.pt", weights_only=True)
    ckpt["finished"] = False
    torch.save(ckpt, run_dir / "ckpt.pt")
    p = sweep(path)
    assert p.returncode == 0, p.stdout + p.stderr
    log = (run_dir / "train.log").read_text()
    assert "--init_from=resume" in log and "resuming" in log
    ckpt = torch.load(run_dir / "ckpt.pt", weights_only=True)
    assert ckpt["finished"] and ckpt["iter_num"] == 4
    assert json.loads((run_dir / "eval_lengths.json").read_text())[0]["iter_num"] == 4


def test_dry_run_lists_and_runs_nothing(tmp_path):
    make_dataset(tmp_path)
    path = write_sweep(
        tmp_path,
        [
            dict(name="alibi", config="configs/demo/alibi.py"),
            dict(name="rope", config="configs/demo/rope.py"),
        ],
        seeds=(1, 2),
    )
    p = sweep(path, "--dry-run")
    assert p.returncode == 0, p.stderr
    assert p.stdout.count("train, then evaluate") == 4 and "rope/seed2" in p.stdout
    assert "eval_lengths.py" in p.stdout and "--seed=2" in p.stdout
    assert not (tmp_path / "sweep").exists()


def test_a_second_sweep_on_the_same_out_dir_is_refused(tmp_path):
    import fcntl

    make_dataset(tmp_path)
    path = write_sweep(tmp_path, [dict(name="alibi", config="configs/demo/alibi.py")])
    (tmp_path / "sweep").mkdir()
    with open(tmp_path / "sweep" / ".lock", "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        held.write("sweep.py (pid 4242 on node7)\n")
        held.flush()
        p = sweep(path)
    assert p.returncode == 2 and p.stderr.count("\n") == 1, p.stderr
    assert "in use by sweep.py (pid 4242 on node7)" in p.stderr
    assert os.listdir(tmp_path / "sweep") == [".lock"]  # nothing ran


def test_bad_sweep_file_is_one_clear_line(tmp_path):
    path = tmp_path / "s.py"
    path.write_text("runs = [dict(name='a', config='configs/demo/alibi.py')]\nseed = [1]\n")
    p = sweep(path)
    assert p.returncode == 2 and p.stderr.startswith("error:") and "seeds" in p.stderr
    assert "Traceback" not in p.stderr


def test_eval_variants_are_rows_of_their_own(tmp_path):
    """RoPE context extension evaluated on the same checkpoint: one extra row per variant, the
    training run not repeated, and the variant evaluation skipped once done."""
    make_dataset(tmp_path)
    variants = [dict(rope_scaling="yarn", rope_factor=4), dict(rope_scaling="linear")]
    runs = [dict(name="rope", config="configs/demo/rope.py", eval_variants=variants)]
    path = write_sweep(tmp_path, runs)
    p = sweep(path)
    assert p.returncode == 0, p.stdout + p.stderr
    records = json.loads((tmp_path / "sweep/rope/seed1/eval_lengths.json").read_text())
    by_variant = {}
    for r in records:
        by_variant.setdefault(r["variant"], []).append(r)
    assert sorted(by_variant) == ["", "linear x8", "yarn x4"]
    assert by_variant["yarn x4"][0]["encoding_kwargs"] == {"scaling": "yarn", "factor": 4.0}
    assert by_variant[""][0]["encoding_kwargs"] == {}
    # the variant changes the numbers (positions are interpolated), and each is its own row
    assert by_variant["linear x8"][0]["loss"] != by_variant[""][0]["loss"]
    with open(tmp_path / "sweep/results.csv") as f:
        rows = [r["run"] for r in csv.DictReader(f)]
    assert rows == ["rope", "rope + yarn x4", "rope + linear x8"]
    assert "| rope + yarn x4 |" in (tmp_path / "sweep/results.md").read_text()
    eval_log = tmp_path / "sweep/rope/seed1/eval.log"
    n_evals = eval_log.read_text().count("\n=== ")
    assert n_evals == 3  # the model as trained, then each variant
    again = sweep(path)
    assert again.returncode == 0 and n_train_calls(tmp_path / "sweep/rope/seed1") == 1
    assert eval_log.read_text().count("\n=== ") == n_evals  # nothing evaluated twice


@pytest.mark.parametrize("variant", [dict(factor=4), "yarn"])
def test_bad_eval_variant_is_a_clear_error(tmp_path, variant):
    make_dataset(tmp_path)
    runs = [dict(name="rope", config="configs/rope.py", eval_variants=[variant])]
    p = sweep(write_sweep(tmp_path, runs))
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert "eval_variants" in p.stderr


ROPE = "configs/rope.py"


@pytest.mark.parametrize(
    "run, message",
    [
        (dict(config=ROPE, overide={}), "runs[0]: unknown key 'overide' (did you mean 'overrides'"
         "?); valid: name, config, overrides, seeds, eval_variants"),
        (dict(config=ROPE, overrides=[1]), "runs[0]: overrides must be a dict like {}, got [1]"),
        (dict(config=ROPE, name=3), "runs[0]: name must be a string"),
        (dict(name="a"), "runs[0] must be dict(name=..., config=..., overrides={})"),
        (dict(config=ROPE, eval_variants=[dict(rope_scaling="yarn", factor=4)]),
         "runs[0] eval_variants: unknown key 'factor' (did you mean 'rope_factor'?)"),
        (dict(config=ROPE, eval_variants=[dict(rope_scaling="yarn", rope_factor="x4")]),
         "runs[0] eval_variants: rope_factor must be a float"),
        (dict(config=ROPE, eval_variants=[dict(rope_factor=4)]),
         "runs[0] eval_variants entries are dicts of"),
    ],
)  # fmt: skip
def test_bad_run_entries_name_the_key(tmp_path, run, message):
    path = tmp_path / "s.py"
    path.write_text(f"runs = [{run!r}]\n")
    with pytest.raises(UserError) as e:
        runs.load_sweep(str(path))
    assert f"{path}: {message}" in str(e.value)


def test_run_entries_are_filled_in_and_converted(tmp_path):
    path = tmp_path / "s.py"
    variant = dict(rope_scaling="yarn", rope_factor=4)
    path.write_text(f"runs = [dict(config={ROPE!r}, seeds=3, eval_variants=[{variant!r}])]\n")
    r = runs.load_sweep(str(path))["runs"][0]
    assert (r["name"], r["overrides"], r["seeds"]) == ("rope", {}, [3])
    assert r["eval_variants"] == [dict(rope_scaling="yarn", rope_factor=4.0, variant="yarn x4")]


def test_sigterm_to_the_sweep_saves_the_running_step_and_resumes(tmp_path):
    """A scheduler's SIGTERM reaches the sweep only: it is passed on, train.py saves, the sweep
    exits 130, and the same command later resumes the run from its checkpoint."""
    import signal
    import time

    make_dataset(tmp_path)
    runs = [dict(name="rope", config="configs/demo/rope.py")]
    path = write_sweep(tmp_path, runs, max_iters=100_000)
    p = subprocess.Popen(
        [sys.executable, "scripts/sweep.py", str(path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    log = tmp_path / "sweep/rope/seed1/train.log"
    deadline = time.time() + 60
    while time.time() < deadline and not (log.exists() and "iter 20 " in log.read_text()):
        time.sleep(0.2)
    p.send_signal(signal.SIGTERM)
    out, _ = p.communicate(timeout=120)
    assert p.returncode == 130, out
    ckpt = torch.load(tmp_path / "sweep/rope/seed1/ckpt.pt", weights_only=True)
    assert not ckpt["finished"] and ckpt["iter_num"] >= 20
    assert "interrupted" in out
    # the same command resumes it (here to a nearer max_iters, so that the test stays short)
    text = path.read_text().replace("'max_iters': 100000", f"'max_iters': {ckpt['iter_num'] + 4}")
    path.write_text(text)
    again = sweep(path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "--init_from=resume" in log.read_text()
    assert torch.load(tmp_path / "sweep/rope/seed1/ckpt.pt", weights_only=True)["finished"]


def test_shipped_sweeps_cover_every_encoding():
    """Every sweep file in configs/sweeps/ loads and names configs that load; every encoding in
    encodings/ is in the WikiText-103 sweep and in one of the CPU demos."""
    encodings = {}
    for path in sorted((ROOT / "configs" / "sweeps").glob("*.py")):
        configs = [r["config"] for r in runs.load_sweep(str(path))["runs"]]
        encodings[path.stem] = {load_config([str(ROOT / c)])["encoding"] for c in configs}
    everything = set(available_encodings())
    assert everything <= encodings["wikitext103"]
    assert everything <= encodings["demo"] | encodings["demo_field"] | encodings["demo_time"]


def test_tables_flag_rows_the_seeds_do_not_separate(tmp_path):
    """Fake records of 2 runs x 3 seeds, no training: mean ± std per cell, per length the rows whose
    means are within 2 std flagged, the gain and the retrieval horizon tables; one seed: said."""
    ppl = {16: dict(a=[10, 11, 12], b=[11.5, 12.5, 13.5]), 32: dict(a=[10, 10.1, 9.9], b=[20] * 3)}
    gain, horizon = (
        dict(a=[0.1, 0.2, 0.3], b=[0.5, 0.6, 0.7]),
        dict(a=[64, 128, None], b=[None] * 3),
    )
    sweep = runs.load_sweep(
        gpu_sweep(tmp_path, "context_args = {}\n", runs=("a", "b"), seeds=(1, 2, 3))
    )
    tasks = [runs.Task(sweep, r, k) for r in sweep["runs"] for k in (1, 2, 3)]
    for t in tasks:
        os.makedirs(t.dir)
        t.status, name, i = "ok", t.run["name"], t.seed - 1
        rec = dict(split="val", iter_num=4, out_dir=t.dir, encoding="x", block_size=16)
        lengths = [
            dict(rec, mode="nonoverlapping", length=n, ppl=v[name][i]) for n, v in ppl.items()
        ]
        probes = [dict(rec, mode="gain", length=32, gain=gain[name][i])]
        probes += [dict(rec, mode="copy", length=d, horizon=horizon[name][i]) for d in (64, 128)]
        Path(t.dir, "eval_lengths.json").write_text(json.dumps(lengths))
        Path(t.dir, "eval_context.json").write_text(json.dumps(probes))
    md = Path(runs.write_results(sweep, tasks)).read_text()
    assert (
        "| a | 11.00 ± 1.00 | 10.00 ± 0.10 | ok |" in md
        and "| b | 12.50 ± 1.00 | 20.00 ± 0.00 |" in md
    )
    flags = [line.split(": ")[1] for line in md.splitlines() if line.startswith("not separated")]
    assert flags == ["a vs b (16)", "none", "none"]  # perplexity, gain, horizon
    assert "| a | 0.200 ± 0.100 | ok |" in md and "largest distance D (64, 128)" in md
    assert "| a | 96 ± 45 (2 of 3) | ok |" in md and "| b | none | ok |" in md
    with open(tmp_path / "sweep/results.csv") as f:
        rows = {r["run"]: r for r in csv.DictReader(f)}
    assert (rows["a"]["gain@32"], rows["a"]["horizon"], rows["b"]["horizon"]) == ("0.2", "96", "")
    md = Path(runs.write_results(sweep, [t for t in tasks if t.seed == 1])).read_text()
    assert md.count("one seed: no error bars") == 3 and "not separated" not in md
    assert "| a | 10.00 | 10.00 | ok |" in md and "| a | 64 | ok |" in md


def test_probes_added_to_a_finished_sweep_run_alone(tmp_path, monkeypatch, capsys):
    """context_args added to a sweep that is done: --status and --dry_run show eval_context.py to
    do, the sweep then runs it alone (no training, no eval_lengths.py), and next time nothing."""
    sw = load_script("sweep")
    path = gpu_sweep(tmp_path, runs=("a", "b"))
    assert run_main(sw, monkeypatch, [path], FakeRuns(seconds=0.05)) == 0
    path.write_text(path.read_text() + "context_args = dict(lengths=[32], distances=[4, 8])\n")
    capsys.readouterr()
    for flag in ("--status", "--dry_run"):
        assert run_main(sw, monkeypatch, [path, flag], FakeRuns()) == 0
    out = capsys.readouterr().out
    assert out.count("to evaluate: eval_context.py") == 4 and "eval_lengths.py" not in out
    assert out.count("eval_context.py --out_dir=") == 4 and out.count("trained; evaluate") == 4
    fake = FakeRuns(seconds=0.05)
    assert run_main(sw, monkeypatch, [path], fake) == 0
    assert [Path(e["cmd"][1]).name for e in fake.events] == ["eval_context.py"] * 4
    again = FakeRuns()
    assert run_main(sw, monkeypatch, [path], again) == 0 and again.events == []
    md = (tmp_path / "sweep/results.md").read_text()
    assert "| a | 0.100 ± 0.000 | ok |" in md and "| a | 8 ± 0 | ok |" in md
    # records of another probe option (or without a length) are not done for this one
    run_dir = tmp_path / "sweep/a/seed1"
    recs = json.loads((run_dir / "eval_context.json").read_text())
    (run_dir / "eval_context.json").write_text(json.dumps([dict(r, tau=0.5) for r in recs]))
    done = lambda **a: runs.eval_done(run_dir, "eval_context", {"lengths": [32], **a}, 4)
    assert done() and done(tau=0.5) and not done(tau=1.0) and not done(lengths=[32, 64])


@pytest.mark.parametrize(
    "context_args, message",
    [
        ("dict(lengths=[32, 0])", "a: context_args: --lengths must be positive integers"),
        ("dict(mode='sliding')", "a: context_args: unknown key 'mode'"),
        ("[32]", "context_args must be a dict of scripts/eval_context.py options"),
    ],
)
def test_bad_context_args_are_one_line_errors(tmp_path, monkeypatch, context_args, message):
    sw = load_script("sweep")
    path = gpu_sweep(tmp_path, f"context_args = {context_args}\n", runs=("a",), seeds=(1,))
    fake = FakeRuns()
    with pytest.raises(UserError) as e:
        run_main(sw, monkeypatch, [path, "--dry_run"], fake)
    assert message in str(e.value) and "\n" not in str(e.value) and fake.events == []


# -----------------------------------------------------------------------------
# gpus: one node, many GPUs. No GPU here: the device list is faked and subprocess.Popen is a
# recorder that "trains" and "evaluates" by writing what train.py and eval_lengths.py would.


class FakeRuns:
    """Stands in for subprocess.Popen in the sweep: records each subprocess's command, its
    CUDA_VISIBLE_DEVICES and when it started and ended; writes a finished checkpoint (train) or
    the requested eval records (eval)."""

    def __init__(self, seconds=0.3, slow=(), slow_seconds=0.8):
        self.seconds, self.slow, self.slow_seconds = seconds, slow, slow_seconds
        self.events, self.lock = [], threading.Lock()

    def __call__(self, cmd, env, **kwargs):
        with self.lock:
            event = dict(cmd=cmd, gpus=env.get("CUDA_VISIBLE_DEVICES"), start=time.monotonic())
            self.events.append(event)
        fake = self

        class Proc:
            def wait(self):
                out = Path(fake.run_dir(event)[len("--out_dir=") :])
                is_train = any(a.endswith("train.py") for a in cmd)
                slow = is_train and out.parent.name in fake.slow
                time.sleep(fake.slow_seconds if slow else fake.seconds)
                if is_train:
                    torch.save({"finished": True, "iter_num": 4}, out / "ckpt.pt")
                else:  # eval_lengths.py: a record per length; eval_context.py: and per distance
                    script = Path(cmd[1]).stem
                    records = [
                        dict(length=n, mode=mode, split="val", iter_num=4, ppl=2.0, gain=0.1,
                             horizon=8, out_dir=str(out), block_size=16, encoding="alibi")
                        for mode, n in fake.wanted(cmd)
                    ]  # fmt: skip
                    (out / f"{script}.json").write_text(json.dumps(records))
                event["end"] = time.monotonic()  # before the sweep frees the GPU
                return 0

            def send_signal(self, sig):
                pass

            kill = send_signal

        return Proc()

    def wanted(self, cmd):
        """(mode, length) of each record cmd would write."""
        ns = lambda k: [
            int(n) for a in cmd if a.startswith(f"--{k}=") for n in a[3 + len(k) :].split(",")
        ]
        if cmd[1].endswith("eval_context.py"):
            return [("gain", n) for n in ns("lengths")] + [("copy", d) for d in ns("distances")]
        return [("nonoverlapping", n) for n in ns("lengths")]

    def run_dir(self, e):
        return next(a for a in e["cmd"] if a.startswith("--out_dir="))

    def trains(self):
        return [e for e in self.events if any(a.endswith("train.py") for a in e["cmd"])]

    def evals(self):
        return [e for e in self.events if not any(a.endswith("train.py") for a in e["cmd"])]

    def max_running(self):
        moments = [(e["start"], 1) for e in self.events] + [(e["end"], -1) for e in self.events]
        n = peak = 0
        for _, d in sorted(moments):  # an end before a start at the same moment
            n += d
            peak = max(peak, n)
        return peak

    def check_never_shared(self):
        """No two subprocesses that ran at the same time had a GPU in common."""
        for i, a in enumerate(self.events):
            for b in self.events[i + 1 :]:
                if a["start"] < b["end"] and b["start"] < a["end"]:
                    shared = set(a["gpus"].split(",")) & set(b["gpus"].split(","))
                    assert not shared, (a, b)


def gpu_sweep(root, extra="", runs=("a", "b", "c", "d", "e"), seeds=(1, 2)):
    runs = [dict(name=n, config="configs/demo/alibi.py") for n in runs]
    path = root / "sweep_gpus.py"
    path.write_text(
        f"out_dir = {str(root / 'sweep')!r}\nruns = {runs!r}\nseeds = {list(seeds)!r}\n"
        "eval_args = dict(lengths=[16, 32])\n" + extra
    )
    return path


def run_main(sw, monkeypatch, argv, fake, devices=None):
    monkeypatch.setattr(subprocess, "Popen", fake)
    monkeypatch.setattr(sw.signal, "signal", lambda *a: None)  # main's SIGTERM handler
    if devices is not None:
        monkeypatch.setattr(runs, "cuda_devices", lambda: devices)
    return sw.main([str(a) for a in argv])


def test_gpus_one_run_per_gpu_never_shared(tmp_path, monkeypatch, capsys):
    """gpus='all' on 4 (faked) GPUs: 10 runs, 4 at a time, each train and eval subprocess sees
    one GPU, its run's, and no two running subprocesses ever share one, with one run 3x slower
    than the others holding its GPU the whole time."""
    sw = load_script("sweep")
    fake = FakeRuns(slow=("b",))
    path = gpu_sweep(tmp_path, "gpus = 'all'\n")
    assert run_main(sw, monkeypatch, [path], fake, devices=["0", "1", "2", "3"]) == 0
    trains, evals = fake.trains(), fake.evals()
    assert len(trains) == 10 and len(evals) == 10
    assert {e["gpus"] for e in trains} == {"0", "1", "2", "3"}
    gpu_of = {fake.run_dir(e): e["gpus"] for e in trains}
    assert all(e["gpus"] == gpu_of[fake.run_dir(e)] for e in evals)  # eval where it trained
    assert all(e["cmd"][1].endswith("train.py") for e in trains)  # one GPU: no torchrun
    fake.check_never_shared()
    assert fake.max_running() == 4  # jobs = the number of GPUs
    rows = json.loads((tmp_path / "sweep/status.json").read_text())["runs"]
    assert all(r["status"] == "ok" for r in rows) and {r["gpus"] for r in rows} == set(
        gpu_of.values()
    )
    out = capsys.readouterr().out
    assert "(4 at a time)" in out and "CUDA_VISIBLE_DEVICES=0 | 1 | 2 | 3" in out
    log = (tmp_path / "sweep/a/seed1/train.log").read_text()
    a1 = gpu_of[f"--out_dir={tmp_path / 'sweep/a/seed1'}"]
    assert f"$ CUDA_VISIBLE_DEVICES={a1} " in log  # the log says where it ran
    # the same command again: everything is done, nothing is launched
    again = FakeRuns()
    assert run_main(sw, monkeypatch, [path], again) == 0 and again.events == []


def test_gpus_per_run_two_trains_under_torchrun(tmp_path, monkeypatch):
    """--gpus_per_run=2 on 4 GPUs: two groups, train under torchrun with 2 processes seeing their
    2 GPUs, eval on the group's first. Indices are the sweep's own: under
    CUDA_VISIBLE_DEVICES=4,5,6,7 device 0 is GPU 4 (the real cuda_devices, device count faked)."""
    sw = load_script("sweep")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6,7")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    fake, argv = FakeRuns(seconds=0.2), ["--gpus=0,1,2,3", "--gpus_per_run=2"]
    path = gpu_sweep(tmp_path, "jobs = 8\n", runs=("a", "b", "c"))  # jobs capped by the groups
    with pytest.raises(UserError) as e:  # train.py's check under torchrun, made up front
        run_main(sw, monkeypatch, [path, *argv], fake)
    ddp = "gradient_accumulation_steps (1) must be a multiple of the 2 processes"
    assert str(e.value).count(ddp) == 3 and fake.events == []
    path.write_text(path.read_text() + "common = dict(gradient_accumulation_steps=2)\n")
    assert run_main(sw, monkeypatch, [path, *argv], fake) == 0
    trains, evals = fake.trains(), fake.evals()
    assert len(trains) == 6 and {e["gpus"] for e in trains} == {"4,5", "6,7"}
    for e in trains:
        assert e["cmd"][1:5] == [
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
        ]
    gpu_of = {fake.run_dir(e): e["gpus"] for e in trains}
    assert all(e["gpus"] == gpu_of[fake.run_dir(e)].split(",")[0] for e in evals)
    assert all(e["cmd"][1].endswith("eval_lengths.py") for e in evals)
    fake.check_never_shared()
    assert fake.max_running() == 2


def test_without_gpus_nothing_changes(tmp_path, monkeypatch, capsys):
    """No gpus: the children inherit our CUDA_VISIBLE_DEVICES, `jobs` runs at a time, plain
    python train.py, status.json as before."""
    sw = load_script("sweep")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    fake = FakeRuns(seconds=0.2)
    path = gpu_sweep(tmp_path, "jobs = 2\n", runs=("a", "b"))
    assert run_main(sw, monkeypatch, [path], fake) == 0
    assert len(fake.events) == 8 and {e["gpus"] for e in fake.events} == {"3"}
    assert all(e["cmd"][1].endswith(("train.py", "eval_lengths.py")) for e in fake.events)
    assert fake.max_running() == 2
    rows = json.loads((tmp_path / "sweep/status.json").read_text())["runs"]
    assert set(rows[0]) == {"run", "seed", "dir", "status", "step", "error", "seconds"}
    out = capsys.readouterr().out
    assert "GPUs" not in out and "CUDA_VISIBLE_DEVICES" not in out
    assert "=== " in (tmp_path / "sweep/a/seed1/train.log").read_text()
    assert "CUDA_VISIBLE_DEVICES" not in (tmp_path / "sweep/a/seed1/train.log").read_text()


def test_dry_run_shows_the_gpu_assignment(tmp_path, monkeypatch, capsys):
    sw = load_script("sweep")
    path = gpu_sweep(
        tmp_path,
        "gpus = [0, 1, 2, 3]\ngpus_per_run = 2\ncommon = dict(gradient_accumulation_steps=2)\n",
        runs=("a", "b"),
        seeds=(1,),
    )
    path.write_text(
        path.read_text() + "runs.append(dict(name='c', config='configs/demo/rope.py'))\n"
    )
    fake = FakeRuns()
    assert run_main(sw, monkeypatch, [path, "--dry_run"], fake, devices=list("0123")) == 0
    out = capsys.readouterr().out
    assert "GPUs: 2 group(s) of 2 (CUDA_VISIBLE_DEVICES=0,1 | 2,3)" in out
    assert "a/seed1: train, then evaluate on CUDA_VISIBLE_DEVICES=0,1" in out
    assert "b/seed1: train, then evaluate on CUDA_VISIBLE_DEVICES=2,3" in out
    assert "c/seed1: train, then evaluate on the first GPUs to free" in out
    assert out.count("-m torch.distributed.run --standalone --nproc_per_node=2") == 3
    assert fake.events == [] and not (tmp_path / "sweep").exists()


@pytest.mark.parametrize(
    "extra, argv, devices, message",
    [
        ("gpus = 'all'\n", [], [], "gpus='all' but no CUDA device is visible"),
        ("gpus = [0, 0]\n", [], ["0", "1"], "gpus lists device 0 more than once"),
        ("gpus = [0, 5]\n", [], ["0", "1"], "no CUDA device 5 (2 visible: 0-1)"),
        ("gpus = [0, 1]\ngpus_per_run = 3\n", [], ["0", "1"], "gpus_per_run=3 must be"),
        ("gpus = 'all'\n", ["--gpus_per_run=2"], ["0", "1", "2"], "divide the 3 GPU(s)"),
        ("gpus = 'some'\n", [], ["0"], "gpus must be 'all' or a list of device indices"),
        ("gpus = [0.5]\n", [], ["0"], "gpus must be 'all' or a list of device indices"),
        ("gpus = 2\n", [], ["0"], "a list of device indices like [0, 1], got 2"),
        ("", ["--gpus=a,b"], ["0"], "--gpus must be 'all' or device indices like 0,1,2,3"),
        ("", ["--gpus_per_run=2"], ["0", "1"], "gpus_per_run=2 needs gpus"),
        ("common = dict(device='cuda:1')\n", ["--gpus=all"], ["0", "1"], "sets device='cuda:1'"),
    ],
)
def test_bad_gpus_are_one_line_errors(tmp_path, monkeypatch, extra, argv, devices, message):
    sw = load_script("sweep")
    path = gpu_sweep(tmp_path, extra)
    with pytest.raises(UserError) as e:
        run_main(sw, monkeypatch, [path, *argv], FakeRuns(), devices=devices)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_gpus_all_without_cuda_from_the_command_line(tmp_path):
    """The real device query (no GPU visible here): `error: ...`, one line, exit code 2."""
    path = gpu_sweep(tmp_path)
    p = subprocess.run(
        [sys.executable, "scripts/sweep.py", str(path), "--gpus=all"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
    )
    assert p.returncode == 2 and p.stderr == "error: gpus='all' but no CUDA device is visible\n"
