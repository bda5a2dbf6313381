"""Damped RoPE: a rotation and a decay per head (the group-theory view; RetNet, Sun et al. 2023):

    logit(t, s) = e^{alpha_h (t - s)} q_t^T R(omega (s - t)) k_s / sqrt(d),   alpha_h <= 0

q^T exp((t - s) L) k, L with eigenvalues alpha_h +- i omega_j; alpha = 0 is `rope`. Defaults:
RetNet's alpha_h = ln(1 - 2^(-5-h)), RoPE's omega_j. decay="logit": the form above (far logits
tend to 0, pulling far keys toward uniform weight), as q e^{alpha t}, k e^{-alpha s} on
block-relative times; decay="weight" adds alpha_h (t - s) to the logit (RoPE plus ALiBi-like
slopes). learn_alpha / learn_omega train them; scaling, factor, original_length: as in `rope`.
"""

import math

import torch
import torch.nn as nn

from encoding import (
    bounded_decay,
    bounded_decay_raw,
    compute_dtype,
    decay_query_block,
    hp_dtype,
    relative_distance,
    rope_frequencies,
    rotate_pairs,
    rotation_scores,
)

from .rope import RoPE


def retnet_gammas(n_head):
    """RetNet's per-head decay rates gamma_h = 1 - 2^(-5-h)."""
    return [1.0 - 2.0 ** (-5 - h) for h in range(n_head)]


class DampedRoPE(RoPE):  # RoPE's options and frequencies, context extension included
    orthogonal = False

    def __init__(
        self,
        config,
        gammas=None,
        base=10000.0,
        decay="logit",
        learn_alpha=False,
        learn_omega=False,
        max_alpha=0.1,
        scaling=None,
        factor=1.0,
        original_length=None,
    ):
        super().__init__(config, base, scaling, factor, original_length)
        if decay not in ("logit", "weight"):
            raise ValueError(f"damped_rope decay must be 'logit' or 'weight', got {decay!r}")
        gammas = retnet_gammas(self.n_head) if gammas is None else list(gammas)
        if len(gammas) != self.n_head or not all(0 < g <= 1 for g in gammas):
            raise ValueError(f"damped_rope gammas: need {self.n_head} values in (0, 1]")
        self.decay, self.learn_alpha, self.max_alpha = decay, learn_alpha, max_alpha
        self.orthogonal = decay == "weight"  # pure rotation + bias: no scaled q/k
        self.compiled_flex_grad = not learn_alpha  # alpha is computed from alpha_raw (encoding.py)
        alpha = torch.log(torch.tensor(gammas, dtype=torch.float64))
        if learn_alpha:
            self.alpha_raw = nn.Parameter(bounded_decay_raw(alpha, max_alpha).float())
            worst = max_alpha
        else:
            self.register_buffer("alpha_fixed", alpha.float(), persistent=False)
            worst = float(-alpha.min())
        self.max_query_block = decay_query_block(worst)
        omega = rope_frequencies(self.head_dim, base).float()[None]  # (1, d/2)
        if learn_omega:
            self.omega = nn.Parameter(omega.repeat(self.n_head, 1))  # (H, d/2)
        else:
            self.register_buffer("omega", omega, persistent=False)

    def alpha(self):
        """Per-head decay exponents alpha_h <= 0, shape (H,)."""
        if self.learn_alpha:
            return bounded_decay(self.alpha_raw, self.max_alpha)
        return self.alpha_fixed

    def omegas(self, dtype):
        """The rotation frequencies (H|1, d/2) after context extension, and the q/k scale."""
        if self.scaling is None:
            return self.omega.to(dtype), 1.0
        dev = self.omega.device  # computed there: no copy per layer and step
        theta, scale = self.frequencies(dev)
        ratio = (theta / rope_frequencies(self.head_dim, self.base, dev)).to(dtype)
        return self.omega.to(dtype) * ratio, scale

    def _rotate_scale(self, x, pos, sign):
        ct = compute_dtype(x.dtype)
        t = pos.to(ct)  # (T,), or a clock (B|1, H|1, T)
        omega, scale = self.omegas(ct)
        angle = t[..., :, None] * omega[:, None, :]  # (H|1, T, d/2), or (B|1, H, T, d/2)
        # scale and decay go into the (H, T, d/2) factors: one pass over x (B, H, T, d), not three
        r = torch.full((1, 1, 1), scale, dtype=ct, device=x.device)
        if self.decay == "logit":  # alpha (H, 1) against t: (H, T), or (B|1, H, T) on a clock
            r = r * torch.exp(sign * self.alpha().to(ct)[:, None] * t)[..., None]
        return rotate_pairs(x, angle.cos() * r, angle.sin() * r)

    def rotate(self, q, k, pos_q, pos_k):
        return self._rotate_scale(q, pos_q, 1.0), self._rotate_scale(k, pos_k, -1.0)

    def bias(self, q, k, pos_q, pos_k):
        if self.decay != "weight":
            return None
        dist = relative_distance(pos_q, pos_k).float()  # (Tq, Tk) or (B|1, H|1, Tq, Tk)
        return self.alpha()[None, :, None, None] * dist  # (1, H, Tq, Tk) or (B|1, H, Tq, Tk)

    def score_mod(self, q, pos):  # decay="weight" only: its bias, element-wise, for FlexAttention
        if self.decay != "weight":
            return None
        alpha, t = self.alpha().float(), pos  # t - s in pos's dtype, then float32, as bias()
        return lambda score, b, h, i, j: score + alpha[h] * (t[i] - t[j]).float()

    def scores(self, q, k, pos_q, pos_k):
        delta = relative_distance(pos_q, pos_k).to(hp_dtype(q.device))  # (B|1, H|1,) Tq, Tk
        omega, scale = self.omegas(delta.dtype)
        phi = delta[..., None] * omega[:, None, None, :]  # (H|1, Tq, Tk, d/2) | (B|1, H, ...)
        s = rotation_scores(q, k, phi) * scale**2 / math.sqrt(self.head_dim)
        a = self.alpha().to(delta.dtype)[:, None, None] * delta  # (H, Tq, Tk) | (B|1, H, Tq, Tk)
        return s * a.exp().to(s.dtype) if self.decay == "logit" else s + a.to(s.dtype)
