"""DA-Transformer (Wu, Wu, Huang 2021, "Distance-aware Transformer"): the real distance rescales
each head's ReLU-clipped logits,

    logit(t, s) = ReLU(q_t . k_s / sqrt(d)) * (1 + e^{v_h}) / (1 + e^{v_h - w_h |t - s|})

w_h, v_h learned per head and layer; w's sign picks long range (> 0) or short (< 0). Left open
by the paper: w ~ N(0, 0.02) (w = 0 would leave v without gradient), v = 0. Multiplicative:
attention runs scores() in query blocks.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from encoding import Encoding, compute_dtype, relative_distance


class DA(Encoding):
    per_layer = True
    explicit = True

    def __init__(self, config):
        super().__init__(config)
        self.w = nn.Parameter(torch.randn(config.n_head) * 0.02)
        self.v = nn.Parameter(torch.zeros(config.n_head))

    def coefficients(self, pos_q, pos_k, dtype=torch.float32):
        """(1 + e^v_h) sigmoid(w_h |t - s| - v_h), (H, Tq, Tk): never overflows."""
        d = relative_distance(pos_q, pos_k).abs().to(dtype)
        w, v = (p.to(dtype)[:, None, None] for p in (self.w, self.v))
        return (1 + torch.exp(v)) * torch.sigmoid(w * d - v)

    def scores(self, q, k, pos_q, pos_k):
        ct = compute_dtype(q.dtype)
        s = (q.to(ct) @ k.to(ct).mT).to(ct) / math.sqrt(self.head_dim)
        return F.relu(s) * self.coefficients(pos_q, pos_k, ct)
