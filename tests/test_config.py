"""Config files and --key=value overrides: parsing, type checks, and one-line errors (exit 2)."""

import glob
import os
import subprocess
import sys

import pytest

import runtime
from configurator import (
    ConfigError,
    check_at_least,
    check_choice,
    check_keys,
    load_base,
    load_config,
    parse_args,
    run_cli,
)
from encoding import available_encodings

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULTS = dict(lr=6e-4, n=12, flag=True, name="out", kwargs={}, lengths=(), anything=None)


def test_parse_args_types():
    c = parse_args(
        ["--lr=1", "--n=3", "--flag=False", "--name=sliding", "--kwargs={'a': 1}"], DEFAULTS
    )
    assert c["lr"] == 1.0 and isinstance(c["lr"], float)  # int accepted for float
    assert c["n"] == 3 and c["flag"] is False and c["name"] == "sliding"
    assert c["kwargs"] == {"a": 1}
    assert parse_args(["--lengths=512,1024"], DEFAULTS)["lengths"] == (512, 1024)
    assert parse_args(["--lengths=512"], DEFAULTS)["lengths"] == (512,)
    assert parse_args(["--name=123"], DEFAULTS)["name"] == "123"  # a string key keeps the text
    assert parse_args(["--name='a b'"], DEFAULTS)["name"] == "a b"
    assert parse_args([], DEFAULTS) == DEFAULTS and DEFAULTS["n"] == 12  # defaults untouched


@pytest.mark.parametrize(
    "arg, message",
    [
        ("--nam=x", "unknown key 'nam' (did you mean 'name'?)"),
        ("--zzz=1", "unknown key 'zzz'"),
        ("--nn=1", "unknown key 'nn' (did you mean 'n'?)"),
        ("--n=1.5", "--n: n must be an int like 12, got 1.5"),
        ("--n=1e3", "write 1000"),
        ("--flag=1", "--flag: flag must be a bool like True, got 1"),
        ("--lr=fast", "lr must be a float"),
        ("--kwargs=[1]", "kwargs must be a dict"),
        ("--flag", "write --flag=VALUE, e.g. --flag=True"),
        ("stray", "unexpected argument 'stray'"),
    ],
)
def test_parse_args_errors(arg, message):
    with pytest.raises(ConfigError) as e:
        parse_args([arg], DEFAULTS)
    assert message in str(e.value)


def test_check_keys_names_the_key_and_converts_as_check_type():
    schema = dict(partition="gpu", time=720, lr=0.1, seeds=[1])
    got = check_keys(dict(time=60, lr=1, seeds=3), schema, "slurm")
    assert got == dict(time=60, lr=1.0, seeds=[3]) and isinstance(got["lr"], float)
    assert check_keys({}, schema, "slurm") == {}
    with pytest.raises(ConfigError) as e:
        check_keys(dict(partiton="a"), schema, "slurm")
    valid = "valid: partition, time, lr, seeds"
    assert str(e.value) == f"slurm: unknown key 'partiton' (did you mean 'partition'?); {valid}"
    with pytest.raises(ConfigError) as e:
        check_keys(dict(time="12:00:00"), schema, "slurm")
    assert str(e.value) == "slurm: time must be an int like 720, got '12:00:00' (a string)"


def test_check_choice_lists_the_choices_and_the_nearest():
    check_choice("--mode", "sliding", ("nonoverlapping", "sliding"))
    with pytest.raises(ConfigError) as e:
        check_choice("--mode", "slidin", ("nonoverlapping", "sliding"))
    want = "--mode must be one of nonoverlapping, sliding; got 'slidin' (did you mean 'sliding'?)"
    assert str(e.value) == want


def test_check_at_least_names_the_first_option_below_its_bound():
    cfg = dict(a=0, b=-1, c=-2)
    check_at_least(cfg, dict(a=0))
    with pytest.raises(ConfigError) as e:
        check_at_least(cfg, dict(a=1, b=0))
    assert str(e.value) == "--a must be >= 1, got 0"
    with pytest.raises(ConfigError) as e:
        check_at_least(cfg, dict(b=0, c=0), dict(b="auto"))
    assert str(e.value) == "--b must be >= 0 (0: auto), got -1"


