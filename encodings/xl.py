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
- W_R, u, v start from N(0, 0.02) (init="normal" with the default init_std=0.02 of both codes;
  their 18-layer WikiText-103 model sets 0.005). They are not weight-decayed (nanoPE's rule for
  positional parameters; the authors train with Adam, no decay).
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
query so that angles stay small. The cost: D multiply-adds per logit, in float32 (TF32 on a GPU
that allows it; bf16 rounds these logits too coarsely, see relative_bias), where the authors'
relative shift (q . W_R R_r over the distances r, shifted into place) needs d: n_head times the
content term's work, but holds only for consecutive integer positions.

bias() returns these terms minus, for each query, their largest value over the keys it sees: a
constant per softmax row, which changes no attention weight, so scores() are the logits above up
to that constant (it keeps the heaviest keys' bias near 0, where half precision resolves it).

No score_mod: the bias is a D-long dot product per (t, s), not an element-wise table lookup that
FlexAttention could do cheaply. The bias encodings' blockwise path runs it.
"""

import math

import torch
import torch.nn as nn

from attention import causal_mask, no_autocast
from encoding import Encoding, compute_dtype, hp_dtype, rope_frequencies


def sinusoid_logits(p, pos_q, pos_k):
    """p_t . R_{t - s} for every query t and key s: (B, H, Tq, Tk), float32 at least. p is
    (B, H, Tq, D): coefficients of R_x = [sin(x w), cos(x w)], w_i = 10000^(-2i/D). Positions
    (T,), or a clock per sequence and head (B|1, H|1, T). Computed by angle addition (module
    docstring): a rotation of p and one matmul, never a (Tq, Tk, D) tensor. Angles in float64
    (float32 on mps), from the first query's time (each sequence's and head's own)."""
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
    """The logits' position terms (q_t . W_R R_{t-s} + u . k_s + v . W_R R_{t-s}) / sqrt(d),
    (B, H, Tq, Tk), for q (B, H, Tq, d), k (B, H, Tk, d), u, v (H, d) and W_R (H, d, D); W_R None:
    R unprojected, D = d (TENER). In float32 at least, autocast off: these logits reach tens
    (sharpened test models: 30), where bf16 rounds by 0.06 (measured: 2.3% logit error at 32x
    length against 0.5% in float32)."""
    with no_autocast(q.device.type):
        ct = compute_dtype(q.dtype)
        p = q.to(ct) + v.to(ct)[:, None]  # (q_t + v) . W_R R = p_t . R with p_t = W_R^T (q_t + v)
        if W_R is not None:
            p = torch.einsum("bhtd,hdc->bhtc", p, W_R.to(ct))
        position = sinusoid_logits(p, pos_q, pos_k)
        u_k = (k.to(ct) @ u.to(ct)[..., None]).mT  # (B, H, 1, Tk): u_h . k_s
        bias = (position + u_k) / math.sqrt(q.size(-1))
        # minus each query's largest bias over the keys it sees (the queries are the last Tq
        # keys), a constant softmax ignores: attention adds the bias in q's dtype, and bf16
        # resolves a logit near 0 to 2^-9 but one near 16 only to 2^-4 (test_numerics, bf16
        # inputs: 0.045 -> 0.013 error)
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
