"""
Configuration for train.py and the scripts: plain-Python config files plus --key=value overrides.

    python train.py configs/rope.py --n_layer=4 --learning_rate=1e-3 --out_dir=out/try

configs/base.py is the schema: every name it assigns is a key, its value the default and the type
(docs/training.md). Overrides are parsed with ast.literal_eval, never eval. Mistakes raise
ConfigError: run_cli prints one line, exit code 2.
"""

import ast
import difflib
import functools
import io
import os
import sys
import tokenize
import traceback
import types

BASE_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs", "base.py")
CONFIG_USAGE = "[CONFIG_FILE] [--key=value ...]\n  CONFIG_FILE: e.g. configs/rope.py (over base.py)"


class UserError(Exception):
    """Something the user can fix (bad flag, missing file): printed as one line, exit code 2."""


class ConfigError(UserError):
    """A bad config file or --key=value override."""


def nearest_hint(key, valid):
    """The " (did you mean 'x'?)" of every message: the name in valid nearest to key, or ""."""
    close = difflib.get_close_matches(key, list(valid), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _type_name(value):
    names = {bool: "a bool", int: "an int", float: "a float", str: "a string", dict: "a dict"}
    return names.get(type(value), type(value).__name__)


def check_type(key, value, default, where):
    """value if it fits the type of default (an int for a float, a scalar for a list/tuple; a
    default of None takes anything), else ConfigError naming `where`."""
    if default is None:
        return value
    if isinstance(default, list | tuple):  # --lengths=512 means the one-element list
        return type(default)(value if isinstance(value, list | tuple) else (value,))
    is_bool = isinstance(value, bool)  # True is an int in Python, yet no valid int or float
    if isinstance(default, float) and isinstance(value, int | float) and not is_bool:
        return float(value)
    if not isinstance(value, type(default)) or is_bool != isinstance(default, bool):
        whole = isinstance(default, int) and isinstance(value, float) and value.is_integer()
        hint = f"; write {int(value)}" if whole else ""
        raise ConfigError(
            f"{where}: {key} must be {_type_name(default)} like {default!r}, "
            f"got {value!r} ({_type_name(value)}{hint})"
        )
    return value


def check_keys(d, schema, where):
    """d, each value checked (and converted) by check_type against its key's default in schema."""
    for key in d:
        if key not in schema:  # a long schema (configs/base.py's) is listed by --help instead
            valid = f"; valid: {', '.join(schema)}" if len(schema) <= 12 else ""
            raise ConfigError(f"{where}: unknown key '{key}'{nearest_hint(key, schema)}{valid}")
    return {k: check_type(k, v, schema[k], where) for k, v in d.items()}


def check_choice(name, value, choices):
    """ConfigError unless value is one of choices (name: how the user wrote the key)."""
    if value not in choices:
        valid = list(map(str, choices))
        hint = nearest_hint(str(value), valid)
        raise ConfigError(f"{name} must be one of {', '.join(valid)}; got {value!r}{hint}")


def check_at_least(cfg, lows, means=()):
    """ConfigError for the first --key of cfg below lows[key] (means[key]: what that bound does)."""
    for key, low in lows.items():
        if cfg[key] < low:
            note = f" ({low}: {means[key]})" if key in means else ""
            raise ConfigError(f"--{key} must be >= {low}{note}, got {cfg[key]}")


def parse_value(text, default):
    """The text of --key=TEXT as a Python literal, else as a bare string (--mode=sliding). Where a
    string is expected the text is the string (--wandb_run_name=123), unless quoted."""
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text
    return text if isinstance(default, str) and not isinstance(value, str) else value


@functools.cache
def key_comments(path):
    """{name: the comment that explains it} in the Python source at path, for the names assigned
    at module level (configs/base.py) or as keywords (DEFAULTS = dict(...)): the comment ending
    the assignment, else the comment lines just above it. A name's first assignment counts."""
    with open(path) as f:
        text = f.read()
    lines, tree = text.splitlines(), ast.parse(text)
    tokens = tokenize.generate_tokens(io.StringIO(text).readline)
    notes = {t.start[0]: t.string.lstrip("#").strip() for t in tokens if t.type == tokenize.COMMENT}
    found = [(n.lineno, n.end_lineno, t.id) for n in tree.body if isinstance(n, ast.Assign)
             for t in n.targets if isinstance(t, ast.Name)]  # fmt: skip
    found += [(n.lineno, n.end_lineno, n.arg) for n in ast.walk(tree) if isinstance(n, ast.keyword)]
    out = {}
    for start, end, name in sorted(f for f in found if f[2]):
        above = start - 1  # the comment-only lines right above
        while above > 0 and lines[above - 1].lstrip().startswith("#"):
            above -= 1
        out.setdefault(name, notes.get(end) or " ".join(notes[i] for i in range(above + 1, start)))
    return out


def fmt_float(x, decimals=2):
    """x with `decimals` decimals, or in scientific notation from 1e6 on: a diverged model's
    perplexity has dozens of digits. What every printed or tabulated figure goes through."""
    return f"{x:.{decimals}{'e' if abs(x) >= 1e6 else 'f'}}"


def parse_args(argv, defaults, positional=None, usage=None, sources=None):
    """`defaults` (key -> default) with the `--key=value` overrides of argv applied, type-checked.
    positional: the key a single bare argument sets (None: none allowed). -h/--help prints usage,
    then each key, its default and its comment in the first of `sources` (default: the caller's
    file, where defaults is written) that has one."""
    if "-h" in argv or "--help" in argv:
        bare = f"[{positional.upper()}] " if positional else ""
        print(f"usage: {os.path.basename(sys.argv[0])} {usage or f'{bare}[--key=value ...]'}")
        sources = sources or [sys._getframe(1).f_code.co_filename]
        notes = {k: v for path in reversed(sources) for k, v in key_comments(path).items() if v}
        keys = {k: f"--{k}={v!r}" for k, v in defaults.items()}
        width = min(32, max(map(len, keys.values()), default=0))
        print("keys, with their defaults:")
        print("\n".join(f"  {o:<{width}}  {notes.get(k, '')}".rstrip() for k, o in keys.items()))
        raise SystemExit(0)
    config, seen_positional = dict(defaults), False
    for arg in argv:
        if not arg.startswith("--"):
            if positional is None or seen_positional or arg.startswith("-"):
                raise ConfigError(f"unexpected argument {arg!r}: options are written --key=value")
            config[positional], seen_positional = arg, True
            continue
        key, eq, text = arg[2:].partition("=")
        if key not in defaults:
            raise ConfigError(f"unknown key '{key}'{nearest_hint(key, defaults)}")
        if not eq:
            example = "True" if isinstance(defaults[key], bool) else repr(defaults[key])
            raise ConfigError(f"{arg}: write --{key}=VALUE, e.g. --{key}={example}")
        config[key] = check_type(key, parse_value(text, defaults[key]), defaults[key], f"--{key}")
    return config


def _is_key(name, value):
    """Names a config file assigns that count as config keys (not helpers or imports)."""
    return not name.startswith("_") and not isinstance(value, types.ModuleType | types.FunctionType)


def exec_config_file(path, namespace, schema=None):
    """Run config file `path` in `namespace` (updated in place); the config keys it then holds,
    checked if a schema (valid key -> default) is given: unknown or mistyped -> ConfigError."""
    if not os.path.isfile(path):
        raise ConfigError(f"config file not found: {path}")
    here = os.path.dirname(path)  # include("base.py") in configs/demo/x.py: configs/demo/base.py
    outer = namespace.get("include")  # an including file's, restored when this one ends
    namespace["include"] = lambda rel: exec_config_file(os.path.join(here, rel), namespace, schema)
    try:
        with open(path) as f:
            exec(compile(f.read(), path, "exec"), namespace)
    except ConfigError:
        raise
    except Exception as e:  # a mistake inside the config file itself: say where
        lines = [f.lineno for f in traceback.extract_tb(e.__traceback__) if f.filename == path]
        line = getattr(e, "lineno", None) or (lines[-1] if lines else None)
        raise ConfigError(f"{path}{f':{line}' if line else ''}: {type(e).__name__}: {e}") from e
    finally:
        if outer is None:
            del namespace["include"]
        else:
            namespace["include"] = outer
    namespace.pop("__builtins__", None)
    keys = {k: v for k, v in namespace.items() if _is_key(k, v)}
    namespace.update(keys if schema is None else check_keys(keys, schema, path))
    return {k: namespace[k] for k in keys}


def load_base(path=BASE_CONFIG):
    """The schema: every key configs/base.py assigns, with its default."""
    return exec_config_file(path, {})


def split_argv(argv):
    """(config file or None, list of --key=value overrides)."""
    files = [a for a in argv if not a.startswith("-")]
    if len(files) > 1:
        raise ConfigError(f"expected one config file, got {len(files)}: {' '.join(files)}")
    return (files[0] if files else None), [a for a in argv if a.startswith("-")]


def load_config(argv, base_path=BASE_CONFIG, saved_config=None):
    """The config of `python train.py [CONFIG_FILE] [--key=value ...]`: configs/base.py, then
    CONFIG_FILE, then the overrides. `--init_from=resume` without a file starts from the config
    saved in out_dir: saved_config(out_dir) reads it (this module stays free of torch)."""
    schema = load_base(base_path)
    config_file, overrides = split_argv(argv)
    # first: they say where the checkpoint to resume is
    cli = parse_args(overrides, schema, usage=CONFIG_USAGE, sources=[base_path])
    config = dict(schema)
    if config_file is not None:
        config = exec_config_file(config_file, config, schema)  # every key of schema, in order
    elif cli["init_from"] == "resume":
        for k, v in saved_config(cli["out_dir"]).items():
            if k in schema:
                config[k] = v
            else:
                print(f"note: ignoring key '{k}' saved in the checkpoint (no longer a config key)")
    config.update({k: cli[k] for k in (a[2:].partition("=")[0] for a in overrides)})
    return config


def run_cli(main):
    """Run main(); a user error becomes `error: <message>` on stderr and exit code 2 (also
    data/prepare.py's PrepareError, matched by name: scripts that touch no data never import it)."""
    try:
        main()
    except Exception as e:
        if not isinstance(e, UserError) and type(e).__name__ != "PrepareError":
            raise
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