def test_parse_args_never_evaluates_code():
    c = parse_args(["--name=__import__('os').getcwd()"], DEFAULTS)
    assert c["name"] == "__import__('os').getcwd()"
    with pytest.raises(ConfigError):
        parse_args(["--n=__import__('os').getpid()"], DEFAULTS)


def test_parse_args_positional():
    c = parse_args(["configs/sweeps/demo.py", "--n=2"], {"sweep": "", "n": 1}, positional="sweep")
    assert c == {"sweep": "configs/sweeps/demo.py", "n": 2}


def test_base_is_the_schema():
    base = load_base()
    for key in ["out_dir", "dataset", "data_dir", "encoding", "encoding_kwargs", "n_layer",
                "n_head", "n_embd", "block_size", "batch_size", "gradient_accumulation_steps",
                "learning_rate", "max_iters", "lr_decay_iters", "warmup_iters", "min_lr",
                "weight_decay", "beta1", "beta2", "grad_clip", "decay_lr", "eval_interval",
                "eval_iters", "log_interval", "always_save_checkpoint", "dropout", "bias",
                "device", "dtype", "compile", "seed", "wandb_log", "wandb_project",
                "wandb_run_name", "init_from"]:  # fmt: skip
        assert key in base, key
    assert base["block_size"] == 512 and base["encoding"] in available_encodings()


def test_every_encoding_config_loads():
    files = [f for f in glob.glob(os.path.join(REPO, "configs", "*.py")) if "base.py" not in f]
    names = {os.path.basename(f)[:-3] for f in files}
    assert {"sinusoidal", "learned", "shaw", "t5", "alibi", "rope", "damped_rope", "nope"} <= names
    for f in files:
        c = load_config([f])
        name = os.path.basename(f)[:-3]
        # configs/<encoding>.py, or a named variant: configs/generator_jordan.py, p_rope.py
        assert c["encoding"] in available_encodings()
        assert c["encoding"] == name or c["encoding"] in name.split("_")
        assert c["out_dir"] == f"out/wikitext103/{name}"
        assert c["n_layer"] == load_base()["n_layer"]  # a few lines on top of base, not a copy


def write(path, text):
    path.write_text(text)
    return str(path)


def test_config_file_overrides_and_include(tmp_path):
    (tmp_path / "sub").mkdir()
    write(tmp_path / "small.py", "n_layer = 2\nn_embd = 64\nlearning_rate = 1\n")
    child = write(
        tmp_path / "sub" / "child.py",
        'include("../small.py")\nimport math\nn_head = n_embd // 32\n_scratch = 3\n',
    )
    c = load_config([child, "--n_layer=3"])
    assert (c["n_layer"], c["n_embd"], c["n_head"]) == (3, 64, 2)
    assert c["learning_rate"] == 1.0 and isinstance(c["learning_rate"], float)
    assert "math" not in c and "_scratch" not in c and "include" not in c
    assert c["block_size"] == 512  # everything else from base
    # a file may include several, each of which may include others (paths relative to each file)
    write(tmp_path / "sub" / "heads.py", "n_head = 8\n")
    two = write(tmp_path / "two.py", 'include("sub/child.py")\ninclude("sub/heads.py")\n')
    c = load_config([two])
    assert (c["n_layer"], c["n_head"]) == (2, 8) and "include" not in c


def test_config_file_errors(tmp_path):
    bad = write(tmp_path / "bad.py", "n_layers = 2\n")
    with pytest.raises(ConfigError) as e:
        load_config([bad])
    # base.py's 40-odd keys are --help's to list, not the error line's
    assert str(e.value) == f"{bad}: unknown key 'n_layers' (did you mean 'n_layer'?)"
    typed = write(tmp_path / "typed.py", "compile = 'yes'\n")
    with pytest.raises(ConfigError, match="typed.py: compile must be a bool"):
        load_config([typed])
    broken = write(tmp_path / "broken.py", "n_layer = 2\nn_embd = nope\n")
    with pytest.raises(ConfigError, match=r"broken.py:2: NameError"):
        load_config([broken])
    with pytest.raises(ConfigError, match="config file not found: missing.py"):
        load_config(["missing.py"])
    with pytest.raises(ConfigError, match="expected one config file"):
        load_config([bad, typed])


