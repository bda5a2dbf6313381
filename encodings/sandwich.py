"""Sandwich (Chi, Fan, Rudnicky, Ramadge 2023, "Dissecting Transformer Length Extrapolation via the
Lens of Receptive Field Analysis"): no parameters; each head adds the inner product of sinusoidal
embeddings of the two positions, compressed per head:

    logit(t, s) = q_t . k_s / sqrt(d) + (p_t . p_s - d_bar / 2) / h_n
    p_t . p_s   = sum_{i=0}^{d_bar/2 - 1} cos((t - s) w_i),   w_i = 10000^(-2i / d_bar)

d_bar = 128, h_n = 8 n / H for head n = 1 .. H (ALiBi's exponent as a ratio), as PyTorch
attention-gym's reference. Minus d_bar/2 as NVIDIA NeMo: a constant softmax ignores, which puts
the bias at 0 for t = s and below elsewhere, where half precision rounds it least.
"""

import torch

from encoding import Encoding, relative_distance


def cosine_sum(d, freqs):
    """sum_i cos(d w_i) - len(freqs), one frequency at a time: no (..., d_bar/2) tensor."""
    total = -float(len(freqs))
    for w in freqs:
        total = total + torch.cos(d * w)
    return total


class Sandwich(Encoding):
    def __init__(self, config, d_bar=128):
        super().__init__(config)
        if not (isinstance(d_bar, int) and d_bar > 0 and d_bar % 2 == 0):
            raise ValueError(f"sandwich d_bar must be a positive even integer, got {d_bar!r}")
        self.d_bar, H = d_bar, config.n_head
        self.freqs = [10000.0 ** (-2 * i / d_bar) for i in range(d_bar // 2)]  # w_i, floats
        scales = [H / (8.0 * n) for n in range(1, H + 1)]  # 1 / h_n
        self.register_buffer("scales", torch.tensor(scales), persistent=False)

    def bias(self, q, k, pos_q, pos_k):
        c = cosine_sum(relative_distance(pos_q, pos_k).float(), self.freqs)  # (B|1, H|1,) Tq, Tk
        return self.scales.float()[None, :, None, None] * c

    def score_mod(self, q, pos):  # the same bias, element-wise, for FlexAttention
        scales, t, freqs = self.scales.float(), pos, self.freqs  # t - s in pos's dtype, as bias()
        return lambda score, b, h, i, j: (
            score + scales[h] * cosine_sum((t[i] - t[j]).float(), freqs)
        )
