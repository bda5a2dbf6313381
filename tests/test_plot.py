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
    assert "context.png" not in names  # no eval_context.json: no context figure
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


def make_context_sweep(root, probe_seeds=3):
    """make_sweep's alibi and sinusoidal runs with 3 seeds, each with an eval_context.json."""
    sweep = make_sweep(root)
    horizons = {"alibi": [256] * 3, "sinusoidal": [None, 32, 64]}
    for name, hs in horizons.items():
        for seed, h in enumerate(hs, 1):
            d = sweep / name / f"seed{seed}"
            d.mkdir(exist_ok=True)
            if seed == 3:
                (d / "eval_lengths.json").write_text(
                    (d.parent / "seed1/eval_lengths.json").read_text()
                )
            base = dict(record(name, 64, 8.0), split="val")
            gains = [
                dict(base, mode="gain", length=n, gain=0.1 * seed * (n > 64))
                for n in (64, 128, 512)
            ]
            copies = [
                dict(base, mode="copy", length=D, distance=D, ratio=0.3, horizon=h,
                     ratio_by_seed=[0.2 + 0.1 * k + 0.01 * seed for k in range(probe_seeds)])
                for D in (16, 64, 256)
            ]  # fmt: skip
            copies.append(dict(base, mode="copy", length=1024, skipped=True, horizon=h))
            (d / "eval_context.json").write_text(json.dumps(gains + copies))
    return sweep


def test_context_figure(tmp_path, monkeypatch):
    figs, save = {}, plot.save
    monkeypatch.setattr(
        plot, "save", lambda fig, d, name: figs.setdefault(name, fig) and save(fig, d, name)
    )
    sweep = make_context_sweep(tmp_path)
    names = {Path(p).name for p in plot.main([str(sweep)])}
    assert {"context.png", "context.svg"} <= names and (sweep / "context.png").stat().st_size > 5000
    a, b, c = figs["context"].axes
    # the runs' colours are those of ppl_vs_length; (a) shows the runs with probes only
    colour = lambda ax: {
        ln.get_label().split()[0]: ln.get_color() for ln in ax.lines if ln.get_label()[0] != "_"
    }
    assert colour(a) == {
        k: v for k, v in colour(figs["ppl_vs_length"].axes[0]).items() if k != "learned"
    }
    # (b): mean gain over the 3 seeds, a +-1 sample std band; (c): over seeds x probe seeds
    gain = [ln for ln in b.lines if ln.get_color() == colour(a)["alibi"]][0]
    assert list(gain.get_xdata()) == [64, 128, 512] and gain.get_ydata()[1] == pytest.approx(0.2)
    assert len(b.collections) == 2 and len(c.collections) == 2
    band = b.collections[0].get_paths()[0].vertices[:, 1]
    assert band.max() == pytest.approx(0.2 + 0.1)  # std(0.1, 0.2, 0.3, ddof=1) = 0.1
    labels = [t.get_text() for t in c.get_legend().get_texts()]
    assert labels == ["alibi: horizon 256", "sinusoidal: horizon none to 64"]


def test_context_without_seeds_has_no_bands(tmp_path, monkeypatch):
    figs = {}
    monkeypatch.setattr(plot, "save", lambda fig, d, name: figs.setdefault(name, fig) and [])
    sweep = make_context_sweep(tmp_path, probe_seeds=1)
    plot.main([str(sweep / "alibi" / "seed1"), str(sweep / "sinusoidal" / "seed3")])
    _, b, c = figs["context"].axes
    assert not b.collections and not c.collections  # one seed, one probe seed: no band
    assert [t.get_text() for t in c.get_legend().get_texts()][1] == "sinusoidal: horizon 64"


def test_runs_group_seeds_and_order_by_encoding(tmp_path):
    sweep = make_sweep(tmp_path)
    runs = plot.load_runs(plot.find_files([str(sweep)], "eval_lengths.json"))
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
