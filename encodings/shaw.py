"""Relative position representations (Shaw, Uszkoreit, Vaswani 2018), key side only:

    logit(i, j) = q_i . (k_j + a_clip(j - i, K)) / sqrt(d),   clip(x, K) = max(-K, min(K, x))

a learned vector a per clipped distance, per layer, shared by its heads; causal, so only the K + 1
of j - i in [-K, 0]. Computed as q . a^T gathered by distance, never a (T, T, d) tensor. Real
distances are rounded, so a learned clock would get no gradient (refused).
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
    compiled_flex_grad = False  # score_mod captures tensors computed in the graph (encoding.py)
    rounds_distances = True
    per_layer = True

    def __init__(self, config, max_relative_position=16):
        super().__init__(config)
        self.K = max_relative_position
        # row r holds a_{r - K}: distances -K .. 0
        self.rel = nn.Parameter(torch.randn(self.K + 1, self.head_dim) * 0.02)

    def bias(self, q, k, pos_q, pos_k):
        rel_logits = relative_logits(q, self.rel)  # q_i . a_r / sqrt(d), r = -K .. 0
        offset = (-relative_distance(pos_q, pos_k)).round().long()  # j - i: (B|1, H|1,) Tq, Tk
        index = offset.clamp(-self.K, 0) + self.K
        B, H, Tq, _ = rel_logits.shape
        return rel_logits.gather(-1, index.expand(B, H, Tq, index.size(-1)))

    def score_mod(self, q, pos):  # the same bias, element-wise, for FlexAttention
        rel_logits, K = relative_logits(q, self.rel), self.K  # (B, H, T, K + 1)
        return lambda score, b, h, i, j: (
            score + rel_logits[b, h, i, (pos[j] - pos[i]).round().long().clamp(-K, 0) + K]
        )
