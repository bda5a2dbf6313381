"""Randomized training positions (Ruoss et al. 2023): the draw, GPT.forward with positions per
sequence against one sequence at a time, train.py end to end (exact resume included), and the
config keys time / time_shared / train_positions / max_train_position. CPU, a few seconds."""

import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import write_token_dataset
from test_train import read_log, run_train
from test_train import tiny_args as train_tiny_args

import runtime
from checkpoint import load_checkpoint, save_checkpoint
from model import GPT, GPTConfig

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.usefixtures("one_thread")


# -----------------------------------------------------------------------------
# the draw


def test_random_positions_are_sorted_distinct_and_in_range():
    pos = runtime.random_positions(np.random.default_rng(0), 50, 32, 100)
    assert pos.shape == (50, 32) and pos.dtype == np.int64
    assert (np.diff(pos, axis=1) > 0).all()  # strictly increasing: sorted, no repeats
    assert pos.min() >= 0 and pos.max() < 100
    # T = bound: the only sample is every position
    full = runtime.random_positions(np.random.default_rng(1), 3, 16, 16)
    assert (full == np.arange(16)).all()


def test_random_positions_follow_the_generator_state():
    a, b = np.random.default_rng(7), np.random.default_rng(7)
    first = runtime.random_positions(a, 4, 8, 64)
    assert np.array_equal(first, runtime.random_positions(b, 4, 8, 64))  # same state, same draw
    assert a.bit_generator.state == b.bit_generator.state  # and the same state after it
    assert not np.array_equal(first, runtime.random_positions(a, 4, 8, 64))  # the state moved on
    rows = runtime.random_positions(np.random.default_rng(3), 2, 8, 10**6)
    assert not np.array_equal(rows[0], rows[1])  # rows are drawn independently


def test_random_positions_are_uniform_without_replacement():
    """T of M without replacement: every position is in a row with probability T/M; the largest
    of T averages (M + 1) T/(T + 1) - 1, the smallest (M + 1)/(T + 1) - 1. Bounds of 5-6 sigma
    (and the seed is fixed); drawing from [0, M - 1) instead would move the largest by ~1."""
    R, T, M = 4000, 16, 128
    pos = runtime.random_positions(np.random.default_rng(0), R, T, M)
    counts = np.bincount(pos.ravel(), minlength=M)
    expected = R * T / M  # 500, sd ~ sqrt(500 * (1 - 1/8)) ~ 21
    assert np.abs(counts - expected).max() < 120, counts
    assert abs(pos.max(axis=1).mean() - ((M + 1) * T / (T + 1) - 1)) < 0.6  # ~120.4, sd ~0.11
    assert abs(pos.min(axis=1).mean() - ((M + 1) / (T + 1) - 1)) < 0.6  # ~6.6, sd ~0.11


# -----------------------------------------------------------------------------
# GPT.forward with per-sequence positions


def config(encoding, **overrides):
    args = dict(vocab_size=64, n_layer=2, n_head=2, n_embd=32, block_size=16, dropout=0.0,
                encoding=encoding, attn_block_size=8, max_train_position=64)  # fmt: skip
    args.update(overrides)
    return GPTConfig(**args)


CASES = [
    ("learned", {}),
    ("sinusoidal", {}),
    ("axial", {}),
    ("rope", {}),
    ("alibi", {}),
    ("rope", {"time": "learned"}),
]


@pytest.mark.parametrize(
    "encoding, overrides",
    CASES,
    ids=["learned", "sinusoidal", "axial", "rope", "alibi", "rope-learned_time"],
)
def test_forward_per_sequence_positions_equals_one_row_at_a_time(encoding, overrides):
    torch.manual_seed(0)
    m = GPT(config(encoding, **overrides)).eval()
    if encoding == "rope" and overrides:  # a clock that is not the token index
        for block in m.transformer.h:
            torch.nn.init.normal_(block.attn.clock.weight, std=0.3)
    idx = torch.randint(0, 64, (3, 16))
    pos = torch.from_numpy(runtime.random_positions(np.random.default_rng(0), 3, 16, 64))
    with torch.no_grad():
        batched, _ = m(idx, pos=pos)
        for i in range(3):
            row, _ = m(idx[i : i + 1], pos=pos[i])
            torch.testing.assert_close(batched[i], row[0], rtol=1e-5, atol=1e-5)
        plain, _ = m(idx)  # positions 0 .. T-1
    # the positions reach the model, a learned clock too (it rescales their steps): 0 .. T-1
    # gives other logits
    assert not torch.allclose(batched, plain, atol=1e-4)


