"""scripts/eval_context.py: both probes on models whose answer is known by construction."""

import contextlib
import dataclasses
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import load_script, write_token_dataset

from configurator import UserError
from model import GPT, GPTConfig

ec = load_script("eval_context")
pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: faster, and deterministic
NO_AUTOCAST = contextlib.nullcontext()
BLOCK = 16


def tiny_gpt(encoding="rope", vocab=32):
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=vocab, n_layer=2, n_head=2, n_embd=16, block_size=BLOCK,
                    encoding=encoding, attn_block_size=8)  # fmt: skip
    return GPT(cfg).eval()


def random_tokens(n, vocab, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).integers(0, vocab, n))


def cfg(**kw):
    return dict(split="val", tau=0.5, target_stride=0, span=0, distances=(), placements=4,
                probe_seeds=2, batch_size=5, memory_budget_gb=1.0, device="cpu") | kw  # fmt: skip


class Copier(torch.nn.Module):
    """An ideal induction rule, written as a function rather than learned weights (GPT's forward
    signature): after tokens (a, b) it predicts, with logit 20, the token that followed the latest
    earlier (a, b) at most `reach` tokens back; uniform if there is none."""

    max_len = None

    def __init__(self, vocab, reach=10**9):
        super().__init__()
        self.config, self.reach = SimpleNamespace(vocab_size=vocab), reach

    def forward(self, idx, targets=None, pos=None, cache=None):
        B, T = idx.shape
        pair = idx * self.config.vocab_size + idx.roll(1, 1)  # (token, previous token)
        i, j = torch.arange(T)[:, None], torch.arange(T)[None, :]
        ok = (j >= 1) & (j < i) & (i - j <= self.reach)  # position 0 has no previous token
        last = torch.where((pair[:, :, None] == pair[:, None, :]) & ok, j, 0).amax(-1)
        logits = torch.zeros(B, T, self.config.vocab_size)
        logits.scatter_(2, idx.gather(1, last + 1 - (last == 0).long())[..., None], 20.0)
        logits[last == 0] = 0.0
        return logits, None


