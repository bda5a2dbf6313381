"""xPos (Sun et al. 2022, "A Length-Extrapolatable Transformer"): RoPE whose pairs also decay.
Pair i of the query at n is scaled by zeta_i^(n/B), of the key at m by zeta_i^(-m/B), on top of
RoPE's rotation by theta_i = base^(-2i/d):

    zeta_i = (2i/d + gamma) / (1 + gamma),   gamma = 0.4, B = scale_base = 512
    logit(n, m) = sum_i zeta_i^((n - m)/B) q_i^T R(theta_i (m - n)) k_i / sqrt(d)

The fast pairs decay fastest; the same rates for every head (the authors' torchscale values).
Attention feeds block-relative times, where torchscale centres the positions: exact anywhere.
"""

import math

import torch

from encoding import (
    Encoding,
    decay_query_block,
    hp_dtype,
    relative_distance,
    rope_frequencies,
    rotate_pairs,
    rotation_scores,
)


class XPos(Encoding):
    orthogonal = False  # the scales grow or shrink with time: attention runs block-relative

    def __init__(self, config, scale_base=512.0, gamma=0.4, base=10000.0):
        super().__init__(config)
        if self.head_dim % 2:
            raise ValueError("xpos needs an even head dimension (n_embd / n_head)")
        if not scale_base > 0:
            raise ValueError(f"xpos scale_base must be > 0, got {scale_base!r}")
        if not gamma > 0:
            raise ValueError(f"xpos gamma must be > 0 (zeta_0 = gamma/(1+gamma)), got {gamma!r}")
        if not base > 0:
            raise ValueError(f"xpos base must be > 0, got {base!r}")
        self.scale_base, self.gamma, self.base = float(scale_base), float(gamma), float(base)
        worst = -math.log(self.gamma / (1 + self.gamma)) / self.scale_base  # pair 0 decays fastest
        self.max_query_block = decay_query_block(worst)

    def rates(self, device):
        """RoPE's theta_i and xPos's rate ln(zeta_i) / B per pair, in float64 on `device`."""
        theta = rope_frequencies(self.head_dim, self.base, device)
        two_i = torch.arange(0, self.head_dim, 2, device=device, dtype=hp_dtype(device))
        zeta = (two_i / self.head_dim + self.gamma) / (1 + self.gamma)
        return theta, torch.log(zeta) / self.scale_base

    def _rotate_scale(self, x, pos, sign):
        # zeta^(+-t/B) R(theta t) x for each pair: one complex multiplication by scale * e^{i angle}
        theta, rate = self.rates(x.device)
        t = pos.to(theta.dtype)[..., None]  # (T, 1), or (B|1, H|1, T, 1) on a clock
        scale = torch.exp(sign * t * rate)
        angle = t * theta  # rotate_pairs casts the factors to x's compute dtype
        return rotate_pairs(x, angle.cos() * scale, angle.sin() * scale)

    def rotate(self, q, k, pos_q, pos_k):
        return self._rotate_scale(q, pos_q, 1.0), self._rotate_scale(k, pos_k, -1.0)

    def scores(self, q, k, pos_q, pos_k):
        delta = relative_distance(pos_q, pos_k).to(hp_dtype(q.device))[..., None]  # (.., Tq, Tk, 1)
        theta, rate = self.rates(q.device)
        s = rotation_scores(q, k, delta * theta, torch.exp(delta * rate))
        return s / math.sqrt(self.head_dim)
