"""Sinusoidal absolute positions (Vaswani et al. 2017), added to the token embeddings:

    P[pos, 2i] = sin(pos / base^(2i/D)),   P[pos, 2i + 1] = cos(pos / base^(2i/D)),   D = n_embd
    x_t = wte[token_t] + scale * P[t]

GPT-2's tokens have std 0.02, which P (RMS 1/sqrt 2) would outweigh ~35 to 1: the default scale
gives P the tokens' RMS, as the paper's sqrt(D) on the tokens does; scale=1.0 is the literal sum.
"""

import math

import torch

from encoding import Encoding, rope_frequencies

TOKEN_RMS = 0.02 * math.sqrt(2)  # P's RMS is 1/sqrt(2): this scale makes it 0.02, as the tokens'


class Sinusoidal(Encoding):
    def __init__(self, config, base=10000.0, scale=TOKEN_RMS):
        super().__init__(config)
        if config.n_embd % 2:
            raise ValueError("sinusoidal encoding needs an even n_embd")
        self.base, self.scale = base, scale

    def table(self, pos):
        """P[pos] as in the paper, float32: (T,) -> (T, D), (B, T) -> (B, T, D)."""
        w = rope_frequencies(self.n_embd, self.base, pos.device)  # base^(-2i/D), in hp_dtype
        angle = pos.to(w.dtype)[..., None] * w  # (..., T, D/2)
        return torch.stack((angle.sin(), angle.cos()), dim=-1).flatten(-2).float()  # interleaved

    def embed(self, pos):
        return self.scale * self.table(pos)
