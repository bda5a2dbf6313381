"""CoPE, Contextual Position Encoding (Golovneva, Wang, Weston, Sukhbaatar 2024): positions
counted by the content. Per head, for s <= t:

    g_ts = sigmoid(q_t . k_s / sqrt(d))                gate: does key s count for query t?
    p_ts = min(sum_{u=s}^{t} g_tu, npos_max)          its contextual position (fractional)
    e[p] = (ceil p - p) e[floor p] + (p - floor p) e[ceil p]
    logit(t, s) = (q_t . k_s + q_t . e[p_ts]) / sqrt(d)

e a learned (npos_max + 1, d) table per layer, shared by its heads; as the authors' code
(facebookresearch/RAM): gates from attention's own q, k, npos_max = block_size, e zeros at init
(NoPE). In float32: bf16 gate logits shift p by up to 0.25 at T = 2048. Never reads pos.
"""

import math

import torch
import torch.nn as nn

from attention import causal_mask, no_autocast
from encoding import Encoding, compute_dtype


def gates(q, k):
    """g_ts = sigmoid(q_t . k_s / sqrt(d)), (B, H, Tq, Tk), in q's dtype (float32 at least)."""
    return torch.sigmoid((q @ k.mT) / math.sqrt(q.size(-1)))


def interpolated_logits(z, p):
    """(1 - w) z[floor p] + w z[ceil p], w = p - floor p, for z[m] = q_t . e[m] (B, H, Tq, npos + 1)
    and p (B, H, Tq, Tk): q_t . e[p] is linear in e, so no (Tq, Tk, d) tensor."""
    floor = p.detach().floor()
    w = p - floor  # the gradient reaches p (the gates) through w only
    z_floor = z.gather(-1, floor.long())
    z_ceil = z.gather(-1, p.detach().ceil().long())
    return z_floor * (1 - w) + z_ceil * w


class CoPE(Encoding):
    per_layer = True  # one table per layer (the authors' --cope-shared off)
    takes_clock = False  # counts with its gates, never reads pos: a learned clock would be unused

    def __init__(self, config, npos_max=None):
        super().__init__(config)
        npos_max = config.block_size if npos_max is None else npos_max
        if isinstance(npos_max, bool) or not isinstance(npos_max, int) or npos_max < 1:
            raise ValueError(
                f"cope npos_max must be a positive integer (None: block_size), got {npos_max!r}"
            )
        self.npos_max = npos_max
        self.e = nn.Parameter(torch.zeros(npos_max + 1, self.head_dim))

    def bias(self, q, k, pos_q, pos_k):
        with no_autocast(q.device.type):
            ct = compute_dtype(q.dtype)
            q, k = q.to(ct), k.to(ct)
            # p_ts = min(sum_{u=s}^{t} g_tu, npos_max), summed from t back (queries: last Tq keys)
            Tq, Tk = q.size(2), k.size(2)
            g = gates(q, k).masked_fill(~causal_mask(Tk - Tq, Tk, q.device), 0.0)
            p = g.flip(-1).cumsum(-1).flip(-1).clamp(max=self.npos_max)
            z = q @ self.e.to(ct).T  # (B, H, Tq, npos_max + 1): q_t . e[m]
            return interpolated_logits(z, p) / math.sqrt(q.size(-1))
