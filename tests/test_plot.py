"""scripts/plot.py: figures from a sweep directory of eval_lengths.json files and logs."""

import json
from pathlib import Path

import pytest
from helpers import load_script

from configurator import UserError

plot = load_script("plot")


def record(encoding, length, ppl, skipped=False):
    r = dict(
        length=length,
        mode="nonoverlapping",
        stride=length,
        split="val",
        encoding=encoding,
        block_size=64,
        dataset="demo",
        tokenizer="bytes",
        n_params=115000,
        n_layer=2,
        n_head=4,
        n_embd=64,
        iter_num=800,
        max_tokens=4096,
    )
    if skipped:
        return dict(r, skipped=True, reason="no positions past 64")
    edges = list(range(length + 1)) if length <= 256 else [0, 64, 128, length]
    n = len(edges) - 1
    loss = float(__import__("math").log(ppl))
    return dict(
        r,
        skipped=False,
        loss=loss,
        ppl=ppl,
        tokens=4096,
        per_position_edges=edges,
        per_position_loss=[loss] * n,
        per_position_tokens=[4096 // length] * n,
    )


def make_sweep(root):
    runs = {
        "alibi": [(64, 8.0), (128, 7.9), (512, 7.8)],
        "sinusoidal": [(64, 9.0), (128, 30.0), (512, 400.0)],
    }
    for name, points in runs.items():
        for seed, jitter in ((1, 1.0), (2, 1.05)):
            d = root / "sweep" / name / f"seed{seed}"
            d.mkdir(parents=True)
            recs = [record(name, n, p * jitter) for n, p in points]
            (d / "eval_lengths.json").write_text(json.dumps(recs))
            log = [
                dict(iter=i, train_loss=3 - i / 400, val_loss=3.1 - i / 400) for i in (0, 400, 800)
            ]
            (d / "log.jsonl").write_text("\n".join(json.dumps(x) for x in log) + "\n")
    d = root / "sweep" / "learned" / "seed1"
    d.mkdir(parents=True)
    recs = [record("learned", 64, 8.5), record("learned", 128, 0, skipped=True)]
    (d / "eval_lengths.json").write_text(json.dumps(recs))
    return root / "sweep"


def test_writes_every_figure(tmp_path):
    sweep = make_sweep(tmp_path)
    written = plot.main([str(sweep)])
    names = {Path(p).name for p in written}
    for stem in ("ppl_vs_length", "per_position_loss", "training_curves"):
        for ext in ("png", "svg"):
            assert f"{stem}.{ext}" in names
            f = sweep / f"{stem}.{ext}"
            assert f.stat().st_size > 5000
    assert (sweep / "ppl_vs_length.png").read_bytes()[:4] == b"\x89PNG"
    svg = (sweep / "ppl_vs_length.svg").read_text()
    # title names dataset, size, training length and mode; the seeds and the skip are in the legend
    for text in (
        "demo val",
        "115k params",
        "trained at L=64",
        "nonoverlapping",
        "2 seeds",
        "none past 64",
    ):
        assert text in svg


def test_runs_group_seeds_and_order_by_encoding(tmp_path):
    sweep = make_sweep(tmp_path)
    runs = plot.load_runs(plot.find_eval_files([str(sweep)]))
    assert list(runs) == ["alibi", "sinusoidal", "learned"]
    assert len(runs["alibi"]) == 2


def test_single_files_and_out_dir(tmp_path):
    sweep = make_sweep(tmp_path)
    out = tmp_path / "figs"
    f = sweep / "alibi" / "seed1" / "eval_lengths.json"
    plot.main([str(f), f"--out={out}", "--metric=loss"])
    assert (out / "ppl_vs_length.png").exists()


def test_nothing_to_plot_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no eval_lengths.json"):
        plot.main([str(tmp_path)])
    with pytest.raises(UserError, match="does not exist"):
        plot.main([str(tmp_path / "nope")])
