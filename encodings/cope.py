"""CoPE, Contextual Position Encoding (Golovneva, Wang, Weston, Sukhbaatar 2024, "Contextual
Position Encoding: Learning to Count What's Important", arXiv 2405.18719). Positions are counted
by the content: each query decides, per key, whether that key counts, and the position of key s
seen from query t is how many counted keys lie between them. Per head, for s <= t:

    g_ts = sigmoid(q_t . k_s / sqrt(d))                gate: does key s count for query t?
    p_ts = min(sum_{u=s}^{t} g_tu, npos_max)          its contextual position (fractional)
    e[p] = (ceil p - p) e[floor p] + (p - floor p) e[ceil p]     (e[p] itself when p is integer)
    logit(t, s) = (q_t . k_s + q_t . e[p_ts]) / sqrt(d)

e is a learned (npos_max + 1, d) table of position embeddings, rows 0 .. npos_max. With every gate
1, p_ts = t - s + 1 and CoPE is a learned relative encoding (Shaw et al.'s key term, clipped at
npos_max); with gates near 0 for most keys it counts words, sentences, or whatever the query asks.

What the paper leaves open, chosen as the authors' code does (github.com/facebookresearch/RAM,
projects/cope/src/cope/context_position.py and src/models/transformer.py, default flags):
- the gates use the attention's own q and k (no separate key projection: --cope-sep-key off) and
  the scaled logit q . k / sqrt(d) (sigmoid(gate_logits / sqrt(head_dim)));
- the position term is divided by sqrt(d) with the content term ((q.k + q.e[p]) / sqrt(d):
  --cope-nodiv off; the paper's listing adds q.e[p] after the division, which only rescales e);
- p is capped at npos_max (their clamp(max=npos - 1) on a table of npos rows); npos_max defaults
  to the training length block_size (their default npos = block_size + 1: "position 0 is
  possible"). Past the cap, p stays at npos_max, whatever the context length; a smaller cap
  also shrinks the table and the q . e products below;
- e is one table per layer (per_layer; their --cope-shared off), shared by the heads of the layer
  (their (1, head_dim, npos) parameter broadcast over batch x heads), initialised to zeros, so
  that a fresh model is NoPE; not weight-decayed (nanoPE's rule for positional parameters);
- gradients reach p through the interpolation weight p - floor p (floor and ceil are indices),
  and stop where the cap clamps p, as in their code.

How it is computed, per query block (bias() gets the block's queries, which are the last Tq of
the keys it sees): the gates are a (B, H, Tq, Tk) tensor, zeroed where s > t, and p is their
cumulative sum from the query back over the keys (flip, cumsum, flip). Rather than interpolating
e (a (Tq, Tk, d) tensor), z[m] = q_t . e[m] is computed once for the npos_max + 1 integer
positions (B, H, Tq, npos_max + 1) and gathered at floor p and ceil p: q_t . e[p] is linear in e.
Memory O(query block x max(T, npos_max)). Float32 at least, autocast off: p sums hundreds of
gates, and gate logits rounded to bf16 moved it by 0.07-0.25 at T = 2048 (measured, cap 512;
float32: 3e-5).

It depends on q and k, not on positions: shift invariant (trivially), and exact at any positions,
integer or float, offset or not (pos is not used); for the same reason it takes no learned clock
(takes_clock False: GPTConfig(time="learned") refuses it). No score_mod: p_ts sums over the keys
between s and t, which FlexAttention's element-wise score_mod(score, b, h, t, s) cannot see.
"""

import math

import torch
import torch.nn as nn

from attention import causal_mask, no_autocast
from encoding import Encoding, compute_dtype


def gates(q, k):
    """g_ts = sigmoid(q_t . k_s / sqrt(d)), (B, H, Tq, Tk), in q's dtype (float32 at least)."""
    return torch.sigmoid((q @ k.mT) / math.sqrt(q.size(-1)))


def contextual_positions(g, npos_max):
    """p_ts = min(sum_{u=s}^{t} g_tu, npos_max) for gates g (B, H, Tq, Tk) whose queries are the
    last Tq of the keys: gates of keys after their query are zeroed, then summed from the query
    back (the flipped cumsum adds the small terms near the query first)."""
    Tq, Tk = g.shape[-2:]
    seen = causal_mask(Tk - Tq, Tk, g.device)
    g = g.masked_fill(~seen, 0.0)
    return g.flip(-1).cumsum(-1).flip(-1).clamp(max=npos_max)


def interpolated_logits(z, p):
    """z at fractional positions p: (1 - w) z[floor p] + w z[ceil p], w = p - floor p. z holds
    q_t . e[m] for the integer positions m (B, H, Tq, npos + 1); p is (B, H, Tq, Tk)."""
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
        # e[m] for m = 0 .. npos_max, shared by the heads; zeros as in the authors' code
        self.e = nn.Parameter(torch.zeros(npos_max + 1, self.head_dim))

    def bias(self, q, k, pos_q, pos_k):
        with no_autocast(q.device.type):
            ct = compute_dtype(q.dtype)
            q, k = q.to(ct), k.to(ct)
            p = contextual_positions(gates(q, k), self.npos_max)
            z = q @ self.e.to(ct).T  # (B, H, Tq, npos_max + 1): q_t . e[m]
            return interpolated_logits(z, p) / math.sqrt(q.size(-1))