def test_truncation_is_exactly_the_last_block_tokens():
    model, data = tiny_gpt(), random_tokens(150, 32)
    targets = ec.gain_targets(len(data) - 1, BLOCK, 3)
    for length in (32, 64, 128):  # at every L = L_train x 2^j: context >= L_train, same targets
        assert ((targets - 1) % length >= BLOCK - 1).all()
    short = ec.short_nll(model, data, targets, BLOCK, 7, NO_AUTOCAST, "cpu")
    long = ec.long_nll(model, data, 64, 2, NO_AUTOCAST, "cpu")
    assert len(long) == len(data) - 1
    with torch.no_grad():
        last_nll = lambda ctx, t: F.cross_entropy(model(ctx[None])[0][0, -1], data[t]).item()
        naive_short = [last_nll(data[t - BLOCK : t], t) for t in targets.tolist()]
        naive_long = [last_nll(data[(t - 1) // 64 * 64 : t], t) for t in range(1, len(data))]
    assert short.tolist() == pytest.approx(naive_short, rel=1e-5, abs=1e-6)
    assert long.tolist() == pytest.approx(naive_long, rel=1e-5, abs=1e-6)


def test_gain_is_exactly_zero_at_the_training_length():
    model, data = tiny_gpt(), random_tokens(300, 32)
    lens, context = (16, 32, 64), dict(block_size=BLOCK)
    at16, at32, at64 = ec.gain_records(cfg(), model, model, data, context, lens, NO_AUTOCAST)
    assert at16["gain"] == 0.0 and at16["helped"] == at16["hurt"] == 0.0 and at16["tokens"] > 0
    assert at16["loss_long"] == at16["loss_short"] and at16["key_ppl"] is None
    assert at32["tokens"] == at64["tokens"] > at16["tokens"]  # the same targets past L_train
    assert at32["gain"] != 0.0 and at64["gain"] != 0.0  # a random model: context matters


def test_exactly_local_alibi_has_no_gain_and_retrieves_nothing():
    model, data = tiny_gpt("alibi"), random_tokens(800, 32)
    with torch.no_grad():  # larger weights: a random model whose losses move with the context
        for p in model.parameters():
            p.mul_(10)
    context, c = dict(block_size=BLOCK), cfg(span=4, distances=(4, 32, 256))
    (before,) = ec.gain_records(c, model, model, data, context, (64,), NO_AUTOCAST)
    for pe in model.pe:  # weights exp(-1000 d) underflow to 0 for d >= 1: each token sees itself
        pe.slopes.fill_(1000.0)
    (gain,) = ec.gain_records(c, model, model, data, context, (64,), NO_AUTOCAST)
    assert abs(before["gain"]) > 1e-2 and before["hurt"] > 0  # ALiBi's own slopes see far
    assert abs(gain["gain"]) < 1e-6 and gain["helped"] == gain["hurt"] == 0.0
    copies = ec.copy_records(c, model, model, data, context, NO_AUTOCAST)
    assert all(r["ratio"] == pytest.approx(1.0, abs=1e-5) for r in copies)
    assert all(r["horizon"] is None for r in copies)


def test_copier_retrieves_at_every_distance_up_to_its_reach():
    data, context = random_tokens(1500, 256), dict(block_size=BLOCK)
    c, copier = cfg(span=8), Copier(256)  # default distances 4, 8, ..., 512; 4 < span: overlap
    copies = ec.copy_records(c, copier, copier, data, context, NO_AUTOCAST)
    assert copies[0]["distance"] == 4 and copies[0]["skipped"] and "overlap" in copies[0]["reason"]
    assert [r["distance"] for r in copies[1:]] == [8, 16, 32, 64, 128, 256, 512]
    assert all(r["ratio"] < 0.5 and r["first_loss"] > 5 for r in copies[1:])
    assert copies[-1]["horizon"] == 512 and len(copies[-1]["ratio_by_seed"]) == 2
    near = Copier(256, reach=100)
    copies = ec.copy_records(c, near, near, data, context, NO_AUTOCAST)
    assert [r["ratio"] < 0.5 for r in copies[1:]] == [True] * 4 + [False] * 3
    assert copies[0]["horizon"] == 64


def test_copier_gains_from_context_past_the_training_length():
    period = random_tokens(40, 256)  # text that repeats every 40 tokens: L_train = 16 sees none
    data, model = period.repeat(30), Copier(256)
    at16, at64 = ec.gain_records(cfg(), model, model, data, dict(block_size=BLOCK), (16, 64),
                                 NO_AUTOCAST)  # fmt: skip
    assert at16["gain"] == 0.0
    assert at64["gain"] > 1.0 and at64["helped"] > 0.3 and at64["hurt"] == 0.0
    assert at64["key_ppl"] == pytest.approx(1.0, abs=1e-3)  # the helped tokens are copied


def test_cli_end_to_end(tmp_path, capsys):
    rng = np.random.default_rng(0)
    splits = {s: rng.integers(0, 32, 600).astype(np.uint16) for s in ("train", "val", "test")}
    write_token_dataset(tmp_path, splits, 32)
    model, out = tiny_gpt("alibi"), tmp_path / "run"
    out.mkdir()
    config = {"dataset": "tiny", "data_dir": str(tmp_path / "data"), "seed": 1}
    torch.save(dict(model=model.state_dict(), model_args=dataclasses.asdict(model.config),
                    config=config, iter_num=5, finished=True), out / "ckpt.pt")  # fmt: skip
    args = [f"--out_dir={out}", "--lengths=16,32,1024", "--max_tokens=400", "--span=4",
            "--distances=4,16,64", "--placements=3", "--device=cpu"]  # fmt: skip
    ec.main(args)
    ec.main(args + ["--tau=1.0"])  # a re-run replaces the records
    records = json.loads((out / "eval_context.json").read_text())
    assert [(r["mode"], r["length"]) for r in records] == [
        ("copy", 4), ("copy", 16), ("copy", 64), ("gain", 16), ("gain", 32), ("gain", 1024)
    ]  # fmt: skip
    gain, copy = records[3:], records[:3]
    assert gain[0]["gain"] == 0.0 and gain[1]["tau"] == 1.0 and gain[1]["target_stride"] == 4
    assert gain[2]["skipped"] and "--max_tokens, if set" in gain[2]["reason"]
    assert all(r["encoding"] == "alibi" and r["block_size"] == 16 for r in records)
    assert all(r["dtype"] == "float32" and r["max_tokens"] == 400 for r in records)
    assert all(r["span"] == 4 and len(r["ratio_by_seed"]) == 3 and "horizon" in r for r in copy)
    assert "gain at     32" in capsys.readouterr().out
    with pytest.raises(UserError, match="--tau"):
        ec.main(args + ["--tau=0"])


@pytest.mark.parametrize(
    "arg, message",
    [
        ("--placements=0", "--placements must be >= 1, got 0"),
        ("--target_stride=-1", "--target_stride must be >= 0, got -1"),
        ("--span=1", "--span must be at least 2 (its tokens 2.. are scored), or 0 (default)"),
        ("--distances=64,0", "--distances must be positive integers like --distances=64,256"),
        ("--lengths=-16", "--lengths must be positive integers like --lengths=512,1024, got"),
        ("--max_tokens=-1", "--max_tokens must be >= 0 (0: the whole split), got -1"),
        ("--mode=sliding", "unknown key 'mode'"),  # the gain's long pass is nonoverlapping
    ],
)
def test_bad_options_fail_before_the_checkpoint_is_read(tmp_path, arg, message):
    with pytest.raises(UserError) as e:
        ec.main([f"--out_dir={tmp_path}/missing", arg, "--device=cpu"])
    assert str(e.value).startswith(message)
