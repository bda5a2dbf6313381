"""Learned absolute positions (GPT-2, nanoGPT's `wpe`): x_t = wte[token_t] + P[t], P a trained
(max_len, D) table, max_len = block_size (max_train_position when randomized); no row past it.
"""

import torch
import torch.nn as nn

from encoding import Encoding


class Learned(Encoding):
    decayed_parameters = ("table",)  # weight-decayed like GPT-2's wpe (nanoGPT does the same)

    def __init__(self, config, max_len=None):
        super().__init__(config)
        self.max_len = max_len or config.max_train_position or config.block_size
        self.table = nn.Parameter(torch.randn(self.max_len, config.n_embd) * 0.02)

    def embed(self, pos):
        """P[pos]: (T,) -> (T, C), or per sequence (B, T) -> (B, T, C)."""
        # checked on the CPU only: on a GPU the check would wait for the device every forward (a
        # position past the table trips the device's index assert there)
        if pos.device.type == "cpu" and not torch.compiler.is_compiling() and pos.numel() > 0:
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
