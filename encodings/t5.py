"""T5 relative bias (Raffel et al. 2020): logit(t, s) = q_t . k_s / sqrt(d) + b[bucket(t - s), h],
one learned table for all layers. Causal buckets (B = num_buckets, M = max_distance) of
n = max(floor(t - s), 0): n < B/2 exact, else B/2 + floor(log(n / (B/2)) / log(M / (B/2)) * B/2),
at most B - 1. Distances are floored, so a learned clock would get no gradient (refused).
"""

import math

import torch
import torch.nn as nn

from encoding import Encoding, relative_distance


def t5_bucket(n, num_buckets=32, max_distance=128):
    """Bucket index of non-negative integer distances n (a long tensor)."""
    exact = num_buckets // 2
    log_ratio = torch.log(n.clamp(min=1).float() / exact) / math.log(max_distance / exact)
    large = (exact + (log_ratio * (num_buckets - exact)).long()).clamp(max=num_buckets - 1)
    return torch.where(n < exact, n, large)


class T5Bias(Encoding):
    rounds_distances = True

    def __init__(self, config, num_buckets=32, max_distance=128):
        super().__init__(config)
        self.num_buckets, self.max_distance = num_buckets, max_distance
        self.table = nn.Parameter(torch.randn(num_buckets, config.n_head) * 0.02)

    def bias(self, q, k, pos_q, pos_k):
        n = relative_distance(pos_q, pos_k).floor().long().clamp(min=0)  # (Tq, Tk) | (B|1,H|1,..)
        buckets = t5_bucket(n, self.num_buckets, self.max_distance)
        # head h reads its own column at its own buckets: never table[buckets] (.., Tq, Tk, H)
        heads = torch.arange(self.n_head, device=buckets.device)[:, None, None]
        bias = self.table.t()[heads, buckets].float()  # (H, Tq, Tk) | (B|1, H, Tq, Tk)
        return bias[None] if bias.dim() == 3 else bias  # (1, H, Tq, Tk) as the other biases

    def score_mod(self, q, pos):  # the same bias, element-wise, for FlexAttention
        table, t, B, M = self.table, pos, self.num_buckets, self.max_distance
        return lambda score, b, h, i, j: (
            score + table[t5_bucket((t[i] - t[j]).floor().long().clamp(min=0), B, M), h]
        )
