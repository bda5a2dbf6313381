"""--help on every script: exit 0, its positional arguments, each key with its default and the
comment that explains it (configs/base.py's for train.py, the DEFAULTS' for the scripts)."""

import importlib
import re
import sys
from pathlib import Path

import pytest
from helpers import load_script

from configurator import BASE_CONFIG, UserError, key_comments

ROOT = Path(__file__).resolve().parent.parent
# script: (its positional arguments, a key as help shows it, the start of that key's comment)
CASES = {
    "train.py": ("[CONFIG_FILE]", "--learning_rate=0.0006", "peak learning rate"),
    "sample.py": (None, "--top_k=200", "keep only the top_k most likely tokens"),
    "data/prepare.py": ("{demo,wikitext103,text}", "demo", "offline corpus from Python's own"),
    "scripts/analyze.py": ("[SWEEP]", "--windows=4", "text windows per length"),
    "scripts/bench.py": (None, "--steps=0", "timed iterations per measurement"),
    "scripts/eval_context.py": (None, "--tau=0.5", "key tokens: helped by the far context"),
    "scripts/eval_lengths.py": (None, "--max_tokens=0", "score only the split's first"),
    "scripts/plot.py": ("SWEEP_DIR|RUN_DIR|eval_lengths.json ...", "--metric='ppl'", "ppl | word"),
    "scripts/preflight.py": ("[CONFIG]", "--steps=5", "training steps per path"),
    "scripts/sweep.py": (
        "SWEEP_FILE [--key=value ...]",
        "--dry_run=False",
        "list what would run, run nothing",
    ),
}


def test_every_script_is_covered():
    scripts = ["train.py", "sample.py", "data/prepare.py"]
    scripts += [str(p.relative_to(ROOT)) for p in (ROOT / "scripts").glob("*.py")]
    runnable = [s for s in scripts if 'if __name__ == "__main__"' in (ROOT / s).read_text()]
    assert sorted(runnable) == sorted(CASES)


@pytest.mark.parametrize("script", sorted(CASES))
def test_help_shows_positionals_and_what_each_key_means(script, capsys, monkeypatch):
    positional, key, comment = CASES[script]
    name = script[:-3].replace("/", ".")
    module = load_script(Path(script).stem) if script.startswith("scripts/") else None
    module = module or importlib.import_module(name)
    monkeypatch.setattr(sys, "argv", [str(ROOT / script), "--help"])
    with pytest.raises(SystemExit) as e:
        module.main(["--help"])
    assert e.value.code in (0, None)
    out = capsys.readouterr().out
    usage = next(line for line in out.splitlines() if line.startswith("usage:"))
    assert usage.startswith(f"usage: {Path(script).name}")
    assert positional is None or positional in usage
    assert re.search(rf"^ +{re.escape(key)} +{re.escape(comment)}", out, re.M), out


def test_key_comments_inline_else_the_lines_above():
    notes = key_comments(BASE_CONFIG)
    assert notes["learning_rate"] == "peak learning rate"
    assert notes["attn_dropout"].startswith("dropout of attention probabilities. 0: FlexAttention")
    assert notes["attn_dropout"].endswith("(slower, and not what preflight checks)")
    assert notes["n_layer"] == ""  # none: the line above is code


@pytest.mark.parametrize("script", ["eval_lengths", "analyze"])
def test_split_error_lists_the_accepted_splits(script):
    module = load_script(script)
    with pytest.raises(UserError, match="--split must be one of train, val, test; got 'dev'"):
        module.check_args(dict(module.DEFAULTS, out_dir="run", split="dev"))
