"""Helpers shared by several test files (importable: pytest puts tests/ on sys.path)."""

import json

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from model import available_encodings


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
]


def case_id(name, kwargs):
    """A readable pytest id: 'rope', 'damped_rope-decay=weight', 'generator-jordan+rotation'."""
    if "blocks" in kwargs:
        return f"{name}-{'+'.join(b['type'] for b in kwargs['blocks'])}"
    return "-".join([name] + [f"{k}={v}" for k, v in kwargs.items()])


ENCODING_IDS = [case_id(n, k) for n, k in ENCODING_CASES]
