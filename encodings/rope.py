"""Rotary position embedding, RoPE (Su et al. 2021, "RoFormer: Enhanced Transformer with Rotary
Position Embedding"). Each interleaved channel pair i = (2i, 2i+1) of q and k is rotated by an
angle proportional to its position, theta_i = base^(-2i/d), base = 10000:

    q'_t = R(theta t) q_t,   k'_s = R(theta s) k_s,
    logit(t, s) = q'_t . k'_s / sqrt(d) = q_t^T R(theta (s - t)) k_s / sqrt(d)

so the logit depends on t - s only. Interleaved pairs as in GPT-J and the seeds' code (Llama's
half-split layout is the same up to a fixed channel permutation). cos/sin are computed in float64
(float32 on mps), stored in float32, and cached for the positions tensor in use, so the layers of
one forward share them.
"""

import math

import torch

from model import (
    Encoding,
    compute_dtype,
    hp_dtype,
    pair_products,
    relative_distance,
    rope_frequencies,
    rotate_pairs,
)


class RoPE(Encoding):
    def __init__(self, config, base=10000.0):
        super().__init__(config)
        if self.head_dim % 2:
            raise ValueError("rope needs an even head dimension (n_embd / n_head)")
        self.base = base
        self._cache = None  # (pos tensor, inference mode, cos, sin)

    def frequencies(self, device):
        return rope_frequencies(self.head_dim, self.base, device)

    def cos_sin(self, pos):
        # the cache holds a reference to `pos`, so an identical object means identical positions
        mode = torch.is_inference_mode_enabled()
        c = self._cache
        if c is not None and c[0] is pos and c[1] == mode:
            return c[2], c[3]
        angle = pos.to(hp_dtype(pos.device))[:, None] * self.frequencies(pos.device)
        cos, sin = angle.cos().float(), angle.sin().float()
        if not torch.compiler.is_compiling():
            self._cache = (pos, mode, cos, sin)
        return cos, sin

    def rotate(self, q, k, pos_q, pos_k):
        cos_q, sin_q = self.cos_sin(pos_q)
        cos_k, sin_k = self.cos_sin(pos_k)
        return rotate_pairs(q, cos_q, sin_q), rotate_pairs(k, cos_k, sin_k)

    def scores(self, q, k, pos_q, pos_k):
        # explicit relative form: sum_i q_i^T R(theta_i (s - t)) k_i, no rotated copies of q or k
        delta = relative_distance(pos_q, pos_k).to(hp_dtype(q.device))
        phi = delta[..., None] * self.frequencies(q.device)  # (Tq, Tk, d/2)
        ct = compute_dtype(q.dtype)
        dot, cross = pair_products(q.to(ct), k.to(ct))
        s = phi.cos().to(ct) * dot + phi.sin().to(ct) * cross
        return s.sum(-1) / math.sqrt(self.head_dim)
