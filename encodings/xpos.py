"""xPos (Sun et al. 2022, "A Length-Extrapolatable Transformer"): RoPE whose rotation pairs also
decay, each at its own rate. Pair i (channels 2i, 2i+1) of the query at n is scaled by
zeta_i^(n/B), of the key at m by zeta_i^(-m/B), on top of RoPE's rotation by theta_i = base^(-2i/d):

    zeta_i = (2i/d + gamma) / (1 + gamma),   gamma = 0.4, B = scale_base = 512
    logit(n, m) = sum_i zeta_i^((n - m)/B) q_i^T R(theta_i (m - n)) k_i / sqrt(d)

so the fast-rotating pairs decay fastest (zeta_0 = 0.29: a factor e^-1 every 409 tokens) and the
slowest pairs hardly at all (zeta -> 1): a damped rotation with one decay rate per frequency,
ln(zeta_i) / B, the same for every head. As in the authors' torchscale code (XPOS): gamma 0.4 and
B = 512, theta_i as in RoPE, interleaved pairs rotated like `rope`, the query scaled up and the key
down. torchscale centres the positions of the scale on the middle of the sequence so that zeta^(n/B)
stays in range; the centre cancels in n - m. Here attention does the same with block-relative
times (the start of each query block as 0), so the factors stay bounded at any position: queries
and keys at positions near 60,000 give exact logits, where zeta_0^(60000/512) = 1e-64 alone would
underflow float32. The paper's blockwise causal attention at inference (a windowing scheme) is not
part of the encoding and is not implemented here.

Options: scale_base (B, 512), gamma (0.4), base (RoPE's 10000).
"""

import math

import torch

from encoding import (
    Encoding,
    compute_dtype,
    hp_dtype,
    pair_products,
    relative_distance,
    rope_frequencies,
    rotate_pairs,
)


def xpos_zeta(dim, gamma=0.4, device=None):
    """xPos's per-pair decay base zeta_i = (2i/dim + gamma) / (1 + gamma), i < dim/2, float64."""
    i = torch.arange(0, dim, 2, device=device, dtype=hp_dtype(device or "cpu"))
    return (i / dim + gamma) / (1 + gamma)


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
        # the fastest decay is pair 0's; keep e^{|rate| * block} far from float32 overflow
        worst = -math.log(self.gamma / (1 + self.gamma)) / self.scale_base
        self.max_query_block = max(1, int(60.0 / worst))

    def rates(self, device):
        """Per pair i, RoPE's frequency theta_i and xPos's decay rate ln(zeta_i) / B (<= 0), each
        (d/2,) in float64 (float32 on mps), computed on `device`: no table to copy over."""
        theta = rope_frequencies(self.head_dim, self.base, device)
        rate = torch.log(xpos_zeta(self.head_dim, self.gamma, device)) / self.scale_base
        return theta, rate

    def _rotate_scale(self, x, pos, sign):
        # zeta^(+-t/B) R(theta t) x for each pair: one complex multiplication by scale * e^{i angle}
        theta, rate = self.rates(x.device)
        t = pos.to(theta.dtype)[..., None]  # (T, 1), or (B|1, H|1, T, 1) on a clock
        scale = torch.exp(sign * t * rate)
        angle = t * theta
        ct = compute_dtype(x.dtype)
        return rotate_pairs(x, (angle.cos() * scale).to(ct), (angle.sin() * scale).to(ct))

    def rotate(self, q, k, pos_q, pos_k):
        return self._rotate_scale(q, pos_q, 1.0), self._rotate_scale(k, pos_k, -1.0)

    def scores(self, q, k, pos_q, pos_k):
        # explicit: sum_i zeta_i^((t - s)/B) q_i^T R(theta_i (s - t)) k_i / sqrt(d), in t - s
        delta = relative_distance(pos_q, pos_k).to(hp_dtype(q.device))[..., None]  # (.., Tq, Tk, 1)
        theta, rate = self.rates(q.device)
        phi, decay = delta * theta, torch.exp(delta * rate)  # (..., Tq, Tk, d/2)
        ct = compute_dtype(q.dtype)
        dot, cross = pair_products(q.to(ct), k.to(ct))
        s = (decay * phi.cos()).to(ct) * dot + (decay * phi.sin()).to(ct) * cross
        return s.sum(-1) / math.sqrt(self.head_dim)
