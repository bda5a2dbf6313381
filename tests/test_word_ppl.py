"""Word-level perplexity in scripts/eval_lengths.py: total NLL over the split divided by the
fairseq word-level count of data/prepare.py (whitespace words + one end-of-line per line)."""

import dataclasses
import json
import math
import re

import pytest
import torch
import torch.nn.functional as F
from helpers import load_script

from configurator import fmt_float
from data import prepare
from model import GPT, GPTConfig

ev = load_script("eval_lengths")

# the val split, counted by hand: 4 lines (one blank, the last without a newline), 10 words
VAL = ["first line here\n", "\n", "  second   line \n", "a last line, no newline"]
VAL_WORDS, VAL_LINES = 3 + 0 + 2 + 5, 4
OTHER = ["some text for the other splits\n"] * 3


def make_run(root):
    data_dir = root / "data"
    tok = prepare.get_tokenizer("bytes")
    pieces = {"train": OTHER, "val": VAL, "test": OTHER}
    prepare.write_dataset(str(data_dir / "tiny"), "tiny", "text", tok, pieces)
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=256, n_layer=1, n_head=2, n_embd=16, block_size=16, encoding="alibi")
    model = GPT(cfg).eval()
    out = root / "run"
    out.mkdir()
    ckpt = {
        "model": model.state_dict(),
        "model_args": dataclasses.asdict(cfg),
        "config": {"dataset": "tiny", "data_dir": str(data_dir)},
        "iter_num": 1,
    }
    torch.save(ckpt, out / "ckpt.pt")
    return out, model, data_dir / "tiny"


@torch.no_grad()
def total_nll(model, ids, length):
    """Sum of the NLL of tokens 1..n-1 in nonoverlapping windows of `length` inputs."""
    x = torch.tensor(ids)
    total = 0.0
    for s in range(0, len(x) - 1, length):
        inp, tgt = x[s : s + length], x[s + 1 : s + 1 + length]
        logits, _ = model(inp[: len(tgt)][None])
        total += F.cross_entropy(logits[0].double(), tgt, reduction="sum").item()
    return total


def test_word_ppl_uses_word_level_tokens(tmp_path, one_thread, capsys):
    out, model, dataset_dir = make_run(tmp_path)
    ids = list("".join(VAL).encode("utf-8"))
    expected_total = total_nll(model, ids, 16)

    capsys.readouterr()
    ev.main([f"--out_dir={out}", "--lengths=16", "--device=cpu"])
    printed = capsys.readouterr().out  # bytes: bits per byte printed, word ppl only recorded
    assert " bpb " in printed and "word ppl" not in printed
    (r,) = json.loads((out / "eval_lengths.json").read_text())
    assert r["tokens"] == len(ids) - 1
    assert r["loss"] * r["tokens"] == pytest.approx(expected_total, rel=1e-5)
    assert r["word_ppl_denominator"] == "word_level_tokens"
    assert r["word_ppl_count"] == VAL_WORDS + VAL_LINES == 14
    assert r["word_ppl"] == pytest.approx(math.exp(expected_total / 14), rel=1e-5)

    # a meta.json from before the count: whitespace words, and the record and output say so
    # (printed for a subword tokenizer: the meta says gpt2, scoring reads only the ids)
    meta_path = dataset_dir / "meta.json"
    meta = json.loads(meta_path.read_text()) | {"tokenizer": "gpt2"}
    for s in meta["splits"].values():
        del s["lines"], s["word_level_tokens"]
    meta_path.write_text(json.dumps(meta))
    ev.main([f"--out_dir={out}", "--lengths=16", "--device=cpu"])
    (r,) = json.loads((out / "eval_lengths.json").read_text())
    assert r["word_ppl_denominator"] == "words" and r["word_ppl_count"] == VAL_WORDS
    assert r["word_ppl"] == pytest.approx(math.exp(expected_total / VAL_WORDS), rel=1e-5)
    printed = capsys.readouterr().out
    assert "word ppl" in printed and "per whitespace word" in printed and "bpb" not in printed


def test_large_figures_print_in_scientific_notation():
    """A diverged model: loss 112 nats, ppl e^112 ~ 4e48 (49 digits in fixed notation)."""
    assert fmt_float(116002755100.11) == "1.16e+11" and fmt_float(12.3456) == "12.35"
    assert fmt_float(999_999.0, 1) == "999999.0" and fmt_float(float("nan")) == "nan"
    rec = dict(length=4, split="val", max_tokens=0)
    scored = 112.0 * 10, 10, torch.full((4,), 280.0, dtype=torch.float64), torch.full((4,), 2)
    meta = {"tokenizer": "gpt2", "splits": {"val": {"word_level_tokens": 5}}}
    text = ev.score(rec, scored, meta)
    assert "ppl 4.375e+48" in text and "word ppl 1.91e+97" in text
    assert not re.search(r"\d{7}", text), text
