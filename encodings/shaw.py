"""Relative position representations (Shaw, Uszkoreit, Vaswani 2018, "Self-Attention with
Relative Position Representations"), key side only:

    logit(i, j) = q_i . (k_j + a_clip(j - i, K)) / sqrt(d),   clip(x, K) = max(-K, min(K, x))

with learned vectors a of size d (head dim), shared by the heads of a layer, one set per layer.
The paper has 2K + 1 of them; under a causal mask only j - i in [-K, 0] ever occurs, so we keep
those K + 1. Its value-side term a^V did not help in the paper and is left out. The relative
logits are computed efficiently: q . a^T is (B, H, T, K + 1), then gathered by clipped distance
into (B, H, T, T) -- never a (T, T, d) tensor. Real-valued distances (float times) are rounded
to the nearest integer (halves to even, torch.round) before clipping, so a learned clock would
get no gradient.
"""

import math

import torch
import torch.nn as nn

from encoding import Encoding, compute_dtype, relative_distance


def relative_logits(x, rel):
    """x . a_r / sqrt(d) for every row a_r of rel (R, d), in float32 at least: (B, H, T, R).
    Scaled here, not after the gather: a pass over R columns, not over Tk."""
    out = x @ rel.to(x.dtype).T
    return out.to(compute_dtype(x.dtype)) / math.sqrt(x.size(-1))


class Shaw(Encoding):
    rounds_distances = True  # a learned clock would get no gradient: refused (model.make_clock)
    per_layer = True

    def __init__(self, config, max_relative_position=16):
        super().__init__(config)
        self.K = max_relative_position
        # row r holds a_{r - K}: distances -K .. 0
        self.rel = nn.Parameter(torch.randn(self.K + 1, self.head_dim) * 0.02)

    def rel_logits(self, q):
        """q_i . a_r / sqrt(d) for r = -K .. 0: (B, H, Tq, K + 1)."""
        return relative_logits(q, self.rel)

    def bias(self, q, k, pos_q, pos_k):
        rel_logits = self.rel_logits(q)
        offset = (-relative_distance(pos_q, pos_k)).round().long()  # j - i: (B|1, H|1,) Tq, Tk
        index = offset.clamp(-self.K, 0) + self.K
        B, H, Tq, _ = rel_logits.shape
        return rel_logits.gather(-1, index.expand(B, H, Tq, index.size(-1)))

    def score_mod(self, q, pos):  # the same bias, element-wise, for FlexAttention
        rel_logits = self.rel_logits(q)  # (B, H, T, K + 1)
        K = self.K

        def mod(score, b, h, i, j):
            index = (pos[j] - pos[i]).round().long().clamp(-K, 0) + K
            return score + rel_logits[b, h, i, index]

        return mod
