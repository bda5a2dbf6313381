"""Helpers shared by several test files (importable: pytest puts tests/ on sys.path)."""

import importlib.util
import json
from pathlib import Path

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves, tree_map

from encoding import available_encodings


class MaxStorage(TorchDispatchMode):
    """Records the largest tensor storage (in elements) any aten op produces."""

    def __init__(self):
        super().__init__()
        self.largest, self.op = 0, None

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                n = t.untyped_storage().nbytes() // t.element_size()
                if n > self.largest:
                    self.largest, self.op = n, func
        return out


def write_token_dataset(root, splits, vocab_size, words=None):
    """root/data/tiny/{split}.bin from {split: uint16 array} and the meta.json data/prepare.py
    would write (byte tokenizer); words defaults to tokens // 5. Returns root/data."""
    d = root / "data" / "tiny"
    d.mkdir(parents=True)
    counts = {}
    for split, tokens in splits.items():
        tokens.tofile(d / f"{split}.bin")
        n = len(tokens)
        counts[split] = {"tokens": n, "bytes": n, "words": words or n // 5}
    meta = {
        "name": "tiny",
        "source": "test",
        "tokenizer": "bytes",
        "vocab_size": vocab_size,
        "dtype": "uint16",
        "eot_token": None,
        "splits": counts,
    }
    (d / "meta.json").write_text(json.dumps(meta))
    return root / "data"


# Every encoding at its defaults, plus the variants that take other code paths. Tests that must
# cover "every encoding" iterate this list; a new encoding file is picked up automatically.
_JORDAN = [
    {"type": "jordan", "count": 2, "size": 4, "lam": -0.02},
    {"type": "rotation", "count": "rest"},
]
_NILPOTENT = [{"type": "zero", "count": "rest"}, {"type": "nilpotent"}]
ENCODING_CASES = [(name, {}) for name in available_encodings()]
ENCODING_CASES += [
    ("generator", {"blocks": _JORDAN}),
    ("generator", {"blocks": _NILPOTENT}),
    ("damped_rope", {"decay": "weight"}),
    ("huang", {"method": 1}),
    ("huang", {"method": 3}),
    ("rope", {"p": 0.5}),
]


def case_id(name, kwargs):
    """A readable pytest id: 'rope', 'damped_rope-decay=weight', 'generator-jordan+rotation'."""
    if "blocks" in kwargs:
        return f"{name}-{'+'.join(b['type'] for b in kwargs['blocks'])}"
    return "-".join([name] + [f"{k}={v}" for k, v in kwargs.items()])


ENCODING_IDS = [case_id(n, k) for n, k in ENCODING_CASES]

# Python loops over an encoding's hidden units, frequencies or table rows: each term is nodes of
# a compiled graph (traced one by one) and an op of eager FlexAttention's score_mod. Fewer terms
# run the same code several times faster; tests of code paths, not of the defaults, take these.
FEWER_TERMS = {
    "fire": {"mlp_width": 4},
    "sandwich": {"d_bar": 8},
    "huang": {"max_relative_position": 4},
}


def fewer_terms(name, kwargs):
    return {**FEWER_TERMS.get(name, {}), **kwargs}


def round_to_tf32(x):
    """x (float32) rounded to TF32's 10-bit mantissa, to nearest (ties away from zero) as the
    GPU's conversion does: add half of the 13 dropped bits' unit to the magnitude, then drop them.
    Exponent range, infinities and NaN are float32's. Differentiable (straight through)."""
    bits = x.detach().contiguous().view(torch.int32)
    rounded = ((bits + 0x1000) & ~0x1FFF).view(torch.float32)
    if not x.requires_grad:
        return rounded
    return x + (rounded - x).detach()  # gradients pass straight through, as they do on a GPU


class EmulateTF32(TorchFunctionMode):
    """Within this mode, the float32 inputs of every matmul-like call (matmul, @, mm, bmm, einsum,
    linear, baddbmm, addmm) and SDPA's query, key and value are rounded to TF32 first: what
    torch.backends.cuda.matmul.allow_tf32 = True does to them on an Ampere+ GPU. Products and
    sums stay float32, as on tensor cores; elementwise operations, and SDPA's additive attn_mask
    (added to the scores in float32 by every kernel), are not rounded."""

    MATMULS = {
        torch.matmul, torch.Tensor.matmul, torch.Tensor.__matmul__, torch.Tensor.__rmatmul__,
        torch.mm, torch.Tensor.mm, torch.bmm, torch.Tensor.bmm, torch.einsum,
        torch.nn.functional.linear, torch.baddbmm, torch.addmm,
    }  # fmt: skip

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        rnd = lambda t: (
            round_to_tf32(t) if isinstance(t, torch.Tensor) and t.dtype == torch.float32 else t
        )
        if func in self.MATMULS:
            args, kwargs = tree_map(rnd, (args, kwargs))
        elif func is torch.nn.functional.scaled_dot_product_attention:
            args = tuple(tree_map(rnd, args[:3])) + tuple(args[3:])
            kwargs = {k: rnd(v) if k in ("query", "key", "value") else v for k, v in kwargs.items()}
        return func(*args, **kwargs)


def load_script(name):
    """scripts/<name>.py as a module (scripts/ is not a package): its functions, for tests."""
    path = Path(__file__).resolve().parent.parent / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
