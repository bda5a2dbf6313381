"""T5 relative bias (Raffel et al. 2020, "Exploring the Limits of Transfer Learning with a Unified
Text-to-Text Transformer"): a learned scalar per (distance bucket, head) added to the logits,

    logit(t, s) = q_t . k_s / sqrt(d) + b[bucket(t - s), h]

one table shared by every layer. Causal bucketing (num_buckets B = 32, max_distance M = 128) of
n = max(t - s, 0): n < B/2 -> n (exact); otherwise logarithmic,
    B/2 + floor(log(n / (B/2)) / log(M / (B/2)) * (B/2)), capped at B - 1,
so every distance from about M on shares the last bucket. Real-valued distances (float times, a
learned clock) are floored first, n = max(floor(t - s), 0), so a learned clock gets no gradient.
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
    rounds_distances = True  # a learned clock would get no gradient: refused (model.make_clock)

    def __init__(self, config, num_buckets=32, max_distance=128):
        super().__init__(config)
        self.num_buckets, self.max_distance = num_buckets, max_distance
        self.table = nn.Parameter(torch.randn(num_buckets, config.n_head) * 0.02)

    def bias(self, q, k, pos_q, pos_k):
        n = relative_distance(pos_q, pos_k).floor().long().clamp(min=0)  # (Tq, Tk) | (B|1,H|1,..)
        buckets = t5_bucket(n, self.num_buckets, self.max_distance)
        # head h reads its own column at its own buckets: the head diagonal of table[buckets],
        # never the (B, H, Tq, Tk, H) tensor that a clock per head would make of it; for positions
        # (T,) no permuted copy either (forward + backward 2x faster than table[buckets].permute
        # at H = 12, a 128 x 256 block, measured on CPU)
        heads = torch.arange(self.n_head, device=buckets.device)[:, None, None]
        bias = self.table.t()[heads, buckets].float()  # (H, Tq, Tk) | (B|1, H, Tq, Tk)
        return bias[None] if bias.dim() == 3 else bias  # (1, H, Tq, Tk) as the other biases

    def score_mod(self, q, pos):  # the same bias, element-wise, for FlexAttention
        table, t = self.table, pos

        def mod(score, b, h, i, j):
            n = (t[i] - t[j]).floor().long().clamp(min=0)
            return score + table[t5_bucket(n, self.num_buckets, self.max_distance), h]

        return mod
