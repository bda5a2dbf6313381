"""Rotary position embedding, RoPE (Su et al. 2021, "RoFormer: Enhanced Transformer with Rotary
Position Embedding"). Each interleaved channel pair i = (2i, 2i+1) of q and k is rotated by an
angle proportional to its position, theta_i = base^(-2i/d), base = 10000:

    q'_t = R(theta t) q_t,   k'_s = R(theta s) k_s,
    logit(t, s) = q'_t . k'_s / sqrt(d) = q_t^T R(theta (s - t)) k_s / sqrt(d)

so the logit depends on t - s only. Interleaved pairs as in GPT-J and the seeds' code (Llama's
half-split layout is the same up to a fixed channel permutation). cos/sin are computed in float64
(float32 on mps) and stored in float32; each layer computes them anew: (T, d/2) values, a few
microseconds, not worth a cache (nothing measurable was gained by one).

Context extension at evaluation time (no retraining): scaling = "linear" (position interpolation),
"dynamic" (dynamic NTK), "yarn" or "llama3", with `factor` and the training length
original_length (default block_size); see model.scaled_rope_frequencies for the formulas.
"""

import math

from model import (
    ROPE_SCALINGS,
    Encoding,
    compute_dtype,
    hp_dtype,
    pair_products,
    relative_distance,
    rotate_pairs,
    scaled_rope_frequencies,
)


class RoPE(Encoding):
    def __init__(self, config, base=10000.0, scaling=None, factor=1.0, original_length=None):
        super().__init__(config)
        if self.head_dim % 2:
            raise ValueError("rope needs an even head dimension (n_embd / n_head)")
        if scaling not in ROPE_SCALINGS:
            raise ValueError(f"unknown rope scaling {scaling!r}; choose from {ROPE_SCALINGS[1:]}")
        self.base, self.scaling, self.factor = base, scaling, factor
        self.original_length = original_length or config.block_size
        self.context_dependent = scaling == "dynamic"  # its base follows the context length

    def frequencies(self, device):
        """theta_i (under context extension, if any) and the q/k scale (YaRN's temperature)."""
        return scaled_rope_frequencies(
            self.head_dim,
            self.base,
            self.scaling,
            self.factor,
            self.original_length,
            self.context_len,
            device=device,
        )

    def cos_sin(self, pos):
        """cos and sin of the angles theta_i t, times the q/k scale: (T, d/2) float32 each."""
        theta, scale = self.frequencies(pos.device)
        angle = pos.to(hp_dtype(pos.device))[:, None] * theta
        return (angle.cos() * scale).float(), (angle.sin() * scale).float()

    def rotate(self, q, k, pos_q, pos_k):
        cos_q, sin_q = self.cos_sin(pos_q)
        cos_k, sin_k = (cos_q, sin_q) if pos_k is pos_q else self.cos_sin(pos_k)
        return rotate_pairs(q, cos_q, sin_q), rotate_pairs(k, cos_k, sin_k)

    def scores(self, q, k, pos_q, pos_k):
        # explicit relative form: sum_i q_i^T R(theta_i (s - t)) k_i, no rotated copies of q or k
        delta = relative_distance(pos_q, pos_k).to(hp_dtype(q.device))
        theta, scale = self.frequencies(q.device)
        phi = delta[..., None] * theta  # (Tq, Tk, d/2)
        ct = compute_dtype(q.dtype)
        dot, cross = pair_products(q.to(ct), k.to(ct))
        s = phi.cos().to(ct) * dot + phi.sin().to(ct) * cross
        return s.sum(-1) * scale**2 / math.sqrt(self.head_dim)
