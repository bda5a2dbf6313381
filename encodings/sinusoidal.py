"""Sinusoidal absolute encoding (Vaswani et al. 2017, "Attention Is All You Need"):

    P[pos, 2i]     = sin(pos / base^(2i/D))
    P[pos, 2i + 1] = cos(pos / base^(2i/D)),   base = 10000, D = n_embd

added to the token embeddings: x_t = wte[token_t] + scale * P[t]. No learned parameters; defined
for any (also fractional) position.

Why `scale`: the paper multiplies the token embeddings by sqrt(D) so that they and P (RMS 1/sqrt 2
per channel) are of the same size. GPT-2's init gives the (tied) token embeddings std 0.02; added
unscaled, P would outweigh the tokens ~35 to 1 and the model learns slowly (measured in the demo:
perplexity 20 instead of 8 at the training length). The default scale 0.02 * sqrt(2) gives P the
tokens' per-channel RMS, the same balance as the paper's; scale=1.0 is the literal sum.
"""

import math

import torch

from encoding import Encoding, hp_dtype

TOKEN_RMS = 0.02 * math.sqrt(2)  # P's RMS is 1/sqrt(2): this scale makes it 0.02, as the tokens'


class Sinusoidal(Encoding):
    def __init__(self, config, base=10000.0, scale=TOKEN_RMS):
        super().__init__(config)
        if config.n_embd % 2:
            raise ValueError("sinusoidal encoding needs an even n_embd")
        self.base, self.scale = base, scale

    def table(self, pos):
        """P[pos] exactly as in the paper, float32: (T,) -> (T, D), (B, T) -> (B, T, D)."""
        dt = hp_dtype(pos.device)
        two_i = torch.arange(0, self.n_embd, 2, device=pos.device, dtype=dt)
        angle = pos.to(dt)[..., None] / self.base ** (two_i / self.n_embd)  # (..., T, D/2)
        # interleave: sin at even channels, cos at odd ones
        return torch.stack((angle.sin(), angle.cos()), dim=-1).flatten(-2).float()

    def embed(self, pos):
        return self.scale * self.table(pos)
