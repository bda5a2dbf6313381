"""scripts/preflight.py: passes correct setups (compiled, and under low-precision autocast), fails
an injected defect of the compiled or the low-precision path with its reason and exit code 1, and
gives one-line errors for bad names. Tiny models through config overrides; at most two encodings
are compiled (inductor costs ~20 s once per process plus ~7 s per model here)."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import load_script

import attention
from configurator import run_cli
from encoding import encoding_class

ROOT = Path(__file__).resolve().parent.parent
DEMO = "configs/demo/base.py"
TINY = ["--steps=3", "--batch_size=2", "--n_layer=1", "--block_size=16", "--eval_factor=2"]


pf = load_script("preflight")


@pytest.fixture(autouse=True)
def at_root(monkeypatch, one_thread):
    monkeypatch.chdir(ROOT)  # setups are config files relative to the repo


def lines(out, word):
    return [ln for ln in out.splitlines() if ln.startswith(word)]


def patch(monkeypatch, name, hook, defect):
    """Make encoding `name`'s hook (rotate or bias) pass its output through defect()."""
    cls = encoding_class(name)
    original = getattr(cls, hook)

    def broken(self, *args):
        out = original(self, *args)
        return tuple(map(defect, out)) if isinstance(out, tuple) else defect(out)

    monkeypatch.setattr(cls, hook, broken)


def test_compiled_path(monkeypatch, capsys):
    # rope with a defect only the traced (compiled) graph contains: q and k off by 5%
    compiled = lambda t: t * 1.05 if torch.compiler.is_compiling() else t
    patch(monkeypatch, "rope", "rotate", compiled)
    assert pf.main([DEMO, "--encodings=alibi,rope", "--compile=True", *TINY]) == 1
    out = capsys.readouterr().out
    assert "checked: float32, compiled vs float32 eager" in out
    (ok,) = lines(out, "OK   alibi")  # correct and compiled: within the float32 tolerances
    assert "@16" in ok and "@32" in ok and "tok/s" in ok and " MB" in ok and "compile" in ok
    (fail,) = lines(out, "FAIL rope")
    assert "drift" in fail and "> 0.0001" in fail  # the float32 (compiled) tolerance
    last = out.splitlines()[-1]
    assert last.startswith("1/2 OK in ") and last.endswith("; failed: rope")


def test_low_precision_path(monkeypatch, capsys):
    # train.py's dtype on a GPU, without a GPU: bfloat16 autocast on CPU takes the same code path
    monkeypatch.setattr(pf.runtime, "pick_dtype", lambda dtype, device_type: ("bfloat16", None))
    assert pf.main([DEMO, "--encodings=alibi,rope,generator_alibi", *TINY]) == 0
    out = capsys.readouterr().out
    assert "checked: bfloat16, eager" in out and len(lines(out, "OK   ")) == 3

    # a defect of the low-precision path only: under autocast, ALiBi's bias is dropped
    in_autocast = lambda t: t * 0 if torch.is_autocast_enabled("cpu") else t
    patch(monkeypatch, "alibi", "bias", in_autocast)
    assert pf.main([DEMO, "--encodings=alibi,rope", *TINY]) == 1
    out = capsys.readouterr().out
    (fail,) = lines(out, "FAIL alibi")
    assert "logits drift" in fail and f"> {pf.TOLERANCES['bfloat16'][0]:g}" in fail
    assert len(lines(out, "OK   rope")) == 1

    # NaN in the low-precision path; the float32 reference stays finite
    nan = lambda t: t * float("nan") if torch.is_autocast_enabled("cpu") else t
    patch(monkeypatch, "rope", "rotate", nan)
    assert pf.main([DEMO, "--encodings=rope", *TINY]) == 1
    (fail,) = lines(capsys.readouterr().out, "FAIL rope")
    assert "loss became nan at step 1" in fail and "float32 eager too" not in fail


