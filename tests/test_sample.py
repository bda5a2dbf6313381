"""sample.py: prompts, seeds, generation past block_size, decoding, and its errors."""

import os

import pytest
import torch
from test_eval import as_on_cuda
from test_train import tiny_args, write_corpus

import sample
import train
from checkpoint import load_model
from configurator import run_cli
from data.prepare import get_tokenizer


@pytest.fixture(scope="module")
def runs(tmp_path_factory, one_thread):
    """Tiny trained runs (alibi: extrapolates; learned: a fixed table of block_size=32; rope:
    for context extension)."""
    root = tmp_path_factory.mktemp("sample")
    data_dir = str(root / "data")
    write_corpus(data_dir)
    out = {}
    for enc in ("alibi", "learned", "rope"):
        out[enc] = str(root / enc)
        argv = tiny_args(data_dir, out[enc], encoding=enc, max_iters=20)
        run_cli(lambda argv=argv: train.main(argv))
    return out


pytestmark = pytest.mark.usefixtures("one_thread")


def run_sample(argv, capsys):
    code = 0
    try:
        run_cli(lambda: sample.main(argv))
    except SystemExit as e:
        code = e.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_sample_matches_the_model_and_extrapolates(runs, capsys):
    args = [f"--out_dir={runs['alibi']}", "--start=the river", "--max_new_tokens=50", "--seed=3"]
    code, out, _ = run_sample(args + ["--num_samples=2"], capsys)
    assert code == 0
    samples = out[:-1].split("\n---------------\n")
    assert len(samples) == 2 and samples[0] != samples[1]
    assert all(s.startswith("the river") for s in samples)

    # the same thing by hand: 9 prompt tokens + 50 new ones, well past block_size = 32
    model, ckpt = load_model(runs["alibi"])
    tok = get_tokenizer(ckpt["tokenizer"])
    torch.manual_seed(3)
    x = torch.tensor([tok.encode("the river")])
    y = model.generate(x, 50, temperature=0.8, top_k=200)
    assert y.shape == (1, 9 + 50)
    assert samples[0] == tok.decode(y[0].tolist())

    # a fixed seed gives the same text again
    assert run_sample(args + ["--num_samples=2"], capsys)[1] == out


def test_prompt_file_that_is_not_text(runs, tmp_path, capsys):
    bad = tmp_path / "prompt.bin"
    bad.write_bytes(b"\xff\xfe\x00binary")
    code, _, err = run_sample([f"--out_dir={runs['alibi']}", f"--start=FILE:{bad}"], capsys)
    assert code == 2 and "not UTF-8 text" in err and err.count("\n") == 1


def test_prompt_from_file_and_greedy(runs, tmp_path, capsys):
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("a king of the city")
    args = [f"--out_dir={runs['alibi']}", f"--start=FILE:{prompt}", "--temperature=0"]
    code, out, _ = run_sample(args + ["--max_new_tokens=20", "--seed=1"], capsys)
    assert code == 0 and out.startswith("a king of the city")
    assert run_sample(args + ["--max_new_tokens=20", "--seed=2"], capsys)[1] == out  # greedy


def test_rope_scaling_at_generation_time(runs, capsys):
    args = [f"--out_dir={runs['rope']}", "--start=the", "--max_new_tokens=200", "--temperature=0"]
    code, plain, _ = run_sample(args, capsys)
    assert code == 0
    code, yarn, _ = run_sample(args + ["--rope_scaling=yarn", "--rope_factor=8"], capsys)
    assert code == 0 and yarn.startswith("the")
    # the same as generating by hand with the scaled model
    model, ckpt = load_model(runs["rope"], e=dict(rope_scaling="yarn", rope_factor=8))
    tok = get_tokenizer(ckpt["tokenizer"])
    y = model.generate(torch.tensor([tok.encode("the")]), 200, temperature=0)
    assert yarn[:-1] == tok.decode(y[0].tolist())
    assert model.pe[0].scaling == "yarn" and model.pe[0].factor == 8.0


def test_learned_positions_crop_the_context(runs, capsys):
    args = [f"--out_dir={runs['learned']}", "--max_new_tokens=50", "--start=the"]
    code, out, err = run_sample(args, capsys)
    assert code == 0 and out.startswith("the")
    assert "positions up to 32" in err


def test_generates_in_the_checkpoints_dtype(runs, tmp_path, monkeypatch, capsys):
    seen = as_on_cuda(monkeypatch, sample)
    ckpt = torch.load(os.path.join(runs["alibi"], "ckpt.pt"), weights_only=True)
    for dtype in ("float32", "bfloat16"):
        ckpt["config"]["dtype"] = dtype
        (tmp_path / dtype).mkdir()
        torch.save(ckpt, tmp_path / dtype / "ckpt.pt")
    args = ["--start=the", "--max_new_tokens=5"]
    for run, told in (("float32", []), ("bfloat16", []), ("bfloat16", ["--dtype=float32"])):
        assert run_sample([f"--out_dir={tmp_path / run}", *args, *told], capsys)[0] == 0
    assert seen == ["float32", "bfloat16", "float32"]


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "pass --out_dir=DIR"),
        (["--out_dir=/nonexistent"], "no checkpoint at /nonexistent/ckpt.pt"),
        (["--start=FILE:/nonexistent.txt"], "no such file"),
        (["--start="], "encodes to no tokens"),
        (["--encoding_kwargs={'nosuch': 1}"], "has no option 'nosuch'"),
        (["--temperatur=1.0"], "unknown key 'temperatur' (did you mean 'temperature'?)"),
        (["--rope_scaling=yarn"], "applies to damped_rope and rope; this checkpoint uses alibi"),
        (["--top_k=-1"], "--top_k must be >= 0"),
        (["--device=cuda:7"] if not torch.cuda.is_available() else [], "no CUDA device"),
    ],
)
def test_sample_errors(runs, args, message, capsys):
    if args and not args[0].startswith("--out_dir"):
        args = [f"--out_dir={runs['alibi']}", *args]
    code, _, err = run_sample(args, capsys)
    assert code == 2 and message in err and err.count("\n") == 1


def test_cli(runs):
    # the real command line, once: imports, argument handling, exit code
    import subprocess
    import sys

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    p = subprocess.run(
        [sys.executable, "sample.py", f"--out_dir={runs['alibi']}", "--max_new_tokens=5"],
        cwd=repo, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"),
    )  # fmt: skip
    assert p.returncode == 0 and p.stdout.startswith("\n") and p.stderr == ""
