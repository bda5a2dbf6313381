"""scripts/analyze.py: every statistic equals a direct float64 computation written out here; an
ALiBi head with no q/k is purely positional with ALiBi's closed forms; a head built to follow
content scores near 0; analysis.json for every encoding, figures for two; one-line errors."""

import copy
import dataclasses
import itertools
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import load_script, write_token_dataset

from configurator import UserError
from encoding import available_encodings
from model import GPT, GPTConfig

ROOT = Path(__file__).resolve().parent.parent
an = load_script("analyze")
VOCAB = 32
pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: faster, and deterministic
FIGURES = ("analysis_heads", "analysis_maps", "analysis_kernel")


def make_dataset(root, n_val=1200):
    rng = np.random.default_rng(0)
    sizes = (("train", 100), ("val", n_val), ("test", 100))
    splits = {split: rng.integers(0, VOCAB, n).astype(np.uint16) for split, n in sizes}
    return write_token_dataset(root, splits, VOCAB)


def tiny_model(encoding, n_layer=2, n_head=2, n_embd=16, block_size=8, **kw):
    torch.manual_seed(0)
    cfg = GPTConfig(
        vocab_size=VOCAB, n_layer=n_layer, n_head=n_head, n_embd=n_embd, block_size=block_size,
        encoding=encoding, attn_block_size=8, **kw,
    )  # fmt: skip
    return GPT(cfg).eval()


def save_run(root, model, name, finished=True, data_root=None):
    out = root / name
    out.mkdir(parents=True)
    config = {"dataset": "tiny", "data_dir": str((data_root or root) / "data"), "seed": 1}
    ckpt = {
        "model": model.state_dict(),
        "model_args": dataclasses.asdict(model.config),
        "config": config,
        "iter_num": 3,
        "finished": finished,
    }
    torch.save(ckpt, out / "ckpt.pt")
    return out


def val_windows(root, T, n):
    """The first n nonoverlapping windows of T tokens of the val split, (n, T)."""
    data = np.fromfile(root / "data" / "tiny" / "val.bin", dtype=np.uint16).astype(np.int64)
    return torch.from_numpy(data[: n * T].reshape(n, T))


def float64_clock(clock, x):
    """A learned clock on token indices, in float64: t_u = sum_{0 < u' <= u} softplus(w . x_u' + b)
    per head, (N, H, T)."""
    steps = torch.nn.functional.softplus(x @ clock.weight.T + clock.bias).transpose(1, 2)
    return torch.cat((torch.zeros_like(steps[..., :1]), steps[..., 1:]), -1).cumsum(-1)


