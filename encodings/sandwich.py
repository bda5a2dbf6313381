"""Sandwich (Chi, Fan, Rudnicky, Ramadge 2023, "Dissecting Transformer Length Extrapolation via the
Lens of Receptive Field Analysis", ACL 2023, arXiv 2212.10356): no learned parameters; each head
adds the inner product of sinusoidal embeddings of the two positions, compressed per head:

    logit(t, s) = q_t . k_s / sqrt(d) + (p_t . p_s - d_bar / 2) / h_n
    p_t . p_s   = sum_{i=0}^{d_bar/2 - 1} cos((t - s) w_i),   w_i = 10000^(-2i / d_bar)

where p_t = [sin(t w_i), cos(t w_i)]_i is Vaswani's sinusoid of dimension d_bar (d_bar = 128 in
the paper, independent of the model width: option `d_bar`), and h_n = 8 n / H for head
n = 1 .. H is ALiBi's exponent used as a compression ratio (the paper's notation; ALiBi's slope
is 2^-h_n, Sandwich divides by h_n itself). The bias decays roughly logarithmically with the
distance, as KERPLE-log and T5's learned biases do.

Sources: the paper's LaTeX (stored copy; its introduction and Figure 1, which defines
h = n 8/H, could be read here, not its Sandwich section) and two implementations of it:
PyTorch's attention-gym (attn_gym/mods/sandwich.py, whose test builds "the paper's reference
construction (appendix E)": p p^T over i = 0 .. d_bar/2 - 1, d_bar = 128, divided by 8n/H),
followed here; and NVIDIA NeMo (sandwich_relative_position_embedding.py), which takes d_bar = the
head dimension and i = 1 .. d_bar/2. NeMo subtracts d_bar/2, attention-gym does not: a constant
per head and query, which softmax ignores. We subtract it because it puts the bias at 0 for
t = s and below 0 elsewhere, where its rounding to half precision (the blockwise path adds the
bias in q's dtype) is small; unshifted, the nearest keys would sit at (d_bar/2) / h_1 (96 for
12 heads).

The bias is a cosine sum of t - s, computed in float32 for each (t, s): a shift-invariant bias,
exact for float positions, and memory O(query block x T) on the blockwise path.
"""

import torch

from encoding import Encoding, relative_distance


def sandwich_frequencies(d_bar):
    """w_i = 10000^(-2i/d_bar), i = 0 .. d_bar/2 - 1, as Python floats (kernel constants)."""
    return [10000.0 ** (-2 * i / d_bar) for i in range(d_bar // 2)]


def cosine_sum(d, freqs):
    """sum_i cos(d w_i) - len(freqs) for a tensor of distances d: one frequency at a time, so
    that no (..., d_bar/2) tensor is ever built."""
    total = -float(len(freqs))
    for w in freqs:
        total = total + torch.cos(d * w)
    return total


class Sandwich(Encoding):
    def __init__(self, config, d_bar=128):
        super().__init__(config)
        if not (isinstance(d_bar, int) and d_bar > 0 and d_bar % 2 == 0):
            raise ValueError(f"sandwich d_bar must be a positive even integer, got {d_bar!r}")
        self.d_bar = d_bar
        self.freqs = sandwich_frequencies(d_bar)
        H = config.n_head
        scales = [H / (8.0 * n) for n in range(1, H + 1)]  # 1 / h_n
        self.register_buffer("scales", torch.tensor(scales), persistent=False)

    def bias(self, q, k, pos_q, pos_k):
        c = cosine_sum(relative_distance(pos_q, pos_k).float(), self.freqs)  # (B|1, H|1,) Tq, Tk
        # scales as (1, H, 1, 1): (1, H, Tq, Tk), or (B|1, H, Tq, Tk) on a clock
        return self.scales.float()[None, :, None, None] * c

    def score_mod(self, q, pos):  # the same bias, element-wise, for FlexAttention
        scales, t, freqs = self.scales.float(), pos, self.freqs  # t - s in pos's dtype, as bias()
        return lambda score, b, h, i, j: (
            score + scales[h] * cosine_sum((t[i] - t[j]).float(), freqs)
        )
