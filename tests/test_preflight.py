"""scripts/preflight.py: passes correct setups (compiled, and under low-precision autocast), fails
an injected defect of the compiled or the low-precision path with its reason and exit code 1, and
gives one-line errors for bad names; its route labels are the routes train.py's model takes, for
every config; it estimates a sweep's training time. Tiny models through config overrides; at most
two encodings are compiled (inductor costs ~20 s once per process plus ~7 s per model here)."""

import subprocess
import sys
from contextlib import nullcontext
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import numpy as np
import pytest
import torch
from helpers import load_script

import attention
import train
from attention import route
from configurator import load_config, run_cli
from encoding import encoding_class

ROOT = Path(__file__).resolve().parent.parent
DEMO = "configs/demo/base.py"
TINY = ["--steps=3", "--batch_size=2", "--n_layer=1", "--block_size=16", "--eval_factor=2"]


pf = load_script("preflight")
eval_lengths = load_script("eval_lengths")


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
    assert "| train blocks, eval flex " in ok and "@32" in ok

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
        ([DEMO, "--encodings=rope,ropee"], "error: --encodings must be one of alibi, "),
        (["configs/demo/rope.py", "--encodings=alibi"], "error: --encodings picks files beside"),
        ([DEMO, "--n_layr=2"], "error: unknown key 'n_layr' (did you mean 'n_layer'?)\n"),
        ([DEMO, "--steps=2"], "error: --steps must be at least 3"),
        (["configs/nope_typo.py"], "error: config file not found: configs/nope_typo.py\n"),
        ([DEMO, "--sweep=configs/sweeps/demo.py"], "error: give a CONFIG or a --sweep file"),
        (["--sweep=configs/sweeps/demo.py", "--encodings=alibbi"], "error: --encodings must be"),
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
    assert pf.setup_files("configs/demo/rope.py", []) == {"rope": ["configs/demo/rope.py"]}
    assert list(pf.setup_files("configs/base.py", ["t5", "alibi"])) == ["t5", "alibi"]
    sweep = pf.load_sweep("configs/sweeps/time.py")  # a run's overrides, as train.py gets them
    setups = pf.setup_files("configs/sweeps/time.py", ["rope_learned_time"], sweep)
    assert setups == {"rope_learned_time": ["configs/rope.py", "--time=learned"]}
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


# -----------------------------------------------------------------------------
# the routes preflight labels and checks are train.py's

SMALL = ["--n_layer=1", "--n_head=2", "--n_embd=128", "--block_size=16", "--batch_size=2"]
CONFIGS = sorted(str(p.relative_to(ROOT)) for p in [*ROOT.glob("configs/*.py"),
                                                    *ROOT.glob("configs/demo/*.py")])  # fmt: skip
OVERRIDES = ["--train_positions=randomized", "--time=learned", "--attn_dropout=0.1"]
VARIANTS = [*CONFIGS, *(f"configs/alibi.py {o}" for o in [*OVERRIDES, "--attn_backend=flex"])]


def spied(fn):
    """fn()'s calls of attention.route: (args, kwargs, the route it returned)."""
    calls = []
    record = lambda *a, **kw: calls.append((a, kw, route(*a, **kw))) or calls[-1][2]
    with mock.patch.object(attention, "route", side_effect=record):
        fn()
    return calls


@pytest.mark.filterwarnings("ignore")  # eager flex_attention warns that it is unfused: fine here
@pytest.mark.parametrize("variant", VARIANTS)
def test_labels_are_the_routes_train_py_takes(variant, tmp_path):
    """preflight's CPU label is what attention.route() returns in a training step of train.py's own
    model (setup, build_model, train_step) and an evaluation of eval_lengths.py's; its CUDA label
    is route() asked with that training call's arguments on CUDA, compiled as the config says."""
    path, *overrides = variant.split()
    c = load_config([path, *SMALL, *overrides, "--gradient_accumulation_steps=1",
                     "--device=cpu", f"--out_dir={tmp_path}"])  # fmt: skip
    tokens = np.arange(64, dtype=np.uint16)
    tokens.tofile(tmp_path / "train.bin")
    r = train.setup(c)
    r.meta, r.bins = dict(vocab_size=64, dtype="uint16"), dict(train=str(tmp_path / "train.bin"))
    r.n_tokens = dict(train=len(tokens))
    train.build_model(r, None)
    (a, kw, took), *_ = spied(lambda: train.train_step(r))
    data, quiet = torch.from_numpy(tokens.astype(np.int64)), SimpleNamespace(update=abs)
    evaluate = partial(eval_lengths.evaluate_length, r.raw_model.eval(), data, 16, "nonoverlapping")
    (a_eval, kw_eval, took_eval), *_ = spied(lambda: evaluate(16, 1, nullcontext(), "cpu", quiet))

    here, on_cuda = pf.inputs(c, 64, 1, 16, "cpu")[3]
    # train_step ran eager: compiling changes a route only where flex would train, never on a CPU
    assert here == (took, took_eval)
    assert a[3] == "cpu" and a[4] and not a_eval[4]  # with gradients; evaluation without
    cuda = {**kw, "compiled": c["compile"]}
    assert on_cuda == (
        route(*a[:3], "cuda", *a[4:], **cuda),
        route(*a_eval[:3], "cuda", *a_eval[4:], **kw_eval),
    )


