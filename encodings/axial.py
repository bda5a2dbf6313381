"""Axial position embeddings (Kitaev, Kaiser, Levskaya 2020, "Reformer: The Efficient
Transformer"): a learned absolute table factored into two small ones, added to the tokens,

    x_n = wte[token_n] + P[n],   P[n] = concat(P1[n mod n1], P2[n // n1])

with P1 in R^{n1 x d1} (the fast axis), P2 in R^{n2 x d2} (the slow axis), d1 + d2 = n_embd.
It covers N_max = n1 n2 positions with d1 n1 + d2 n2 parameters instead of N_max n_embd. Like
the learned table it has no row past N_max: positions must be integers in [0, N_max), and the
model raises the learned table's error otherwise.

Options, with defaults derived from the config:
- shape = (n1, n2): default the exact factorisation of block_size (of max_train_position when
  training positions are randomized) closest to square, the larger factor on the fast axis
  (512 -> (32, 16), 64 -> (8, 8); a prime gives (block_size, 1)), so N_max is the learned
  table's size. Hugging Face's Reformer (axial_pos_shape, whose product must equal the training
  length) factors the same way, its first factor the slow axis: (64, 64) by default, (128, 512)
  for enwik8; its fast axis is never the smaller one.
- dims = (d1, d2): default d1 = n_embd - n_embd // 4 on the fast axis, d2 = n_embd // 4 on the
  slow one, the split of every Hugging Face Reformer config (axial_pos_embds_dim (64, 192) of
  256, (256, 768) of 1024, slow axis first).
Init N(0, 0.02) for both tables, so that P has the learned table's (nanoGPT's wpe) per-channel
scale; Hugging Face initialises them with std axial_norm_std = 1.0, on a model whose embeddings
are scaled differently. Both tables are weight-decayed, as the learned table is (GPT-2's wpe):
the same kind of parameter under the same rule, so that learned vs axial compares the
factorisation, not the regularisation.
"""

import math

import torch
import torch.nn as nn

from encoding import Encoding

from .learned import Learned


def default_shape(n):
    """(n1, n2) with n1 n2 = n, n1 >= n2, n1 the smallest such divisor (closest to square)."""
    n1 = next(a for a in range(math.isqrt(n), n + 1) if n % a == 0 and a * a >= n)
    return n1, n // n1


def positive_pair(name, value):
    if not (
        isinstance(value, list | tuple)
        and len(value) == 2
        and all(isinstance(v, int) and v > 0 for v in value)
    ):
        raise ValueError(f"axial {name} must be two positive integers, got {value!r}")
    return tuple(value)


class Axial(Learned):
    """Learned's embed() does the lookup: its position checks, then self.table[pos]."""

    decayed_parameters = ("table1", "table2")  # weight-decayed as the learned table is

    def __init__(self, config, shape=None, dims=None):
        Encoding.__init__(self, config)  # not Learned.__init__: no (max_len, n_embd) table here
        D = config.n_embd
        # the positions training reaches: block_size, or the randomized ones' bound
        name = "max_train_position" if config.max_train_position else "block_size"
        need = config.max_train_position or config.block_size
        default = default_shape(need), (D - D // 4, D // 4)
        n1, n2 = default[0] if shape is None else positive_pair("shape", shape)
        d1, d2 = default[1] if dims is None else positive_pair("dims", dims)
        if d1 + d2 != D:
            raise ValueError(f"axial dims {(d1, d2)} must add up to n_embd={D}")
        if d2 == 0:
            raise ValueError(f"axial needs n_embd >= 4 for its default dims, got {D}")
        if n1 * n2 < need:
            raise ValueError(
                f"axial shape {(n1, n2)} covers {n1 * n2} positions, fewer than"
                f" {name}={need}: make n1 * n2 >= {name}"
            )
        self.shape, self.dims, self.max_len = (n1, n2), (d1, d2), n1 * n2
        self.table1 = nn.Parameter(torch.randn(n1, d1) * 0.02)  # P1, fast axis: n mod n1
        self.table2 = nn.Parameter(torch.randn(n2, d2) * 0.02)  # P2, slow axis: n // n1

    @property
    def table(self):
        """The (n1 n2, n_embd) table P that the two factors stand for: row n is
        concat(P1[n mod n1], P2[n // n1])."""
        n1, n2 = self.shape
        fast = self.table1.repeat(n2, 1)  # row n: P1[n mod n1]
        slow = self.table2.repeat_interleave(n1, dim=0)  # row n: P2[n // n1]
        return torch.cat((fast, slow), dim=-1)
