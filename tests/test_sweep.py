"""scripts/sweep.py on tiny runs: skip, resume, failure isolation, tables, exit status."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import load_script, write_token_dataset

from configurator import load_config
from model import available_encodings

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
        dict(name="bad_heads", config="configs/demo/rope.py", overrides=dict(n_head=3)),
        dict(name="no_config", config=str(tmp_path / "missing.py")),
    ]
    path = write_sweep(tmp_path, runs)
    p = sweep(path)
    assert p.returncode == 2, p.stdout + p.stderr  # two failed runs
    st = statuses(tmp_path)
    assert st[("alibi", 1)]["status"] == "ok"
    assert st[("bad_heads", 1)]["status"] == "failed" and "n_head" in st[("bad_heads", 1)]["error"]
    assert st[("no_config", 1)]["status"] == "failed" and "missing" in st[("no_config", 1)]["error"]
    assert p.stdout.count("FAILED") == 2
    ok_dir = tmp_path / "sweep" / "alibi" / "seed1"
    records = json.loads((ok_dir / "eval_lengths.json").read_text())
    assert [r["length"] for r in records] == [16, 32] and all(r["ppl"] > 1 for r in records)
    # the tables: a row per run, the failures say why
    with open(tmp_path / "sweep" / "results.csv") as f:
        rows = {r["run"]: r for r in csv.DictReader(f)}
    assert set(rows) == {"alibi", "bad_heads", "no_config"}
    assert float(rows["alibi"]["ppl@32"]) == pytest.approx(records[1]["ppl"], rel=1e-5)
    assert rows["bad_heads"]["ppl@16"] == "" and "failed" in rows["bad_heads"]["status"]
    md = (tmp_path / "sweep" / "results.md").read_text()
    assert "| alibi |" in md and "perplexity" in md and "nonoverlapping" in md
    # second time: the finished run is neither retrained nor re-evaluated
    mtime = (ok_dir / "eval_lengths.json").stat().st_mtime
    p = sweep(path, "--only=alibi")
    assert p.returncode == 0, p.stdout + p.stderr
    assert n_train_calls(ok_dir) == 1 and (ok_dir / "eval_lengths.json").stat().st_mtime == mtime
    assert statuses(tmp_path)[("alibi", 1)]["status"] == "done"
    with open(tmp_path / "sweep" / "results.csv") as f:  # --only keeps the other runs' rows
        assert {r["run"] for r in csv.DictReader(f)} == {"alibi", "bad_heads", "no_config"}


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
    runs = [dict(name="rope", config="configs/rope.py", eval_variants=variants)]
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


def test_bad_eval_variant_is_a_clear_error(tmp_path):
    make_dataset(tmp_path)
    runs = [dict(name="rope", config="configs/rope.py", eval_variants=[dict(factor=4)])]
    p = sweep(write_sweep(tmp_path, runs))
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert "eval_variants" in p.stderr


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
    encodings/ is in the WikiText-103 sweep and in one of the two CPU demos."""
    sweep = load_script("sweep")
    encodings = {}
    for path in sorted((ROOT / "configs" / "sweeps").glob("*.py")):
        runs = sweep.load_sweep(str(path))["runs"]
        encodings[path.stem] = {load_config([str(ROOT / r["config"])])["encoding"] for r in runs}
    everything = set(available_encodings())
    assert everything <= encodings["wikitext103"]
    assert everything <= encodings["demo"] | encodings["demo_field"]
