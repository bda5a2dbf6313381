"""
Configuration for train.py and the scripts: plain-Python config files plus --key=value overrides.

    python train.py configs/rope.py --n_layer=4 --learning_rate=1e-3 --out_dir=out/try

configs/base.py is the schema: every name it assigns is a valid key, and its value is the default
and fixes the key's type. A config file is ordinary Python run in a namespace that already holds
the current values (so `n_head = n_embd // 64` works); it may start from another file with
`include("base.py")` (path relative to the including file). Overrides are parsed with
ast.literal_eval, never eval, so `--lr=__import__('os')` is just a bad value. Strings may be
bare: `--encoding=alibi`. Mistakes (unknown key, wrong type, missing file) raise ConfigError, and
run_cli turns that into one line on stderr and exit code 2, not a traceback.
"""

import ast
import difflib
import os
import sys
import types

REPO = os.path.dirname(os.path.abspath(__file__))
BASE_CONFIG = os.path.join(REPO, "configs", "base.py")


class UserError(Exception):
    """Something the user can fix (bad flag, missing file): printed as one line, exit code 2."""


class ConfigError(UserError):
    """A bad config file or --key=value override."""


def nearest_hint(key, valid):
    close = difflib.get_close_matches(key, list(valid), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _type_name(value):
    return {bool: "a bool", int: "an int", float: "a float", str: "a string", dict: "a dict"}.get(
        type(value), type(value).__name__
    )


def check_type(key, value, default, where):
    """Return value if it fits the type of default (int is accepted for float, a scalar for a
    list/tuple); raise ConfigError naming `where` otherwise. A default of None accepts anything."""
    if default is None:
        return value
    ok = False
    if isinstance(default, bool):
        ok = isinstance(value, bool)  # bool before int: True is an int in Python
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif isinstance(default, (list, tuple)):
        if not isinstance(value, (list, tuple)):
            value = (value,)  # --lengths=512 means the one-element list
        return type(default)(value)
    else:
        ok = isinstance(value, type(default))
    if not ok:
        hint = ""
        if isinstance(default, int) and isinstance(value, float) and value.is_integer():
            hint = f"; write {int(value)}"
        raise ConfigError(
            f"{where}: {key} must be {_type_name(default)} like {default!r}, "
            f"got {value!r} ({_type_name(value)}{hint})"
        )
    return value


def parse_value(text, default):
    """Parse the text of --key=TEXT as a Python literal. Anything that is not a literal is taken as
    a bare string (--mode=sliding); where a string is expected, the text is always the string (so
    --wandb_run_name=123 is the string '123'), unless it is a quoted literal."""
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text
    if isinstance(default, str) and not isinstance(value, str):
        return text
    return value


def parse_args(argv, defaults, positional=None):
    """Parse `--key=value` arguments against `defaults` (a dict of key -> default value) and return
    a new dict: the defaults with the overrides applied, type-checked.

    positional: None (no bare arguments allowed) or the name of the key that a single bare
    argument sets, e.g. parse_args(["configs/sweeps/demo.py"], {"sweep": ""}, positional="sweep").
    -h/--help prints the keys with their defaults and exits.
    """
    config = dict(defaults)
    seen_positional = False
    for arg in argv:
        if arg in ("-h", "--help"):
            _print_help(defaults, positional)
            raise SystemExit(0)
        if not arg.startswith("--"):
            if positional is None or seen_positional:
                raise ConfigError(f"unexpected argument {arg!r}: options are written --key=value")
            config[positional] = arg
            seen_positional = True
            continue
        key, eq, text = arg[2:].partition("=")
        if key not in defaults:
            raise ConfigError(f"unknown key '{key}'{nearest_hint(key, defaults)}")
        if not eq:
            example = "True" if isinstance(defaults[key], bool) else repr(defaults[key])
            raise ConfigError(f"{arg}: write --{key}=VALUE, e.g. --{key}={example}")
        config[key] = check_type(key, parse_value(text, defaults[key]), defaults[key], f"--{key}")
    return config


def _print_help(defaults, positional):
    usage = f"usage: {os.path.basename(sys.argv[0])}"
    usage += f" [{positional.upper()}]" if positional else ""
    print(usage + " [--key=value ...]\nkeys and their defaults:")
    for key, value in defaults.items():
        print(f"  --{key}={value!r}")


# -----------------------------------------------------------------------------
# Config files


def _is_key(name, value):
    """Names a config file assigns that count as config keys (not helpers or imports)."""
    return not name.startswith("_") and not isinstance(
        value, (types.ModuleType, types.FunctionType)
    )


def exec_config_file(path, namespace, schema=None):
    """Run config file `path` in `namespace` (updated in place). With a schema (dict of valid keys
    -> defaults), every key the file assigns is checked: unknown -> ConfigError with the nearest
    valid key; wrong type -> ConfigError naming the file."""
    if not os.path.isfile(path):
        raise ConfigError(f"config file not found: {path}")

    def include(rel):
        # include("base.py") inside configs/demo/x.py means configs/demo/base.py
        exec_config_file(os.path.join(os.path.dirname(path), rel), namespace, schema)

    namespace["include"] = include
    with open(path) as f:
        source = f.read()
    try:
        code = compile(source, path, "exec")
        exec(code, namespace)
    except ConfigError:
        raise
    except Exception as e:  # a mistake inside the config file itself: say where
        line = getattr(e, "lineno", None) or _error_line(e, path)
        raise ConfigError(f"{path}{f':{line}' if line else ''}: {type(e).__name__}: {e}") from e
    finally:
        namespace.pop("include", None)
    namespace.pop("__builtins__", None)
    if schema is not None:
        for name, value in list(namespace.items()):
            if not _is_key(name, value):
                continue
            if name not in schema:
                raise ConfigError(f"{path}: unknown key '{name}'{nearest_hint(name, schema)}")
            namespace[name] = check_type(name, value, schema[name], path)


def _error_line(exc, path):
    tb = exc.__traceback__
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == path:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def load_base(path=BASE_CONFIG):
    """The schema: every key configs/base.py assigns, with its default."""
    namespace = {}
    exec_config_file(path, namespace)
    return {k: v for k, v in namespace.items() if _is_key(k, v)}


def split_argv(argv):
    """(config file or None, list of --key=value overrides)."""
    files = [a for a in argv if not a.startswith("-")]
    overrides = [a for a in argv if a.startswith("-")]
    if len(files) > 1:
        raise ConfigError(f"expected one config file, got {len(files)}: {' '.join(files)}")
    return (files[0] if files else None), overrides


def load_config(argv, base_path=BASE_CONFIG, saved_config=None):
    """The full training config for `python train.py [CONFIG_FILE] [--key=value ...]`:
    configs/base.py, then CONFIG_FILE run on top of it, then the overrides.

    `--init_from=resume` without a config file resumes from the config saved in
    out_dir/ckpt.pt (plus the overrides, e.g. a larger --max_iters): saved_config(out_dir) reads
    it (train.py passes checkpoint.saved_config; this module stays free of torch)."""
    schema = load_base(base_path)
    if "-h" in argv or "--help" in argv:
        _print_help(schema, "config_file")
        raise SystemExit(0)
    config_file, overrides = split_argv(argv)
    # parse the overrides first: they are needed to find the checkpoint when resuming
    cli = parse_args(overrides, schema)
    given = {a[2:].partition("=")[0] for a in overrides}
    config = dict(schema)
    if config_file is not None:
        namespace = dict(schema)
        exec_config_file(config_file, namespace, schema)
        config = {k: namespace[k] for k in schema}
    elif cli["init_from"] == "resume":
        if saved_config is None:
            raise TypeError("load_config: resuming without a config file needs saved_config")
        config = _from_saved(saved_config(cli["out_dir"]), schema)
    config.update({k: cli[k] for k in given})
    return config


def _from_saved(saved, schema):
    """base.py's defaults updated with the config a checkpoint was trained with."""
    config = dict(schema)
    for k, v in saved.items():
        if k in schema:
            config[k] = v
        else:
            print(f"note: ignoring key '{k}' saved in the checkpoint (no longer a config key)")
    return config


def run_cli(main):
    """Run main() and turn user errors into `error: <message>` on stderr and exit code 2."""
    try:
        main()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    except Exception as e:
        # data/prepare.py's PrepareError is a user error too; matched by name so that scripts
        # which never touch data do not import it
        if type(e).__name__ != "PrepareError":
            raise
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
