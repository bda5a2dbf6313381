"""Relative position embeddings of Huang, Liang, Xu, Xiang 2020 ("Improve Transformer Models with
Better Relative Position Embeddings", Findings of EMNLP 2020): four ways for the query, the key and
a learned embedding of the clipped distance r = clip(i - j) to interact, option `method`:

    1: logit(i, j) = a_{|r|} q_i . k_j / sqrt(d)               a scalar per clipped |i - j|
    2: logit(i, j) = a_{r}   q_i . k_j / sqrt(d)               a scalar per clipped i - j
    3: logit(i, j) = sum_c q_{i,c} k_{j,c} a_{r,c} / sqrt(d)   a vector per clipped i - j
    4: logit(i, j) = (q_i . k_j + q_i . a_r + k_j . a_r) / sqrt(d)          (default)

with r = min(i - j, K) under the causal mask (K = max_relative_position, 16 by default).
Method 4, the paper's best on SQuAD1.1 and GLUE, generalises absolute embeddings:
(q + a).(k + a) expands to it plus a.a. Method 2 is direction-aware, but a causal model only ever
sees i - j >= 0, where it is method 1: both keep the K + 1 entries of that half (the other half
would never get a gradient), and method=2 runs method 1's code.

Choices left to the implementation follow HuggingFace BERT's position_embedding_type=
"relative_key_query", which its documentation names as this paper's method 4:
- one table per layer, shared by the heads of the layer (its distance_embedding, of head size);
- method 4's vectors start at N(0, 0.02) (BERT's initializer_range). The multiplicative tables of
  methods 1-3 start at 1: the model starts as attention without positions, and learns them;
- that code has an entry for every distance below its 512 positions, so does not clip inside the
  training length. We clip at K = 16 by default, Shaw's k and nanoPE's shaw default, so that
  method 4 and Shaw differ by the key term k . a only; set K to block_size - 1 for the authors'
  table. Real-valued distances (float times, a learned clock) are rounded to the nearest entry
  (halves to even, torch.round), as in shaw.py: a learned clock gets no gradient;
- tables are not weight-decayed (nanoPE's rule for positional parameters).

Methods 1-3 are multiplicative: attention runs their scores() in query blocks (explicit), memory
O(query block x T). Method 3 never builds a (Tq, Tk, d) tensor: every key at distance >= K
shares a_K, one matmul with q * a_K, and the K keys nearer than that are corrected one diagonal
at a time (O(Tq K d) work; float times, which may lie closer than 1 apart, take K + 1 masked
matmuls instead). Method 4 is an additive bias gathered from (T, K + 1) logits, as in
shaw.py; it has no FlexAttention score_mod, whose interface passes q but not k.
"""

import math

import torch
import torch.nn as nn

from encoding import Encoding, compute_dtype, relative_distance

from .shaw import relative_logits

METHODS = (1, 2, 3, 4)


class Huang(Encoding):
    rounds_distances = True  # a learned clock would get no gradient: refused (model.make_clock)
    per_layer = True

    def __init__(self, config, method=4, max_relative_position=16):
        super().__init__(config)
        if type(method) is not int or method not in METHODS:
            raise ValueError(f"huang method must be one of 1, 2, 3, 4, got {method!r}")
        K = max_relative_position
        if type(K) is not int or K < 1:
            raise ValueError(f"huang max_relative_position must be an integer >= 1, got {K!r}")
        self.method, self.K = method, K
        self.explicit = method != 4  # multiplicative: attention calls scores() block by block
        self.has_bias = method == 4
        # row r holds a_r for r = i - j = 0 .. K (K: every distance from K on)
        if method in (1, 2):
            self.rel = nn.Parameter(torch.ones(K + 1))
        elif method == 3:
            self.rel = nn.Parameter(torch.ones(K + 1, self.head_dim))
        else:
            self.rel = nn.Parameter(torch.randn(K + 1, self.head_dim) * 0.02)

    def distance_index(self, pos_q, pos_k):
        """Row of the table for each (query, key): round(t - s) clipped to [0, K], (Tq, Tk), or
        (B|1, H|1, Tq, Tk) on a clock. The future (t < s, masked by attention) is clipped to 0."""
        return relative_distance(pos_q, pos_k).round().long().clamp(0, self.K)

    def rel_logits(self, x):
        """x . a_r / sqrt(d) for r = 0 .. K, in float32 at least: (B, H, T, K + 1)."""
        return relative_logits(x, self.rel)

    def bias(self, q, k, pos_q, pos_k):  # method 4: (q . a_r + k . a_r) / sqrt(d)
        index = self.distance_index(pos_q, pos_k)
        B, H, Tq, _ = q.shape
        index = index.expand(B, H, Tq, index.size(-1))
        q_term = self.rel_logits(q).gather(-1, index)  # [t, s] = q_t . a_r(t,s)
        k_term = self.rel_logits(k).mT.gather(-2, index)  # [t, s] = k_s . a_r(t,s)
        return q_term + k_term

    def scores(self, q, k, pos_q, pos_k):
        """Pre-softmax logits (B, H, Tq, Tk); entries above the diagonal (the future, masked)
        are unspecified. Queries are the last Tq keys, as attention calls it."""
        if self.method == 4:
            return super().scores(q, k, pos_q, pos_k)
        ct = compute_dtype(q.dtype)
        q, k = q.to(ct), k.to(ct)
        index = self.distance_index(pos_q, pos_k)
        if self.method in (1, 2):
            s = (q @ k.mT).to(ct) * self.rel.to(ct)[index]
        # the banded path assumes integer positions are token indices, strictly increasing (every
        # caller's); repeated or decreasing integers (packed documents that restart) need the
        # general path, as float times take
        elif pos_q.is_floating_point():
            s = self.elementwise_scores_any_times(q, k, index)
        else:
            s = self.elementwise_scores(q, k, index)
        return s / math.sqrt(self.head_dim)

    def elementwise_scores(self, q, k, index):
        """Method 3, sum_c q_c k_c a_{r,c}, for integer positions (token indices: strictly
        increasing, so a key nearer than K lies fewer than K keys back). One matmul gives every
        key a_K; then for each of the K keys just behind a query, the difference a_r - a_K is
        added on that diagonal: O(Tq K d) work, no (Tq, Tk, d) tensor. index may have leading
        (B|1, H|1) dims (integer positions per sequence, each strictly increasing)."""
        a, K = self.rel.to(q.dtype), self.K
        s = ((q * a[K]) @ k.mT).to(q.dtype)
        B, H, Tq, _ = q.shape
        own = torch.arange(Tq, device=q.device) + (k.size(2) - Tq)  # each query's key index
        rows, cols, band = torch.arange(Tq, device=q.device), [], []
        for o in range(K):  # the key o places back, if there is one
            j = (own - o).clamp(min=0)
            diff = (a[index[..., rows, j]] - a[K]) * (own >= o)[:, None]  # (..., Tq, d); 0: no key
            band.append((q * diff * k[:, :, j]).sum(-1))  # (B, H, Tq)
            cols.append(j)
        cols = torch.stack(cols, -1).expand(B, H, Tq, K)
        return s.scatter_add(-1, cols, torch.stack(band, -1))

    def elementwise_scores_any_times(self, q, k, index):
        """Method 3 for float times, which may lie closer than 1 apart (any number of keys can
        then be nearer than K): K + 1 matmuls, each kept where the key is at that distance."""
        a = self.rel.to(q.dtype)
        s = ((q * a[self.K]) @ k.mT).to(q.dtype)
        for r in range(self.K):
            s = torch.where(index == r, ((q * a[r]) @ k.mT).to(q.dtype), s)
        return s