@pytest.mark.filterwarnings("ignore")  # eager flex_attention warns that it is unfused: fine here
def test_flex_is_compared_with_sdpa(monkeypatch, capsys):
    # CPU takes no FlexAttention gradients, so with attn_backend="flex" the checked path trains on
    # SDPA and runs its long evaluation forward on FlexAttention; the reference runs SDPA in both
    assert pf.main([DEMO, "--encodings=alibi", "--attn_backend=flex", *TINY]) == 0
    (ok,) = lines(capsys.readouterr().out, "OK   alibi")
    assert "| blocks " in ok and "@32" in ok

    # a defect of the FlexAttention kernel only (5% off) FAILs against the SDPA reference
    original = attention.flex_causal_attention
    monkeypatch.setattr(attention, "flex_causal_attention", lambda *a: original(*a) * 1.05)
    assert pf.main([DEMO, "--encodings=alibi", "--attn_backend=flex", *TINY]) == 1
    (fail,) = lines(capsys.readouterr().out, "FAIL alibi")
    assert "logits drift" in fail and "at length 32" in fail


def test_exception_is_one_fail_line(monkeypatch, capsys):
    def boom(self, *args):
        raise RuntimeError("kernel exploded\nsecond line")

    monkeypatch.setattr(encoding_class("rope"), "rotate", boom)
    assert pf.main([DEMO, "--encodings=rope,alibi", *TINY]) == 1
    out = capsys.readouterr().out
    assert "FAIL rope               RuntimeError: kernel exploded\n" in out
    assert len(lines(out, "OK   alibi")) == 1  # the next setup still runs


def test_tolerance_options(capsys):
    # a float32 eager config on CPU: both paths are the same, and any tolerance holds
    assert pf.main([DEMO, "--encodings=nope", "--loss_tol=1e-12", "--logits_tol=1e-12", *TINY]) == 0
    out = capsys.readouterr().out
    assert "both paths are the same" in out and "loss 0.0e+00" in out


def run_main(argv):
    with pytest.raises(SystemExit) as e:
        run_cli(lambda: pf.main(argv))
    return e.value.code


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            [DEMO, "--encodings=rope,ropee"],
            "error: unknown setup 'ropee' in --encodings (did you mean 'rope'?); valid in "
            "configs/demo: alibi, ",
        ),
        (["configs/demo/rope.py", "--encodings=alibi"], "error: --encodings picks files beside"),
        ([DEMO, "--n_layr=2"], "error: unknown key 'n_layr' (did you mean 'n_layer'?)\n"),
        ([DEMO, "--steps=2"], "error: --steps must be at least 3"),
        (["configs/nope_typo.py"], "error: config file not found: configs/nope_typo.py\n"),
        (
            ["configs/base.py", "--dataset=mine", "--encodings=rope"],
            "error: cannot tell the vocabulary of dataset 'mine': pass --vocab_size=N\n",
        ),
    ],
)
def test_usage_errors_are_one_line(argv, message, capsys):
    assert run_main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1


def test_one_setup_file_and_vocab():
    assert pf.setup_files("configs/demo/rope.py", []) == {"rope": "configs/demo/rope.py"}
    assert list(pf.setup_files("configs/base.py", ["t5", "alibi"])) == ["t5", "alibi"]
    c = pf.load_config(["configs/alibi.py", "--data_dir=/nonexistent"])
    assert pf.vocab_size(c, pf.DEFAULTS) == 50257  # GPT-2 BPE, before data/prepare.py has run


def test_cli_without_config_uses_the_demo_on_cpu():
    """A real process: no CONFIG on a CPU machine checks configs/demo/base.py's setups."""
    assert not torch.cuda.is_available()
    cmd = [sys.executable, "scripts/preflight.py", "--encodings=sinusoidal", *TINY]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"preflight {DEMO} | cpu |")
    assert len(lines(r.stdout, "OK   sinusoidal")) == 1 and "1/1 OK" in r.stdout


def test_precision_follows_train_rules_and_tf32_key():
    """The checked path is what train.py runs: on CUDA bf16 (where supported) or the config's
    dtype, TF32 unless the config says tf32=False (generator_jordan's configs do); CPU float32."""
    from configurator import load_config

    base = load_config(["configs/base.py"])
    assert pf.precision({**base, "dtype": "float32"}, "cuda:0") == ("float32", True, True, "tf32")
    no_tf32 = {**base, "dtype": "float32", "tf32": False}
    assert pf.precision(no_tf32, "cuda") == ("float32", True, False, "float32")
    assert pf.precision(base, "cpu")[::2] == ("float32", False)
    jordan = load_config(["configs/generator_jordan.py"])
    assert (jordan["dtype"], jordan["tf32"]) == ("float32", False)
