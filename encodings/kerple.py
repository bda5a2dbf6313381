"""KERPLE (Chi, Fan, Ramadge, Rudnicky 2022): a conditionally positive definite kernel of the
distance, learned per head, added to the logits:

    variant="log"   (default): logit(t, s) = q_t . k_s / sqrt(d) - r1_h log(1 + r2_h (t - s))
    variant="power":           logit(t, s) = q_t . k_s / sqrt(d) - r1_h (t - s)^r2_h

As the authors' code: one (r1, r2) per head for all layers; init log r1 ~ U(0, 2), r2 ~ U(0, 1),
power r1 ~ U(0, 1), r2 ~ U(0, 2); r1, r2 >= 0.01 (power r2 <= 2), which they enforce by clamping
.data in place: here a straight-through clamp, the same forward and gradient.
"""

import torch
import torch.nn as nn

from encoding import Encoding, relative_distance

VARIANTS = ("log", "power")
EPS, MAX_POWER = 0.01, 2.0  # the authors' bounds: r1, r2 >= 0.01; the power r2 <= 2


def clamp_straight_through(x, lo, hi=None):
    """clamp(x, lo, hi) in the forward pass, identity in the backward pass (projected gradient)."""
    return x + (x.clamp(lo, hi) - x).detach()


class Kerple(Encoding):
    compiled_flex_grad = False  # score_mod captures tensors computed in the graph (encoding.py)

    def __init__(self, config, variant="log"):
        super().__init__(config)
        if variant not in VARIANTS:
            valid = ", ".join(repr(v) for v in VARIANTS)
            raise ValueError(f"kerple variant must be one of {valid}, got {variant!r}")
        self.variant = variant
        scale1, scale2 = (2.0, 1.0) if variant == "log" else (1.0, 2.0)
        self.r1 = nn.Parameter(torch.rand(config.n_head) * scale1)
        self.r2 = nn.Parameter(torch.rand(config.n_head) * scale2)

    def coefficients(self):
        """(r1, r2), each (H,) float32, within the paper's constraints."""
        hi = MAX_POWER if self.variant == "power" else None
        r1 = clamp_straight_through(self.r1.float(), EPS)
        return r1, clamp_straight_through(self.r2.float(), EPS, hi)

    def kernel(self, d, r1, r2):
        """The bias -r1 k(d) for distances d >= 0 (r1, r2 broadcast against d)."""
        if self.variant == "log":
            return -r1 * torch.log1p(r2 * d)
        return -r1 * d**r2  # torch gives d^r2's gradient in r2 as 0, not 0 * log 0, at d = 0

    def bias(self, q, k, pos_q, pos_k):
        d = relative_distance(pos_q, pos_k).float().clamp(min=0)  # (Tq, Tk) | (B|1, H|1, Tq, Tk)
        r1, r2 = (r[None, :, None, None] for r in self.coefficients())  # (1, H, 1, 1)
        return self.kernel(d, r1, r2)  # (1, H, Tq, Tk), or (B|1, H, Tq, Tk) on a clock

    def score_mod(self, q, pos):  # the same bias, element-wise, for FlexAttention
        (r1, r2), t = self.coefficients(), pos  # t - s in pos's dtype, then float32, as bias()
        return lambda score, b, h, i, j: (
            score + self.kernel((t[i] - t[j]).float().clamp(min=0), r1[h], r2[h])
        )
