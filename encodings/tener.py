"""TENER's relative encoding (Yan, Deng, Li, Qiu 2019, section 3.2.1). Per head:

    logit(t, s) = (q_t . k_s  +  q_t . R_{t-s}  +  u . k_s  +  v . R_{t-s}) / sqrt(d)

Transformer-XL's form (xl.py) with R_x = [sin(x c_i)..., cos(x c_i)...], c_i = 10000^(-2i/d),
unprojected and as wide as a head; u, v per head and layer, xavier_normal_ as the authors' code.
1/sqrt(d) is kept (TENER drops it for NER): the temperature is attention's, for every encoding.
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
