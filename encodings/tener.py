"""TENER's relative positional encoding (Yan, Deng, Li, Qiu 2019, "TENER: Adapting Transformer
Encoder for Named Entity Recognition", section 3.2.1). Per head, for query t and key s:

    logit(t, s) = (q_t . k_s  +  q_t . R_{t-s}  +  u . k_s  +  v . R_{t-s}) / sqrt(d)

Transformer-XL's form (encodings/xl.py) with a fixed, unprojected sinusoid as wide as the head:
R_x = [sin(x c_0), ..., sin(x c_{d/2-1}), cos(x c_0), ..., cos(x c_{d/2-1})], c_i = 10000^(-2i/d).
No W_R: the paper's point is that the unprojected sinusoid is direction-aware, R_{-x} =
[-sin(x c), cos(x c)] differs from R_x, so q_t . R_{t-s} tells a key x tokens to the left from one
x tokens to the right (Vaswani's P_t . P_s = sum_i cos(c_i (t - s)) cannot). In a causal language
model only t - s >= 0 occurs; what remains of TENER there is the fixed, unprojected R (against
xl's learned W_R) and u, v.

Choices, and where the authors' code (github.com/fastnlp/TENER, modules/relative_transformer.py
and modules/transformer.py) differs:
- Frequencies c_i = 10000^(-2i/d) and the distance t - s, as the paper's equations. Their code
  uses tensor2tensor's frequencies exp(-i ln(10000) / (d/2 - 1)), the distance s - t in the q and
  v terms, and adds a fourth term k_s . R_{t-s} that the paper does not have; we follow the paper.
- Sines then cosines, as their code (the paper's interleaved order is a permutation of q's
  channels, which the learned query projection absorbs).
- u, v per head and per layer (each layer deep-copies its attention module), initialised as their
  xavier_normal_ on an (n_head, d) matrix: N(0, 2 / (n_head + d)). Not weight-decayed.
- 1/sqrt(d) is kept. TENER drops it for NER ("un-scaled attention": sharper weights, as a few
  context words decide a label). For language modelling we keep it: nanoPE compares encodings
  under one attention whose content term model.py scales (an encoding cannot unscale it, and
  scaling only the position terms would be neither TENER nor Transformer-XL); the temperature
  is an attention choice, not a positional one, and GPT-2's init and learning rates assume it.
- TENER's keys are not projected (K = H); that is outside the encoding: nanoPE keeps its W_k.

Computed as xl's (xl.relative_bias: angle addition, one matmul per query block, exact at any
positions, no (Tq, Tk, d) tensor) with p_t = q_t + v; no score_mod, for the same reason.
"""

import math

import torch
import torch.nn as nn

from encoding import Encoding

from .xl import relative_bias


class Tener(Encoding):
    per_layer = True  # u, v of each layer

    def __init__(self, config):
        super().__init__(config)
        if self.head_dim % 2:
            raise ValueError(
                f"tener needs an even head dimension (R's sines and cosines), got {self.head_dim}"
            )
        H, d = config.n_head, self.head_dim
        std = math.sqrt(2.0 / (H + d))  # xavier_normal_ of an (H, d) matrix
        self.u = nn.Parameter(torch.randn(H, d) * std)
        self.v = nn.Parameter(torch.randn(H, d) * std)

    def bias(self, q, k, pos_q, pos_k):
        return relative_bias(q, k, self.u, self.v, None, pos_q, pos_k)  # R itself: no W_R
