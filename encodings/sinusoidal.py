"""Sinusoidal absolute encoding (Vaswani et al. 2017, "Attention Is All You Need"):

    P[pos, 2i]     = sin(pos / base^(2i/D))
    P[pos, 2i + 1] = cos(pos / base^(2i/D)),   base = 10000, D = n_embd

added to the token embeddings. No parameters; defined for any (also fractional) position.
"""

import torch

from model import Encoding, hp_dtype


class Sinusoidal(Encoding):
    def __init__(self, config, base=10000.0):
        super().__init__(config)
        if config.n_embd % 2:
            raise ValueError("sinusoidal encoding needs an even n_embd")
        self.base = base

    def embed(self, pos):
        dt = hp_dtype(pos.device)
        two_i = torch.arange(0, self.n_embd, 2, device=pos.device, dtype=dt)
        angle = pos.to(dt)[:, None] / self.base ** (two_i / self.n_embd)  # (T, D/2)
        # interleave: sin at even channels, cos at odd ones
        return torch.stack((angle.sin(), angle.cos()), dim=-1).flatten(-2).float()
