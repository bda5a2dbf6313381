"""Time learned from the data (GPTConfig.time = "learned"): relative encodings run on a clock."""

import math

import torch
import torch.nn as nn
from torch.nn import functional as F

from attention import no_autocast
from encoding import hp_dtype

TIMES = ("index", "learned")


class LearnedClock(nn.Module):
    """Mamba's Delta, per head: token u advances head h's clock at a rate
    r_{u,h} = softplus(w_h . x_u + b_h) >= 0 over its position's step,

        t_{u,h} = p_0 + sum_{0 < u' <= u} delta_{u',h},   delta_u = r_u (p_u - p_{u-1}),

    so t - s = sum_{u=s+1..t} delta_u. Init w = 0, b = softplus^-1(1): r = 1 exactly, and a fresh
    model is the model on p, bit for bit. Sums in float64 (float32 on mps): far positions keep
    their small steps."""

    def __init__(self, n_embd, n_head, delta=1.0, weight_std=0.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_head, n_embd) * weight_std)
        self.bias = nn.Parameter(torch.full((n_head,), math.log(math.expm1(delta))))

    def forward(self, x, pos, past=None):
        """Clock (B, H, T) of the tokens x (B, T, C), whose positions are the last T of pos
        (..., T0 + T); past: the clock (B, H, T0) of the tokens before them (decoding)."""
        with no_autocast(x.device.type):  # a bf16 rate would round every step
            # (H, C) @ (B, C, T) gives (B, H, T) directly: a transposed linear output made
            # aot_eager's backward view a strided gradient
            z = self.weight @ x.float().transpose(1, 2) + self.bias[:, None]
        rate = F.softplus(z).to(hp_dtype(x.device))
        T, p = x.size(1), pos.to(rate.dtype)
        if past is None:  # the first token keeps its position
            p = p[..., -T:]
            return p[..., :1] + (rate * torch.diff(p, dim=-1, prepend=p[..., :1])).cumsum(-1)
        return past[..., -1:] + (rate * torch.diff(p[..., -T - 1 :], dim=-1)).cumsum(-1)


def make_clock(config, pe):
    """The learned clock config.time and the encoding ask for, or None (token index)."""
    if pe.time != "learned" and config.time != "learned":
        return None
    if not pe.takes_clock:
        raise ValueError(
            f"time='learned' needs an encoding that reads relative positions; '{config.encoding}'"
            " does not (absolute, content-only or none): use time='index'"
        )
    if pe.rounds_distances:
        raise ValueError(
            f"time='learned': '{config.encoding}' rounds t - s to integer buckets, so no gradient"
            " would reach the clock; use time='index' or an encoding that reads real distances"
        )
    return LearnedClock(config.n_embd, config.n_head, **pe.clock_init)


def clock_positions(clock, x, pos, state):
    """The clock of every token attention sees: with a cache (state: a LayerKV or KVCache holding
    the clock so far), the cached tokens' times followed by the new tokens'."""
    past = None if state is None else state.clock
    new = clock(x, pos, past)
    if state is None:
        return new
    state.clock = new if past is None else torch.cat((past, new), dim=-1)
    return state.clock
