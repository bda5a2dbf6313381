"""ALiBi (Press, Smith, Lewis 2022, "Train Short, Test Long"): no position embedding; each head
penalises distance linearly, logit(t, s) = q_t . k_s / sqrt(d) - m_h (t - s), with fixed slopes
m_h: for H a power of two geometric, starting at and with ratio 2^(-8/H); otherwise, with c the
largest power of two below H, the c slopes for c heads, then the first H - c of every other slope
of the 2c-head sequence.
"""

import math

import torch

from encoding import Encoding, relative_distance


def alibi_slopes(n_head):
    """The paper's per-head slopes m_h, as a list of floats."""

    def geometric(n):
        start = 2.0 ** (-8.0 / n)
        return [start ** (i + 1) for i in range(n)]

    if math.log2(n_head).is_integer():
        return geometric(n_head)
    c = 2 ** math.floor(math.log2(n_head))
    return geometric(c) + geometric(2 * c)[0::2][: n_head - c]


class ALiBi(Encoding):
    def __init__(self, config):
        super().__init__(config)
        self.register_buffer("slopes", torch.tensor(alibi_slopes(config.n_head)), persistent=False)

    def bias(self, q, k, pos_q, pos_k):
        dist = relative_distance(pos_q, pos_k).float()  # (Tq, Tk) or (B|1, H|1, Tq, Tk)
        return -(self.slopes.float()[None, :, None, None] * dist)  # (1|B, H, Tq, Tk)

    def score_mod(self, q, pos):  # the same bias, element-wise, for FlexAttention
        slopes, t = self.slopes.float(), pos  # t - s in pos's dtype, then float32, as bias()
        return lambda score, b, h, i, j: score - slopes[h] * (t[i] - t[j]).float()
