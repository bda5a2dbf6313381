"""Transformer-XL's relative positional encoding (Dai, Yang, Yang, Carbonell, Le, Salakhutdinov
2019, "Transformer-XL: Attentive Language Models Beyond a Fixed-Length Context", section 3.3),
without the segment-level recurrence (memory). Per head, for query t and key s:

    logit(t, s) = (q_t . k_s  +  q_t . W_R R_{t-s}  +  u . k_s  +  v . W_R R_{t-s}) / sqrt(d)
                   content      content x position    content bias  position bias

R_x = [sin(x w_0), ..., sin(x w_{D/2-1}), cos(x w_0), ..., cos(x w_{D/2-1})] is the sinusoid of
the distance x, w_i = 10000^(-2i/D); W_R (d x D per head) projects it; u, v are learned vectors
per head.

What the paper leaves open, chosen as the authors' code does (github.com/kimiyoung/transformer-xl,
tf/model.py and pytorch/mem_transformer.py):
- R is as wide as the model, D = n_embd, all sines then all cosines (their PositionalEmbedding:
  inv_freq = 1 / 10000^(arange(0, d_model, 2) / d_model), cat([sin, cos])).
- W_R is each layer's own bias-free n_embd -> n_head x d projection (their r_net).
- u and v (their r_w_bias, r_r_bias) belong to each layer too: the TF code's untie_r=True, which
  every WikiText-103 script of theirs sets (tf/scripts/wt103_base_gpu.sh, wt103_large_tpu.sh,
  tf/sota/wt103.sh). Their PyTorch code shares one u, v across layers instead; that is not
  offered here (nanoPE's per-layer encodings do not share parameters).
- W_R, u, v start from N(0, 0.02) (init="normal", init_std=0.02 in both codes). They are not
  weight-decayed (nanoPE's rule for positional parameters; the authors train with Adam, no decay).
- 1/sqrt(d) scales all four terms (attn_score = (AC + BD) * scale).
Not included: their evaluation-time clamp_len (distances clamped at 400-1000 for WikiText-103;
an exact clamp would need the relative shift below) and dropout on R.

How it is computed. The content term stays in the attention matmul; bias() returns the other
three. u . k_s is one number per key. For the two position terms, write p_t = W_R^T (q_t + v)
(a D-vector per query and head): they are p_t . R_{t-s}, and the angle-addition formulas split
R_{t-s} into a rotation of p_t by the angles t w and the unit vectors (cos s w, sin s w):

    p . R_{t-s} = sum_i (p_sin,i sin t w_i + p_cos,i cos t w_i) cos s w_i
                        + (p_cos,i sin t w_i - p_sin,i cos t w_i) sin s w_i

one (B, H, Tq, D) x (D, Tk) matmul per query block. It is exact for any positions (offsets, gaps,
float times) and never builds a (Tq, Tk, D) tensor; times are measured from the block's first
query so that angles stay small. The cost: D multiply-adds per logit where the authors' relative
shift (q . W_R R_r over the distances r, shifted into place) needs d, i.e. n_head times the
content term's; the shift is exact only for consecutive integer positions.

No score_mod: the bias is a D-long dot product per (t, s), not an element-wise table lookup that
FlexAttention could do cheaply. The bias encodings' blockwise path runs it.
"""

import math

import torch
import torch.nn as nn

from model import Encoding, compute_dtype, hp_dtype, rope_frequencies


def sinusoid_logits(p, pos_q, pos_k):
    """p_t . R_{t - s} for every query t and key s: (B, H, Tq, Tk), float32 at least. p is
    (B, H, Tq, D): coefficients of R_x = [sin(x w), cos(x w)], w_i = 10000^(-2i/D). Computed by
    angle addition (module docstring): a rotation of p and one matmul, never a (Tq, Tk, D)
    tensor. Angles in float64 (float32 on mps), from the first query's time."""
    ct, dt = compute_dtype(p.dtype), hp_dtype(p.device)
    w = rope_frequencies(p.size(-1), device=p.device)  # 10000^(-2i/D), (D/2,), in dt
    ref = pos_q[:1].to(dt)
    angle_q = (pos_q.to(dt) - ref)[:, None] * w  # (Tq, D/2)
    angle_k = (pos_k.to(dt) - ref)[:, None] * w  # (Tk, D/2)
    sin_t, cos_t = angle_q.sin().to(ct), angle_q.cos().to(ct)
    p_sin, p_cos = p.to(ct).chunk(2, dim=-1)
    rotated = torch.cat((p_sin * sin_t + p_cos * cos_t, p_cos * sin_t - p_sin * cos_t), dim=-1)
    unit = torch.cat((angle_k.cos(), angle_k.sin()), dim=-1).to(ct)  # (Tk, D)
    return rotated @ unit.T


def relative_bias(p, k, u, pos_q, pos_k):
    """The logits' position terms (p_t . R_{t-s} + u . k_s) / sqrt(d), (B, H, Tq, Tk), with p_t
    the coefficients of R (see sinusoid_logits), k (B, H, Tk, d) and u (H, d). Transformer-XL
    and TENER differ only in p_t (projected or not) and the width of R."""
    ct = compute_dtype(k.dtype)
    u_k = (k.to(ct) @ u.to(ct)[..., None]).mT  # (B, H, 1, Tk): u_h . k_s
    return (sinusoid_logits(p, pos_q, pos_k) + u_k) / math.sqrt(k.size(-1))


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
        ct = compute_dtype(q.dtype)
        # p_t = W_R^T (q_t + v): (q_t + v) . W_R R = p_t . R, for the D-wide sinusoid
        qv = q.to(ct) + self.v.to(ct)[:, None]
        p = torch.einsum("bhtd,hdc->bhtc", qv, self.W_R.to(ct))
        return relative_bias(p, k, self.u, pos_q, pos_k)
