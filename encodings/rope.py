"""Rotary position embedding, RoPE (Su et al. 2021, "RoFormer"): each interleaved pair i of q and k
is rotated by its position times theta_i = base^(-2i/d), base = 10000:

    logit(t, s) = R(theta t) q_t . R(theta s) k_s / sqrt(d) = q_t^T R(theta (s - t)) k_s / sqrt(d)

Interleaved pairs as GPT-J (Llama's half split permutes the channels). Options: context extension
at evaluation time (scaling, factor, original_length: scaled_rope_frequencies), and p-RoPE
(Barbero et al. 2024): p in (0, 1] rotates only the first int(p d // 2) pairs, the highest
frequencies of RoPE's own schedule, as the paper's apply_p_rope; the rest get frequency 0.
"""

import math

import torch

from encoding import (
    Encoding,
    hp_dtype,
    relative_distance,
    rope_frequencies,
    rotate_pairs,
    rotation_scores,
)

SCALINGS = ("linear", "dynamic", "yarn", "llama3")  # context extension at evaluation time
YARN_BETA = (32.0, 1.0)  # YaRN's beta_fast, beta_slow
LLAMA3_FREQ_FACTORS = (1.0, 4.0)  # Llama 3.1's low_freq_factor, high_freq_factor


def scaled_rope_frequencies(
    dim, base=10000.0, scaling=None, factor=1.0, original_length=None, length=None, device=None
):
    """RoPE frequencies under a context-extension method applied at evaluation time, and the
    factor by which q and k are each multiplied (YaRN's attention temperature; 1 otherwise).
    original_length is the training length L0, length the current one L.
      linear  -- position interpolation (Chen et al. 2023): theta_i / factor
      dynamic -- dynamic NTK: base' = base (factor L / L0 - (factor - 1))^(d / (d - 2)) when L > L0
      yarn    -- YaRN (Peng et al. 2023): per-frequency ramp between interpolation (theta / factor)
                 and extrapolation (theta) over the dims that make beta_slow .. beta_fast rotations
                 in L0 tokens; q and k scaled by 0.1 ln(factor) + 1
      llama3  -- Llama 3.1: wavelengths above L0 / low_freq_factor interpolated, below
                 L0 / high_freq_factor kept, a smooth blend in between
    """
    theta = rope_frequencies(dim, base, device)
    if scaling is None or factor == 1.0:
        return theta, 1.0
    if scaling == "linear":
        return theta / factor, 1.0
    L0 = original_length
    if scaling == "dynamic":
        if length is None or length <= L0:
            return theta, 1.0
        new_base = base * (factor * length / L0 - (factor - 1)) ** (dim / (dim - 2))
        return rope_frequencies(dim, new_base, device), 1.0
    if scaling == "yarn":  # correction_dim(r): the dim whose pair turns r times in L0 tokens
        correction_dim = lambda r: dim * math.log(L0 / (r * 2 * math.pi)) / (2 * math.log(base))
        low = max(math.floor(correction_dim(YARN_BETA[0])), 0)
        high = min(math.ceil(correction_dim(YARN_BETA[1])), dim - 1)
        high = high + 0.001 if high == low else high
        i = torch.arange(dim // 2, device=theta.device, dtype=theta.dtype)
        extrapolate = 1 - ((i - low) / (high - low)).clamp(0, 1)  # 1: keep theta, 0: theta/factor
        theta = theta / factor * (1 - extrapolate) + theta * extrapolate
        return theta, 0.1 * math.log(factor) + 1.0
    lo, hi = LLAMA3_FREQ_FACTORS
    wavelength = 2 * math.pi / theta
    smooth = ((L0 / wavelength - lo) / (hi - lo)).clamp(0, 1)  # 1: kept, 0: interpolated
    return theta / factor * (1 - smooth) + theta * smooth, 1.0


class RoPE(Encoding):
    scalings = SCALINGS  # what --rope_scaling may ask of it (checkpoint.rope_scaling_kwargs)

    def __init__(self, config, base=10000.0, scaling=None, factor=1.0, original_length=None, p=1.0):
        super().__init__(config)
        if self.head_dim % 2:
            raise ValueError("rotary encodings need an even head dimension (n_embd / n_head)")
        if scaling is not None and scaling not in SCALINGS:
            raise ValueError(f"unknown rope scaling {scaling!r}; choose from {SCALINGS}")
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 < p <= 1:
            raise ValueError(f"rope p (fraction of frequencies kept) must be in (0, 1], got {p!r}")
        self.pairs = int(p * self.head_dim // 2)  # rotated pairs: the m highest frequencies
        if self.pairs == 0:
            raise ValueError(
                f"rope p={p} keeps no frequency of a head dimension of {self.head_dim}: use"
                f" p >= {2 / self.head_dim:g} (or the nope encoding)"
            )
        self.base, self.scaling, self.factor = base, scaling, factor
        self.original_length = original_length or config.block_size
        self.context_dependent = scaling == "dynamic"  # its base follows the context length

    def frequencies(self, device):
        """theta_i (context-extended; 0 for p-RoPE's NoPE pairs) and the q/k scale (YaRN's)."""
        args = (self.head_dim, self.base, self.scaling, self.factor, self.original_length)
        theta, scale = scaled_rope_frequencies(*args, self.context_len, device=device)
        if self.pairs < theta.numel():  # p-RoPE: the lowest frequencies become 0 (NoPE pairs)
            theta = torch.cat((theta[: self.pairs], theta.new_zeros(theta.numel() - self.pairs)))
        return theta, scale

    def cos_sin(self, pos):
        """cos and sin of theta_i t times the q/k scale, float32: (T, d/2) or (B|1, H|1, T, d/2)."""
        theta, scale = self.frequencies(pos.device)
        angle = pos.to(hp_dtype(pos.device))[..., None] * theta
        return (angle.cos() * scale).float(), (angle.sin() * scale).float()

    def rotate(self, q, k, pos_q, pos_k):
        cos_q, sin_q = self.cos_sin(pos_q)
        cos_k, sin_k = (cos_q, sin_q) if pos_k is pos_q else self.cos_sin(pos_k)
        return rotate_pairs(q, cos_q, sin_q), rotate_pairs(k, cos_k, sin_k)

    def scores(self, q, k, pos_q, pos_k):
        delta = relative_distance(pos_q, pos_k).to(hp_dtype(q.device))
        theta, scale = self.frequencies(q.device)
        s = rotation_scores(q, k, delta[..., None] * theta)
        return s * scale**2 / math.sqrt(self.head_dim)