@pytest.mark.filterwarnings("ignore")  # eager flex_attention warns that it is unfused: fine here
@pytest.mark.parametrize("override", ["--attn_dropout=0.1", "--train_positions=randomized"])
def test_checked_path_trains_on_the_labelled_route(override, monkeypatch, capsys):
    """With FlexAttention allowed to train on the CPU too (where its backward raises), the checked
    path must still train on SDPA blocks: attention dropout and randomized positions keep train.py
    off flex, and preflight trains with both (its dropout zeroed on the blocks route)."""
    monkeypatch.setattr(attention, "use_flex", lambda backend, device_type, grad: backend != "sdpa")
    argv = [DEMO, "--encodings=alibi", "--dropout=0.1", override, "--vocab_size=64", *TINY]
    calls = spied(lambda: pf.main(argv) == 0 or pytest.fail("preflight failed"))
    (ok,) = lines(capsys.readouterr().out, "OK   alibi")
    assert "loss 0.0e+00" in ok and "| train blocks, eval flex " in ok
    training = [(a[1].dim(), took) for a, _, took in calls if a[4]]  # (positions' dims, route)
    random = "randomized" in override  # (B, T) positions: (B, 1, T) in attention
    assert set(training) == {(3 if random else 1, "blocks")}


def test_base_config_routes_on_cuda(monkeypatch, capsys):
    """`preflight.py configs/base.py --encodings=kerple,fire,shaw,alibi,t5` passes on the CPU and
    names each one's routes on CUDA: compiled, KERPLE, FIRE and Shaw train on SDPA blocks (their
    score_mods capture tensors computed in the graph), ALiBi and T5 on flex. torch.compile is
    skipped here (tested above): its cost, not the routes, which follow config.compile."""
    monkeypatch.setattr(torch, "compile", lambda model, **kw: model)
    small = ["--n_embd=64", "--n_head=2", "--vocab_size=64"]
    assert pf.main(["configs/base.py", "--encodings=kerple,fire,shaw,alibi,t5", *TINY, *small]) == 0
    out = capsys.readouterr().out
    assert "checked: float32, compiled vs float32 eager" in out
    for name, trains in dict(
        kerple="blocks", fire="blocks", shaw="blocks", alibi="flex", t5="flex"
    ).items():
        (ok,) = lines(out, f"OK   {name} ")
        assert "| train blocks, eval blocks " in ok  # on this CPU
        assert ok.endswith(f"| CUDA bfloat16: train {trains}, eval flex"), ok


def test_sweep_runs_and_estimate(tmp_path, monkeypatch, capsys):
    """--sweep checks the sweep's runs (with its common and run overrides) and ends with each one's
    training time, max_iters x tokens per iteration x seeds / its tok/s, and their sum."""
    sweep = tmp_path / "mini.py"
    sweep.write_text(
        "common = dict(max_iters=300)\n"
        "runs = [dict(name='alibi', config='configs/demo/alibi.py', seeds=[1, 2]),\n"
        "        dict(name='rope_random', config='configs/demo/rope.py',\n"
        "             overrides=dict(train_positions='randomized')),\n"
        "        dict(name='t5', config='configs/demo/t5.py')]\n"
    )
    speeds = dict(alibi=1000.0, rope=3000.0)
    checked = lambda c, opt, device, V: (True, c["train_positions"], speeds[c["encoding"]])
    monkeypatch.setattr(pf, "check", checked)
    assert pf.main([f"--sweep={sweep}", "--encodings=alibi,rope_random", "--batch_size=4"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"preflight {sweep} | cpu |")
    assert lines(out, "OK   rope_random")[0].endswith(" randomized")
    c = load_config(["configs/demo/base.py", "--max_iters=300", "--batch_size=4"])
    per_run = 300 * c["gradient_accumulation_steps"] * 4 * c["block_size"]
    alibi, rope = 2 * per_run / 1000, per_run / 3000  # two seeds; one
    assert (
        f"  alibi              {2 * per_run:,} tokens at 1,000 tok/s: {pf.fmt_duration(alibi)}\n"
        in out
    )
    assert (
        f"  rope_random        {per_run:,} tokens at 3,000 tok/s: {pf.fmt_duration(rope)}\n" in out
    )
    total = f"  total {pf.fmt_duration(alibi + rope)} without t5 (not measured); evaluation"
    assert out.splitlines()[-1].startswith(total)


def test_sweep_reports_every_setup_config_error(tmp_path, capsys):
    """--sweep says each run's config error on a line of its own before any work (exit 2); an
    error every run has (an override's) once, without names."""
    sweep = tmp_path / "bad.py"
    sweep.write_text(
        "runs = [dict(name='alibi', config='configs/demo/alibi.py', overrides=dict(n_head=3)),\n"
        "        dict(name='rope', config='configs/demo/rope.py')]\n"
        "_bad = dict(learning_rate=-1.0)\n"
        "runs += [dict(name='t5', config='configs/demo/t5.py', overrides=_bad),\n"
        "         dict(name='xl', config='configs/demo/xl.py', overrides=_bad)]\n"
    )
    assert run_main([f"--sweep={sweep}"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and err[0].startswith("error: alibi: ") and "n_head" in err[0]
    assert err[1] == "error: t5, xl: learning_rate must be > 0, got -1.0"
    assert run_main([f"--sweep={sweep}", "--batch_size=0"]) == 2
    assert capsys.readouterr().err == "error: batch_size must be >= 1, got 0\n"
