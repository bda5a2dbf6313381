"""Relative position embeddings of Huang, Liang, Xu, Xiang 2020: query, key and a learned
embedding a of the clipped distance r = min(i - j, K) (max_relative_position, 16), `method`:

    1, 2: logit(i, j) = a_r q_i . k_j / sqrt(d)                  a scalar per r (causal: 1 = 2)
    3:    logit(i, j) = sum_c q_{i,c} k_{j,c} a_{r,c} / sqrt(d)   a vector per r
    4:    logit(i, j) = (q_i . k_j + q_i . a_r + k_j . a_r) / sqrt(d)     (default, the best)

As HuggingFace BERT's "relative_key_query": one table per layer, shared by its heads; method 4's
vectors N(0, 0.02), methods 1-3's ones (no positions at init). K = 16 as Shaw's: method 4 differs
from Shaw by k . a only. Methods 1-3 multiply (scores() in query blocks); 4 is a bias.
"""

import math

import torch
import torch.nn as nn

from encoding import Encoding, compute_dtype, relative_distance

from .shaw import relative_logits


class Huang(Encoding):
    rounds_distances = True
    per_layer = True

    def __init__(self, config, method=4, max_relative_position=16):
        super().__init__(config)
        if type(method) is not int or method not in (1, 2, 3, 4):
            raise ValueError(f"huang method must be one of 1, 2, 3, 4, got {method!r}")
        K = max_relative_position
        if type(K) is not int or K < 1:
            raise ValueError(f"huang max_relative_position must be an integer >= 1, got {K!r}")
        self.method, self.K = method, K
        self.explicit = method != 4  # multiplicative: attention calls scores() block by block
        self.has_bias = method == 4
        # row r holds a_r for r = i - j = 0 .. K (K: every distance from K on)
        shape = (K + 1,) if method in (1, 2) else (K + 1, self.head_dim)
        self.rel = nn.Parameter(torch.randn(shape) * 0.02 if method == 4 else torch.ones(shape))

    def distance_index(self, pos_q, pos_k):
        """Table row of each (query, key): round(t - s) clipped to [0, K] (the future to 0)."""
        return relative_distance(pos_q, pos_k).round().long().clamp(0, self.K)

    def bias(self, q, k, pos_q, pos_k):  # method 4: (q . a_r + k . a_r) / sqrt(d)
        index = self.distance_index(pos_q, pos_k)
        B, H, Tq, _ = q.shape
        index = index.expand(B, H, Tq, index.size(-1))
        q_term = relative_logits(q, self.rel).gather(-1, index)  # [t, s] = q_t . a_r(t,s)
        k_term = relative_logits(k, self.rel).mT.gather(-2, index)  # [t, s] = k_s . a_r(t,s)
        return q_term + k_term

    def scores(self, q, k, pos_q, pos_k):
        """Logits (B, H, Tq, Tk) of the last Tq keys as queries; the future's are unspecified."""
        if self.method == 4:
            return super().scores(q, k, pos_q, pos_k)
        ct = compute_dtype(q.dtype)
        q, k = q.to(ct), k.to(ct)
        index = self.distance_index(pos_q, pos_k)
        if self.method in (1, 2):
            s = (q @ k.mT).to(ct) * self.rel.to(ct)[index]
        # the banded path needs strictly increasing integer positions (token indices)
        elif pos_q.is_floating_point():
            s = self.elementwise_scores_any_times(q, k, index)
        else:
            s = self.elementwise_scores(q, k, index)
        return s / math.sqrt(self.head_dim)

    def elementwise_scores(self, q, k, index):
        """Method 3 for strictly increasing integer positions: every key gets a_K in one matmul,
        then each of the K diagonals behind the queries adds a_r - a_K. O(Tq K d) work."""
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
        """Method 3 for float times (any number of keys may be nearer than K): K + 1 matmuls,
        each kept where the key is at that distance."""
        a = self.rel.to(q.dtype)
        s = ((q * a[self.K]) @ k.mT).to(q.dtype)
        for r in range(self.K):
            s = torch.where(index == r, ((q * a[r]) @ k.mT).to(q.dtype), s)
        return s