def run_train(argv, capsys):
    import train

    with pytest.raises(SystemExit) as e:
        run_cli(lambda: train.main(argv))
    return e.value.code, capsys.readouterr().err


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--encoding=rop"],
            "error: unknown encoding 'rop' (did you mean 'rope'?); available:",
        ),
        (["--encoding_kwargs={'num_bucket': 8}", "--encoding=t5"], "has no option 'num_bucket'"),
        (["--init_from=resume", "--out_dir=/nonexistent"], "no checkpoint at /nonexistent/ckpt.pt"),
        (["--init_from=restart"], "init_from must be one of scratch, resume; got 'restart'"),
        (["--attn_backend=fast"], "attn_backend must be one of auto, sdpa, flex; got 'fast'"),
        (["--n_embd=100"], "n_embd (100) must be divisible by n_head (12)"),
        (["--dataset=nosuch", "--data_dir=/nonexistent"], "dataset not found at /nonexistent"),
        # options that construct but fail when run: caught by the dry run before any data work
        (["--encoding=learned", "--encoding_kwargs={'max_len': 8}"], "learned absolute positions"),
        (["--encoding=rope", "--encoding_kwargs={'base': 'x'}"], "encoding_kwargs={'base': 'x'}"),
        (["--encoding=t5", "--encoding_kwargs={'num_buckets': 1}"], "encoding_kwargs="),
        (["--encoding=rope", "--encoding_kwargs={'base': -1.0}"], "scores are not finite"),
        (["--out_dir=/dev/null/run"], "cannot write to /dev/null/run"),
    ],
)
def test_train_user_errors_are_one_line(args, message, capsys):
    code, err = run_train(args + ["--device=cpu"], capsys)
    assert code == 2
    assert err.startswith(message) or message in err
    assert err.count("\n") == 1


def test_unknown_encoding_lists_the_valid_names(capsys):
    code, err = run_train(["--encoding=nosuch", "--device=cpu"], capsys)
    assert code == 2 and all(name in err for name in available_encodings())


