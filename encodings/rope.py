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
original_length (default block_size); see scaled_rope_frequencies below for the formulas.
damped_rope uses the same methods for its rotation.

p-RoPE (Barbero et al. 2024, "Round and round we go! What makes Rotary Positional Encodings
useful?"): option p in (0, 1] keeps the fraction p of RoPE's frequencies, the highest ones, and
leaves the channels of the others unrotated (NoPE channels the model may use for semantics):

    pairs i < m = floor(p d / 2) rotate by theta_i = base^(-2i/d) (the top of RoPE's own schedule,
    not re-spread over the kept pairs); channels 2m .. d-1 enter the logit as a plain dot product.

The paper truncates the lowest frequencies ("0-RoPE" is NoPE, "1-RoPE" RoPE); its pseudocode
(apply_p_rope, as Google DeepMind's gemma library's rope_proportion) keeps m = int(p * d // 2)
inverse frequencies base^(-2i/d), i < m, and zero for the rest: the top of the original schedule.
Its layout is half-split, so its NoPE channels are the last d/2 - m of each half; here, with
interleaved pairs, they are the last d - 2m channels: the same up to a fixed channel permutation.
As in that pseudocode, the NoPE pairs get frequency 0 (cos 1, sin 0): the same one rotation
kernel over all channels, exact on those (a * 1 - b * 0 = a), and measured faster on CPU than
rotating a slice and concatenating the rest (1.2-1.4x, forward and backward); p = 1 (the default)
is RoPE itself. Context extension applies to the kept frequencies exactly as in full RoPE (each
method is a function of the original schedule); YaRN's temperature scales the whole logit, NoPE
channels included.
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

SCALINGS = ("linear", "dynamic", "yarn", "llama3")  # context extension at evaluation time


def check_scaling(scaling):
    if scaling is not None and scaling not in SCALINGS:
        raise ValueError(f"unknown rope scaling {scaling!r}; choose from {SCALINGS}")


def scaled_rope_frequencies(
    dim,
    base=10000.0,
    scaling=None,
    factor=1.0,
    original_length=None,
    length=None,
    beta_fast=32.0,
    beta_slow=1.0,
    low_freq_factor=1.0,
    high_freq_factor=4.0,
    device=None,
):
    """RoPE frequencies under a context-extension method applied at evaluation time, and the
    factor by which q and k are each multiplied (YaRN's attention temperature; 1 otherwise).
    original_length is the training length L0; length the current sequence length L.
      linear  -- position interpolation (Chen et al. 2023): theta_i / factor
      dynamic -- dynamic NTK: base' = base (factor L / L0 - (factor - 1))^(d / (d - 2)) when L > L0
      yarn    -- YaRN (Peng et al. 2023): per-frequency ramp between interpolation (theta / factor)
                 and extrapolation (theta) over the dims that make beta_slow .. beta_fast rotations
                 in L0 tokens; q and k scaled by 0.1 ln(factor) + 1
      llama3  -- Llama 3.1: wavelengths above L0 / low_freq_factor interpolated, below
                 L0 / high_freq_factor kept, a smooth blend in between
    """
    check_scaling(scaling)
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
    if scaling == "yarn":

        def correction_dim(rotations):  # the dim whose pair turns `rotations` times in L0 tokens
            return dim * math.log(L0 / (rotations * 2 * math.pi)) / (2 * math.log(base))

        low = max(math.floor(correction_dim(beta_fast)), 0)
        high = min(math.ceil(correction_dim(beta_slow)), dim - 1)
        high = high + 0.001 if high == low else high
        i = torch.arange(dim // 2, device=theta.device, dtype=theta.dtype)
        extrapolate = 1 - ((i - low) / (high - low)).clamp(0, 1)  # 1: keep theta, 0: theta/factor
        theta = theta / factor * (1 - extrapolate) + theta * extrapolate
        return theta, 0.1 * math.log(factor) + 1.0
    # llama3
    wavelength = 2 * math.pi / theta
    smooth = ((L0 / wavelength - low_freq_factor) / (high_freq_factor - low_freq_factor)).clamp(
        0, 1
    )
    # smooth = 1 for short wavelengths (kept), 0 for long ones (interpolated)
    return theta / factor * (1 - smooth) + theta * smooth, 1.0


class RoPE(Encoding):
    scalings = SCALINGS  # what --rope_scaling may ask of it (checkpoint.rope_scaling_kwargs)

    def __init__(self, config, base=10000.0, scaling=None, factor=1.0, original_length=None, p=1.0):
        super().__init__(config)
        if self.head_dim % 2:
            raise ValueError("rope needs an even head dimension (n_embd / n_head)")
        check_scaling(scaling)
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
        """theta_i (under context extension, if any; 0 for p-RoPE's unrotated pairs) and the q/k
        scale (YaRN's temperature)."""
        theta, scale = scaled_rope_frequencies(
            self.head_dim,
            self.base,
            self.scaling,
            self.factor,
            self.original_length,
            self.context_len,
            device=device,
        )
        if self.pairs < theta.numel():  # p-RoPE: the lowest frequencies become 0 (NoPE pairs)
            theta = torch.cat((theta[: self.pairs], theta.new_zeros(theta.numel() - self.pairs)))
        return theta, scale

    def cos_sin(self, pos):
        """cos and sin of the angles theta_i t, times the q/k scale: (T, d/2) float32 each, or
        (B|1, H|1, T, d/2) for a clock per sequence and head (B|1, H|1, T)."""
        theta, scale = self.frequencies(pos.device)
        angle = pos.to(hp_dtype(pos.device))[..., None] * theta
        return (angle.cos() * scale).float(), (angle.sin() * scale).float()

    def rotate(self, q, k, pos_q, pos_k):
        cos_q, sin_q = self.cos_sin(pos_q)
        cos_k, sin_k = (cos_q, sin_q) if pos_k is pos_q else self.cos_sin(pos_k)
        return rotate_pairs(q, cos_q, sin_q), rotate_pairs(k, cos_k, sin_k)

    def scores(self, q, k, pos_q, pos_k):
        # explicit relative form: sum_i q_i^T R(theta_i (s - t)) k_i, no rotated copies of q or k
        delta = relative_distance(pos_q, pos_k).to(hp_dtype(q.device))
        theta, scale = self.frequencies(q.device)
        phi = delta[..., None] * theta  # (Tq, Tk, d/2) | (B|1, H|1, Tq, Tk, d/2)
        ct = compute_dtype(q.dtype)
        dot, cross = pair_products(q.to(ct), k.to(ct))
        s = phi.cos().to(ct) * dot + phi.sin().to(ct) * cross
        return s.sum(-1) * scale**2 / math.sqrt(self.head_dim)
