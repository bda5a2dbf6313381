"""Transformer-XL's relative encoding (Dai et al. 2019, section 3.3), without the recurrence:

    logit(t, s) = (q_t . k_s  +  q_t . W_R R_{t-s}  +  u . k_s  +  v . W_R R_{t-s}) / sqrt(d)

R_x = [sin(x w_i)..., cos(x w_i)...], w_i = 10000^(-2i/D), D = n_embd; W_R (d x D per head), u,
v learned per layer (untie_r=True, the authors' WikiText-103 setting), N(0, 0.02). bias() gives
the last three terms: with p_t = W_R^T (q_t + v), angle addition splits p_t . R_{t-s} into p_t
rotated by t w and the unit vectors (cos s w, sin s w),

    p . R_{t-s} = sum_i (p_sin,i sin t w_i + p_cos,i cos t w_i) cos s w_i
                        + (p_cos,i sin t w_i - p_sin,i cos t w_i) sin s w_i

one matmul per query block, exact at any positions. No score_mod: it is no element-wise lookup.
"""

import math

import torch
import torch.nn as nn

from attention import causal_mask, no_autocast
from encoding import Encoding, compute_dtype, hp_dtype, rope_frequencies


def sinusoid_logits(p, pos_q, pos_k):
    """p_t . R_{t - s} (B, H, Tq, Tk) for p (B, H, Tq, D), by angle addition (module docstring).
    Angles in float64 (float32 on mps), from the first query's time so that they stay small."""
    ct, dt = compute_dtype(p.dtype), hp_dtype(p.device)
    w = rope_frequencies(p.size(-1), device=p.device)  # 10000^(-2i/D), (D/2,), in dt
    ref = pos_q[..., :1].to(dt)
    angle_q = (pos_q.to(dt) - ref)[..., None] * w  # (Tq, D/2) | (B|1, H|1, Tq, D/2)
    angle_k = (pos_k.to(dt) - ref)[..., None] * w  # (Tk, D/2) | (B|1, H|1, Tk, D/2)
    sin_t, cos_t = angle_q.sin().to(ct), angle_q.cos().to(ct)
    p_sin, p_cos = p.to(ct).chunk(2, dim=-1)
    rotated = torch.cat((p_sin * sin_t + p_cos * cos_t, p_cos * sin_t - p_sin * cos_t), dim=-1)
    unit = torch.cat((angle_k.cos(), angle_k.sin()), dim=-1).to(ct)  # (.., Tk, D)
    return rotated @ unit.mT


def relative_bias(q, k, u, v, W_R, pos_q, pos_k):
    """(q_t . W_R R_{t-s} + u . k_s + v . W_R R_{t-s}) / sqrt(d), W_R None: R unprojected (TENER).
    Float32, autocast off: these logits reach tens, where bf16 would round them by ~0.06."""
    with no_autocast(q.device.type):
        ct = compute_dtype(q.dtype)
        p = q.to(ct) + v.to(ct)[:, None]  # (q_t + v) . W_R R = p_t . R with p_t = W_R^T (q_t + v)
        if W_R is not None:
            p = torch.einsum("bhtd,hdc->bhtc", p, W_R.to(ct))
        position = sinusoid_logits(p, pos_q, pos_k)
        u_k = (k.to(ct) @ u.to(ct)[..., None]).mT  # (B, H, 1, Tk): u_h . k_s
        bias = (position + u_k) / math.sqrt(q.size(-1))
        # minus each query's largest bias over the keys it sees (queries are the last Tq keys):
        # attention adds the bias in q's dtype, and bf16 resolves 2^-9 near 0, 2^-4 near 16
        Tq, Tk = bias.shape[-2:]
        seen = causal_mask(Tk - Tq, Tk, bias.device)
        return bias - bias.masked_fill(~seen, -math.inf).amax(-1, keepdim=True).detach()


class TransformerXL(Encoding):
    per_layer = True  # W_R, u, v of each layer (the authors' untie_r=True)

    def __init__(self, config):
        super().__init__(config)
        if config.n_embd % 2:
            raise ValueError(f"xl needs an even n_embd (R's sines, cosines), got {config.n_embd}")
        H, d, D = config.n_head, self.head_dim, config.n_embd
        self.W_R = nn.Parameter(torch.randn(H, d, D) * 0.02)  # W_R of head h: W_R[h], d x D
        self.u = nn.Parameter(torch.randn(H, d) * 0.02)
        self.v = nn.Parameter(torch.randn(H, d) * 0.02)

    def bias(self, q, k, pos_q, pos_k):
        return relative_bias(q, k, self.u, self.v, self.W_R, pos_q, pos_k)