def test_cuda_requested_without_cuda(capsys, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    code, err = run_train(["--device=cuda", f"--out_dir={tmp_path}"], capsys)
    assert (code, err) == (2, "error: no CUDA device: pass --device=cpu\n")


def test_command_line_error_has_no_traceback():
    p = subprocess.run(
        [sys.executable, "train.py", "configs/rope.py", "--lerning_rate=1e-3"],
        cwd=REPO, capture_output=True, text=True,
    )  # fmt: skip
    assert p.returncode == 2
    assert p.stderr == "error: unknown key 'lerning_rate' (did you mean 'learning_rate'?)\n"


def repo_imports(path):
    """The repo modules a file imports, at module level or inside functions."""
    import ast

    tree = ast.parse(open(os.path.join(REPO, path)).read())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    return {m for m in names if os.path.exists(os.path.join(REPO, m.split(".")[0] + ".py"))}


def test_configurator_imports_no_repo_module():
    """checkpoint.py imports configurator (UserError): configurator must not import it back."""
    assert "configurator" in repo_imports("checkpoint.py")
    assert repo_imports("configurator.py") == set()


def test_resume_config_comes_from_saved_config(capsys):
    """Resuming without a config file: the saved config, then the overrides; a saved key that is
    no longer a config key is dropped with a note."""
    saved = {"n_layer": 3, "out_dir": "run", "retired_key": 1}
    argv = ["--init_from=resume", "--out_dir=run", "--max_iters=7"]
    c = load_config(argv, saved_config=lambda out_dir: saved if out_dir == "run" else {})
    assert (c["n_layer"], c["max_iters"], c["init_from"]) == (3, 7, "resume")
    assert "retired_key" not in c and c["block_size"] == load_base()["block_size"]
    assert "ignoring key 'retired_key'" in capsys.readouterr().out


@pytest.mark.parametrize(
    "arg, message",
    [
        ("--learning_rate=-1", "learning_rate must be > 0, got -1.0"),
        ("--learning_rate=0", "learning_rate must be > 0, got 0.0"),
        ("--learning_rate=1e999", "learning_rate must be in (0, inf), got inf"),
        ("--min_lr=0.01", "min_lr must be in [0, learning_rate=0.003], got 0.01"),
        ("--beta1=1.5", "beta1 must be in [0, 1), got 1.5"),
        ("--beta2=1", "beta2 must be in [0, 1), got 1.0"),
        ("--weight_decay=-0.1", "weight_decay must be >= 0, got -0.1"),
        ("--grad_clip=-1", "grad_clip must be >= 0, got -1.0"),
        ("--seed=-1", "seed must be in [0, 4294967295], got -1"),
    ],
)
def test_numeric_ranges_are_one_line_errors(arg, message, capsys, tmp_path):
    """Checked before any data or model work: a value out of range would otherwise be a torch
    traceback (AdamW, numpy's seed) or a run that trains nonsense without a word."""
    demo = os.path.join(REPO, "configs", "demo", "rope.py")
    argv = [demo, "--max_iters=1", f"--data_dir={tmp_path}", f"--out_dir={tmp_path}/out", arg]
    assert run_train(argv, capsys) == (2, f"error: {message}\n")


DAMPED = os.path.join(REPO, "configs", "damped_rope.py")  # a GPU config: warmup 500, compiled


@pytest.mark.parametrize(
    "args, device_type, start",
    [
        (["--max_iters=20"], "cuda", "warmup_iters=500 >= max_iters=20: the LR stays in warmup "
         "(last 2.4e-05, peak 0.0006)"),
        (["--lr_decay_iters=100"], "cuda", "lr_decay_iters=100 <= warmup_iters=500: no cosine"),
        (["--device=cpu"], "cpu", "compile=True on CPU: compiling takes seconds to minutes"),
        (["--dataset=demo"], "cuda", "out_dir=out/wikitext103/damped_rope is named after another "
         "dataset than dataset=demo"),
    ],
)  # fmt: skip
def test_config_warnings(args, device_type, start, monkeypatch):
    """One line per setting that makes a run meaningless; off CUDA it points to configs/demo."""
    monkeypatch.setattr(runtime, "has_cpp_compiler", lambda: True)
    lines = runtime.config_warnings(load_config([DAMPED] + args), device_type)
    assert len(lines) == 1 and lines[0].startswith("warning: " + start)
    laptop = "; a small run on a laptop: see configs/demo/*.py"
    assert lines[0].endswith(laptop) == (device_type != "cuda")


def test_shipped_configs_warn_nothing_on_their_device(monkeypatch):
    monkeypatch.setattr(runtime, "has_cpp_compiler", lambda: True)
    for path in glob.glob(os.path.join(REPO, "configs", "*.py")):
        assert runtime.config_warnings(load_config([path]), "cuda") == [], path
    for path in glob.glob(os.path.join(REPO, "configs", "demo", "*.py")):
        assert runtime.config_warnings(load_config([path]), "cpu") == [], path
    # the laptop run of a GPU config: all three warnings at once
    argv = [DAMPED, "--n_layer=1", "--max_iters=20", "--device=cpu", "--dataset=demo"]
    assert len(runtime.config_warnings(load_config(argv), "cpu")) == 3


def test_train_prints_the_warnings_first(capsys, tmp_path):
    import test_train

    data = str(tmp_path / "data")
    test_train.write_corpus(data)
    argv = test_train.tiny_args(data, f"{tmp_path}/out", max_iters=2, warmup_iters=5)
    assert test_train.run_train(argv) == 0
    out = capsys.readouterr().out
    assert out.index("warning: warmup_iters=5 >= max_iters=2") < out.index("model:")
    assert out.count("warning:") == 1
