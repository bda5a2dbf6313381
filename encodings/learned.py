"""Learned absolute position embeddings (GPT-2; BERT): a trained table added to the tokens,

    x_t = wte[token_t] + P[t],   P in R^{max_len x D}

nanoGPT's baseline (its `wpe`). The table has no row for a position it never saw, so the model
cannot run past max_len (default: block_size, or max_train_position when training positions are
randomized): it raises a clear error instead.
"""

import torch
import torch.nn as nn

from encoding import Encoding


class Learned(Encoding):
    decayed_parameters = ("table",)  # weight-decayed like GPT-2's wpe (nanoGPT does the same)

    def __init__(self, config, max_len=None):
        super().__init__(config)
        # randomized training positions (Ruoss et al. 2023) reach max_train_position: a row each
        self.max_len = max_len or config.max_train_position or config.block_size
        self.table = nn.Parameter(torch.randn(self.max_len, config.n_embd) * 0.02)

    def embed(self, pos):
        """P[pos]: (T,) -> (T, C), or per sequence (B, T) -> (B, T, C)."""
        # positions are checked where they have values: not while compiling, not on the meta
        # device (tests run the model there to find host-to-device copies)
        if not torch.compiler.is_compiling() and not pos.is_meta and pos.numel() > 0:
            if pos.is_floating_point() and not torch.equal(pos, pos.round()):
                raise ValueError("the learned position table needs integer positions")
            lo, hi = int(pos.min()), int(pos.max())
            if lo < 0 or hi >= self.max_len:
                raise ValueError(
                    f"learned absolute positions go from 0 to {self.max_len - 1}, got {lo}..{hi}:"
                    " a learned table cannot extrapolate; use a length <= its table size or a"
                    " relative encoding"
                )
        return self.table[pos.long()]
