"""Helpers shared by several test files (importable: pytest puts tests/ on sys.path)."""

import json

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves


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
