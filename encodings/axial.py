"""Axial positions (Kitaev, Kaiser, Levskaya 2020, "Reformer"): a learned absolute table
factored in two, P[n] = concat(P1[n mod n1], P2[n // n1]), added to the tokens; P1 (n1, d1) the
fast axis, P2 (n2, d2) the slow one: n1 n2 positions, none past them. Defaults: shape the
factorisation of block_size (max_train_position if randomized) closest to square, the larger
factor fast; dims (n_embd - n_embd // 4, n_embd // 4), Hugging Face's split. Init and weight
decay as the learned table's, so that learned vs axial compares the factorisation alone.
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
    pair = isinstance(value, list | tuple) and len(value) == 2
    if not (pair and all(isinstance(v, int) and v > 0 for v in value)):
        raise ValueError(f"axial {name} must be two positive integers, got {value!r}")
    return tuple(value)


class Axial(Learned):  # Learned's embed() does the lookup: its position checks, then table[pos]
    decayed_parameters = ("table1", "table2")  # weight-decayed as the learned table is

    def __init__(self, config, shape=None, dims=None):
        Encoding.__init__(self, config)  # not Learned.__init__: no (max_len, n_embd) table here
        D = config.n_embd
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
        """The (n1 n2, n_embd) table P the two factors stand for."""
        n1, n2 = self.shape
        fast = self.table1.repeat(n2, 1)  # row n: P1[n mod n1]
        slow = self.table2.repeat_interleave(n1, dim=0)  # row n: P2[n // n1]
        return torch.cat((fast, slow), dim=-1)