def direct_attention(model, idx, on_clock=True):
    """Per layer: (logits, content) float64 (N, H, T, T) and the attention probabilities, the
    obvious way: the whole residual stream in float64, pe.scores on the full square at the
    positions attention gets (each layer's learned clock, if any, computed here; on_clock=False:
    the token index all the same), the causal mask and softmax."""
    m = copy.deepcopy(model).double()
    N, T = idx.shape
    pos = torch.arange(T)
    x = m.transformer.wte(idx)
    if m.pe[0].has_embed:
        x = x + m.pe[0].embed(pos)
    shared = float64_clock(m.clock, x) if m.clock is not None else pos
    out = []
    for i, block in enumerate(m.transformer.h):
        pe = m.layer_encoding(i)
        C, H = x.size(-1), block.attn.n_head
        h = block.ln_1(x)
        q, k, _ = block.attn.c_attn(h).split(C, dim=2)
        q, k = (t.view(N, T, H, C // H).transpose(1, 2) for t in (q, k))
        clock = shared if block.attn.clock is None else float64_clock(block.attn.clock, h)
        block.attn.clock = None  # the block below runs on the clock computed here
        logits = pe.scores(q, k, clock if on_clock else pos, clock if on_clock else pos)
        content = q @ k.transpose(-2, -1) / math.sqrt(C // H)
        causal = torch.ones(T, T, dtype=torch.bool).tril()
        att = torch.softmax(logits.masked_fill(~causal, float("-inf")), dim=-1)
        out.append((logits.detach().numpy(), content.detach().numpy(), att.detach().numpy()))
        x = block(x, clock, pe)
    return out


def direct_statistics(att, L):
    """The statistics of one layer's attention (N, H, T, T), in loops over windows, heads and
    queries 1 .. T-1, as the module docstring defines them."""
    N, H, T, _ = att.shape
    names = ("mean_distance", "entropy", "entropy_ratio", "beyond_training", "sink_share")
    stats = {name: np.zeros(H) for name in names + ("positional_score",)}
    for h in range(H):
        for t in range(1, T):
            for w in range(N):
                a = att[w, h, t, : t + 1]
                dist = t - np.arange(t + 1)
                ent = -sum(p * math.log(p) for p in a if p > 0)
                stats["mean_distance"][h] += (a * dist).sum()
                stats["entropy"][h] += ent
                stats["entropy_ratio"][h] += ent / math.log(t + 1)
                stats["beyond_training"][h] += a[dist >= L].sum()
                stats["sink_share"][h] += a[0]
            for w1, w2 in itertools.combinations(range(N), 2):
                tv = 0.5 * np.abs(att[w1, h, t, : t + 1] - att[w2, h, t, : t + 1]).sum()
                stats["positional_score"][h] += 1 - tv
    n_pairs = N * (N - 1) // 2
    return {
        k: v / ((T - 1) * (n_pairs if k == "positional_score" else N)) for k, v in stats.items()
    }


def direct_kernel(logits, content, bias_only):
    """Mean over windows and pairs (t, t - delta) of the positional logit, per head and delta."""
    N, H, T, _ = logits.shape
    part = logits - content if bias_only else logits
    out = np.zeros((H, T))
    for delta in range(T):
        vals = [part[w, :, t, t - delta] for w in range(N) for t in range(delta, T)]
        out[:, delta] = np.mean(vals, axis=0)
    return out


def read(out_dir):
    return json.loads((Path(out_dir) / "analysis.json").read_text())


def draw_run_figures(monkeypatch, encodings=()):
    """A run's figures only for these encodings: drawing one costs seconds, and what it draws is
    analysis.json, which the tests check (test_every_encoding_writes_analysis_and_figures checks
    the files)."""
    for name in ("plot_heads", "plot_maps", "plot_kernel"):
        plot = getattr(an, name)
        only = lambda r, *args, plot=plot: r["encoding"] in encodings and plot(r, *args)
        monkeypatch.setattr(an, name, only)


@pytest.mark.parametrize(
    "encoding,budget",
    [("alibi", 0.5), ("rope", 0.5), ("shaw", 1e-9), ("sinusoidal", 1e-9)],
)
def test_statistics_equal_direct_computation(tmp_path, monkeypatch, encoding, budget):
    """Every statistic and the kernel, per layer and head, at the training length and 3x past it;
    budget 1e-9 runs one query per block (the blockwise accumulation), 0.5 one block."""
    draw_run_figures(monkeypatch)
    make_dataset(tmp_path)
    model = tiny_model(encoding)
    out = save_run(tmp_path, model, encoding)
    an.main([f"--out_dir={out}", "--lengths=8,24", "--windows=3", f"--memory_budget_gb={budget}"])
    res = read(out)
    assert [r["length"] for r in res["lengths"]] == [8, 24]
    bias_only = encoding in ("alibi", "shaw")
    assert res["kernel_definition"] == ("bias" if bias_only else "logit")
    for rec in res["lengths"]:
        T = rec["length"]
        direct = direct_attention(model, val_windows(tmp_path, T, 3))
        for layer, (logits, content, att) in enumerate(direct):
            want = direct_statistics(att, L=8)
            for name in an.STATISTICS:
                np.testing.assert_allclose(rec[name][layer], want[name], atol=2e-5, err_msg=name)
            if T == 24:  # the kernel is kept at the longest length; exact per distance here
                assert res["kernel"]["length"] == 24
                assert res["kernel"]["distance_edges"] == list(range(25))
                got = np.array(res["kernel"]["values"][layer])
                np.testing.assert_allclose(
                    got, direct_kernel(logits, content, bias_only), atol=2e-5
                )
    assert all(v == 0 for row in res["lengths"][0]["beyond_training"] for v in row)  # 1x


@pytest.mark.parametrize("shared", [False, True])
def test_learned_clock_positions_reach_the_scores(shared):
    """time="learned" with perturbed clocks (rates far from 1): every statistic and the kernel
    equal the direct computation on each layer's clock (or the shared one), and the statistics
    on token indices, what a forward rebuilt on indices would measure, differ."""
    model = tiny_model("alibi", time="learned", time_shared=shared)
    clocks = [model.clock] if shared else [b.attn.clock for b in model.transformer.h]
    with torch.no_grad():
        for c in clocks:
            c.weight.normal_(0, 0.3)
            c.bias.normal_(0, 1)
    idx = torch.randint(0, VOCAB, (3, 24), generator=torch.Generator().manual_seed(2))
    layers = an.analyze_length(model, idx, 8, 0.5)
    on_clock = direct_attention(model, idx)
    on_index = direct_attention(model, idx, on_clock=False)
    assert len(layers) == len(on_clock) == 2
    for got, (logits, content, att), (_, _, att_index) in zip(layers, on_clock, on_index):
        want = direct_statistics(att, L=8)
        for name in an.STATISTICS:
            np.testing.assert_allclose(got[name], want[name], atol=2e-5, err_msg=name)
        kernel = an.bucket_kernel(got["kernel_sum"], 3, list(range(25)))  # per distance
        np.testing.assert_allclose(kernel, direct_kernel(logits, content, True), atol=2e-5)
        on_indices = direct_statistics(att_index, L=8)["mean_distance"]
        assert np.abs(got["mean_distance"].numpy() - on_indices).max() > 0.1


def test_attention_map_is_averaged_over_squares(monkeypatch):
    """The map of the first window, averaged over f x f squares (here T = 24, at most 5 cells:
    f = 5, the last square 4 tokens wide)."""
    model = tiny_model("t5", n_layer=1)
    idx = torch.randint(0, VOCAB, (2, 24), generator=torch.Generator().manual_seed(1))
    monkeypatch.setattr(an, "MAP_SIZE", 5)
    got = an.analyze_length(model, idx, 8, 0.5)[0]["map"].numpy()
    att = direct_attention(model, idx)[0][2][0]  # (H, T, T), first window
    want = np.zeros((2, 5, 5))
    for h, i, j in itertools.product(range(2), range(5), range(5)):
        rows, cols = slice(5 * i, 5 * i + 5), slice(5 * j, 5 * j + 5)
        want[h, i, j] = att[h, rows, cols].sum(-1).mean()
    np.testing.assert_allclose(got, want, atol=1e-6)


def alibi_closed_forms(m, T, L):
    """ALiBi with q = k = 0: a_t,t-j = r^j / Z_t with r = e^{-m}, Z_t = (1 - r^{t+1}) / (1 - r);
    the geometric sums give the mean distance, the sink share and the mass at j >= L, averaged
    over queries t = 1 .. T-1."""
    r = math.exp(-m)
    dist = sink = beyond = 0.0
    for t in range(1, T):
        z = (1 - r ** (t + 1)) / (1 - r)
        dist += r * (1 - (t + 1) * r**t + t * r ** (t + 1)) / (1 - r) ** 2 / z
        sink += r**t / z
        beyond += (r**L - r ** (t + 1)) / (1 - r) / z if t >= L else 0.0
    return dist / (T - 1), sink / (T - 1), beyond / (T - 1)


def test_alibi_without_queries_and_keys_is_purely_positional(tmp_path, monkeypatch):
    """Zeroed q/k projections: logits are ALiBi's bias alone, the same for every text. Positional
    score 1; mean distance, sink share and mass beyond L = 16 equal the closed forms; the kernel
    is ALiBi's line -m_h (t - s)."""
    draw_run_figures(monkeypatch)
    make_dataset(tmp_path)
    model = tiny_model("alibi", n_layer=1, n_head=4, block_size=16)
    C = model.config.n_embd
    with torch.no_grad():
        model.transformer.h[0].attn.c_attn.weight[: 2 * C] = 0
        model.transformer.h[0].attn.c_attn.bias[: 2 * C] = 0
    out = save_run(tmp_path, model, "alibi")
    an.main([f"--out_dir={out}", "--lengths=16,64", "--windows=3"])
    res = read(out)
    slopes = model.pe[0].slopes.tolist()
    for rec in res["lengths"]:
        np.testing.assert_allclose(rec["positional_score"][0], 1.0, atol=1e-6)
        for h, m in enumerate(slopes):
            dist, sink, beyond = alibi_closed_forms(m, rec["length"], 16)
            assert rec["mean_distance"][0][h] == pytest.approx(dist, rel=1e-5)
            assert rec["sink_share"][0][h] == pytest.approx(sink, rel=1e-5, abs=1e-7)
            assert rec["beyond_training"][0][h] == pytest.approx(beyond, rel=1e-5, abs=1e-7)
    assert res["lengths"][1]["beyond_training"][0][-1] > 0.3  # the flattest head looks past L
    kern = res["kernel"]
    deltas = np.array(kern["distance_edges"][:-1])
    want = -np.array(slopes)[:, None] * deltas[None]
    np.testing.assert_allclose(np.array(kern["values"][0]), want, rtol=1e-5, atol=1e-5)


def test_content_head_scores_near_zero(tmp_path, monkeypatch):
    """A NoPE head whose keys are large on marker tokens (0 and 1) and whose query is constant
    attends to the markers wherever they are: two texts put them at different places, so rows
    barely overlap (expected score ~ marker density 1/16 + the rows before the first marker).
    The same model with q/k zeroed is uniform: score 1."""
    draw_run_figures(monkeypatch)
    make_dataset(tmp_path)
    model = tiny_model("nope", n_layer=1, n_head=1)
    C = model.config.n_embd
    u = torch.zeros(C)
    u[0], u[1] = 1.0, -1.0  # zero-mean: LayerNorm keeps it, and keeps others orthogonal to it
    with torch.no_grad():
        wte = model.transformer.wte.weight
        others = wte - wte.mean(-1, keepdim=True)
        others -= (others @ u)[:, None] * u / (u @ u)  # no component along u
        wte.copy_(others)
        wte[:2] = 2 * u  # the markers
        attn = model.transformer.h[0].attn.c_attn
        attn.weight[: 2 * C] = 0
        attn.bias[: 2 * C] = 0
        attn.bias[0] = 1.0  # constant query e_0
        attn.weight[C] = 50 * u  # key_0 = 50 u . LN(x): large on markers, 0 elsewhere
    content = save_run(tmp_path, model, "content")
    with torch.no_grad():
        attn.bias[0] = 0.0
    uniform = save_run(tmp_path, model, "uniform")
    an.main([str(tmp_path)])  # as a sweep: both runs, default lengths 8, 32, 64
    score = read(content)["lengths"][-1]["positional_score"][0][0]
    assert score < 0.2, score
    print(f"content head: positional score {score:.3f}")
    assert read(uniform)["lengths"][-1]["positional_score"][0][0] == pytest.approx(1, abs=1e-6)
    assert (tmp_path / "analysis_compare.png").exists()


def test_every_encoding_writes_analysis_and_figures(tmp_path, monkeypatch):
    """A 1-layer tiny model of every encoding in encodings/, analysed as one sweep: analysis.json
    for each, the comparison figure; learned tables skip lengths past their size; an unfinished
    run is left out. A run's figures draw its analysis.json, whatever the encoding, and cost
    seconds: drawn for ALiBi (a bias kernel, two lengths) and learned (a logit kernel, one)."""
    drawn = ("alibi", "learned")
    draw_run_figures(monkeypatch, drawn)
    make_dataset(tmp_path, n_val=600)
    names = available_encodings()
    for name in names:
        save_run(tmp_path / "sweep", tiny_model(name, n_layer=1), f"{name}/seed1", True, tmp_path)
    partial = tiny_model("rope", n_layer=1)
    save_run(tmp_path / "sweep", partial, "partial/seed1", False, tmp_path)
    results = an.main([str(tmp_path / "sweep"), "--lengths=8,32"])
    assert sorted(r["encoding"] for r in results) == names
    for name in names:
        run = tmp_path / "sweep" / name / "seed1"
        res = read(run)
        for fig, ext in itertools.product(FIGURES, ("png", "svg")):
            path = run / f"{fig}.{ext}"
            assert path.stat().st_size > 0 if name in drawn else not path.exists()
        for rec in res["lengths"]:
            if rec["skipped"]:
                assert name in ("learned", "axial") and rec["length"] == 32, rec
                continue
            for stat in an.STATISTICS:
                assert np.isfinite(rec[stat]).all(), (name, stat)
            assert np.all(np.array(rec["positional_score"]) <= 1 + 1e-6)
        assert np.isfinite(res["kernel"]["values"]).all(), name
    assert not (tmp_path / "sweep" / "partial" / "seed1" / "analysis.json").exists()
    assert (tmp_path / "sweep" / "analysis_compare.svg").exists()


def test_user_errors(tmp_path):
    make_dataset(tmp_path)
    run = save_run(tmp_path, tiny_model("alibi", n_layer=1), "run")
    bad = [
        [],  # neither a run nor a sweep
        [str(tmp_path), f"--out_dir={run}"],  # both
        [f"--out_dir={run}", "--windows=1"],
        [f"--out_dir={run}", "--lengths=0,8"],
        [f"--out_dir={run}", "--split=dev"],
        [f"--out_dir={run}", "--windos=4"],  # unknown key: names the nearest
        [str(tmp_path / "data")],  # a directory without checkpoints
    ]
    for argv in bad:
        with pytest.raises(UserError):
            an.main(argv)
    # the command line: one line on stderr, exit code 2, no traceback
    cmd = [sys.executable, "scripts/analyze.py", f"--out_dir={tmp_path / 'nothing'}"]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 2
    assert p.stderr.startswith("error: no checkpoint at") and p.stderr.count("\n") == 1