def naive_embedding(encoding, pe, p):
    """Row P[p] of each absolute encoding, from its definition, one number at a time."""
    D = pe.n_embd
    if encoding == "learned":
        return [float(pe.table[p, c].detach()) for c in range(D)]
    if encoding == "axial":
        n1 = pe.shape[0]
        return [float(pe.table1[p % n1, c].detach()) for c in range(pe.dims[0])] + [
            float(pe.table2[p // n1, c].detach()) for c in range(pe.dims[1])
        ]
    row = []
    for i in range(D // 2):
        angle = p / pe.base ** (2 * i / D)
        row += [pe.scale * math.sin(angle), pe.scale * math.cos(angle)]
    return row


@pytest.mark.parametrize("encoding", ["learned", "sinusoidal", "axial"])
def test_embed_takes_positions_per_sequence(encoding):
    """(B, T) -> (B, T, C) against each encoding's definition; tables have max_train_position
    rows (block_size 16, bound 64)."""
    torch.manual_seed(0)
    m = GPT(config(encoding))
    pe = m.pe[0]
    pos = torch.from_numpy(runtime.random_positions(np.random.default_rng(1), 2, 16, 64))
    pos[1, -1] = 63  # the last row of the table
    with torch.no_grad():
        got = pe.embed(pos)
    assert got.shape == (2, 16, 32)
    expected = [[naive_embedding(encoding, pe, int(p)) for p in row] for row in pos]
    torch.testing.assert_close(got.double(), torch.tensor(expected, dtype=torch.float64))
    if encoding != "sinusoidal":
        assert m.max_len == 64
        with pytest.raises(ValueError, match="go from 0 to 63"):
            pe.embed(torch.tensor([[0, 64]]))
    block_sized = GPT(config(encoding, max_train_position=0)).max_len  # 0: block_size
    assert block_sized == (None if encoding == "sinusoidal" else 16)


# -----------------------------------------------------------------------------
# train.py end to end


def tiny_args(data_dir, out_dir, **overrides):
    """test_train's tiny run with randomized learned positions in [0, 256), 20 iterations."""
    args = dict(encoding="learned", train_positions="randomized", lr_decay_iters=20, max_iters=20)
    return train_tiny_args(data_dir, out_dir, **{**args, **overrides})


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """A token stream of 20 repeated phrases (something to learn), vocabulary 64."""
    rng = np.random.default_rng(0)
    phrases = [rng.integers(0, 60, size=rng.integers(4, 12)) for _ in range(20)]
    tokens = np.concatenate([phrases[i] for i in rng.integers(0, 20, size=1200)])
    tokens = tokens.astype(np.uint16)
    splits = {"train": tokens[:7000], "val": tokens[7000:8000], "test": tokens[8000:9000]}
    return str(write_token_dataset(Path(tmp_path_factory.mktemp("tiny")), splits, 64))


@pytest.fixture(scope="module")
def straight(data_dir, tmp_path_factory, one_thread):
    """An uninterrupted randomized run to iter 20, recording the positions the model saw."""
    out = str(tmp_path_factory.mktemp("straight"))
    seen, forward = [], GPT.forward

    def recording(self, idx, targets=None, pos=None, cache=None):
        seen.append((self.training, None if pos is None else pos.clone()))
        return forward(self, idx, targets, pos, cache)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(GPT, "forward", recording)
        assert run_train(tiny_args(data_dir, out)) == 0
    return out, seen


def test_randomized_run_trains_and_evaluates_at_ordinary_positions(straight):
    out, seen = straight
    log = read_log(out)
    assert [r["iter"] for r in log] == [0, 5, 10, 15, 20]
    assert all(math.isfinite(r["val_loss"]) for r in log)
    assert log[-1]["val_loss"] < log[0]["val_loss"]  # it learns
    ckpt = load_checkpoint(out)
    assert ckpt["model_args"]["max_train_position"] == 256  # 0 -> 8 x block_size
    assert ckpt["config"]["train_positions"] == "randomized"
    assert ckpt["model"]["pe.0.table"].shape == (256, 32)
    train_pos = [p for training, p in seen if training]
    assert len(train_pos) == 20 * 2  # every micro-step, with its own draw
    for p in train_pos:
        assert p.shape == (4, 32) and p.dtype == torch.int64
        assert (p.diff(dim=1) > 0).all() and p.min() >= 0 and p.max() < 256
    assert max(int(p.max()) for p in train_pos) > 200  # positions far past block_size
    assert not torch.equal(train_pos[0], train_pos[1])
    assert all(p is None for training, p in seen if not training)  # evaluation: 0 .. T-1


def test_randomized_stop_and_resume_equals_straight_run(straight, data_dir, tmp_path):
    ref, _ = straight
    out = str(tmp_path)
    assert run_train(tiny_args(data_dir, out, max_iters=10)) == 0
    assert run_train(["--out_dir=" + out, "--init_from=resume", "--max_iters=20"]) == 0
    assert read_log(out) == read_log(ref)  # bitwise: same windows, same positions
    a, b = load_checkpoint(out)["model"], load_checkpoint(ref)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_refuses_other_positions_or_time(straight, capsys):
    out, _ = straight
    for change in ("train_positions=index", "max_train_position=64", "time_shared=True"):
        assert run_train(["--out_dir=" + out, "--init_from=resume", "--" + change]) == 2
        err = capsys.readouterr().err
        assert f"cannot resume {out} with {change.split('=')[0]}=" in err, err
        assert err.count("\n") == 1


def test_checkpoints_older_than_the_keys_still_resume(data_dir, tmp_path, capsys):
    """A checkpoint saved before time / train_positions existed resumes as index time and
    index positions (configs/base.py's defaults), not as a changed architecture."""
    out = str(tmp_path)
    args = dict(train_positions="index", encoding="alibi", max_iters=5)
    assert run_train(tiny_args(data_dir, out, **args)) == 0
    ckpt = load_checkpoint(out)
    for key in ("time", "time_shared", "train_positions", "max_train_position"):
        del ckpt["config"][key]
    for key in ("time", "time_shared", "max_train_position"):
        del ckpt["model_args"][key]
    save_checkpoint(out, ckpt)
    capsys.readouterr()
    assert run_train(["--out_dir=" + out, "--init_from=resume", "--max_iters=10"]) == 0
    assert load_checkpoint(out)["iter_num"] == 10
    assert "; changed: max_iters 5 -> 10\n" in capsys.readouterr().out  # nothing else changed


def test_learned_time_with_rope_trains(data_dir, tmp_path, capsys):
    out = str(tmp_path)
    args = dict(encoding="rope", time="learned", train_positions="index", max_iters=4)
    assert run_train(tiny_args(data_dir, out, eval_interval=2, **args)) == 0
    assert ", time learned" in capsys.readouterr().out
    log = read_log(out)
    assert [r["iter"] for r in log] == [0, 2, 4] and all(math.isfinite(r["val_loss"]) for r in log)
    ckpt = load_checkpoint(out)
    assert ckpt["model_args"]["time"] == "learned" and ckpt["model_args"]["time_shared"] is False
    assert ckpt["model_args"]["max_train_position"] == 0
    assert "transformer.h.0.attn.clock.weight" in ckpt["model"]
    # trained: the clock's projection moved off its zero init
    assert ckpt["model"]["transformer.h.0.attn.clock.weight"].abs().max() > 0


def test_shared_learned_time_with_randomized_alibi_trains(data_dir, tmp_path):
    out = str(tmp_path)
    args = dict(encoding="alibi", time="learned", time_shared=True, max_train_position=100)
    assert run_train(tiny_args(data_dir, out, max_iters=2, eval_interval=2, **args)) == 0
    ckpt = load_checkpoint(out)
    assert ckpt["model_args"]["time_shared"] is True
    assert ckpt["model_args"]["max_train_position"] == 100
    assert "clock.weight" in ckpt["model"]  # one clock, on the GPT
    assert all(math.isfinite(r["val_loss"]) for r in read_log(out))


# -----------------------------------------------------------------------------
# user errors: one line, exit code 2, before any data work


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(train_positions="random"), "train_positions must be one of index, randomized; got"),
        (dict(max_train_position=16), "max_train_position (16) must be >= block_size (32)"),
        (dict(train_positions="index", max_train_position=64), "max_train_position applies only"),
        (dict(time="clock"), "time must be one of index, learned; got 'clock'"),
        (dict(time="learned"), "time='learned' needs an encoding that reads relative positions"),
        (dict(encoding="nope", time="learned"), "'nope' does not"),
        (dict(encoding_kwargs={"max_len": 100}), "learned absolute positions go from 0 to 99"),
        (dict(encoding="axial", encoding_kwargs={"shape": (8, 8)}), "than max_train_position=256"),
    ],
)
def test_bad_values_are_one_line_errors(overrides, message, tmp_path, capsys):
    argv = tiny_args("/nonexistent", str(tmp_path), **overrides)
    assert run_train(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
