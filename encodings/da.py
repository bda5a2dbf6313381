"""DA-Transformer (Wu, Wu, Huang 2021, "DA-Transformer: Distance-aware Transformer", NAACL 2021):
the real distance re-scales each head's ReLU-clipped attention logits,

    logit(t, s) = ReLU(q_t . k_s / sqrt(d)) * (1 + e^{v_h}) / (1 + e^{v_h - w_h |t - s|})

with w_h, v_h learned scalars per head (one pair per head of every layer). The coefficient is a
"learnable sigmoid" of the weighted distance w_h |t - s|: 1 at t = s, rising towards 1 + e^{v_h}
with the distance when w_h > 0 (a head that prefers long-range context), falling towards 0 when
w_h < 0 (short-range); v_h sets the ceiling and the steepness. w is used as it is, of either sign
(no |w| or softplus: the sign is what chooses long or short range). Where the 1/sqrt(d) goes,
inside the ReLU or after the product, does not matter: ReLU commutes with a positive factor. The
ReLU keeps logits >= 0, so a larger coefficient always means more attention.

Choices the paper leaves open: w_h ~ N(0, 0.02) (the scale of the rest of the GPT-2 init;
w = 0 would make every coefficient 1, where v gets no gradient), v_h = 0 (ceiling 2). The
coefficient 2 sigmoid(w_h |t - s|) is then near 1 only for distances well below 1/|w_h| (~50):
at 512 tokens about half the heads start by muting their farthest keys and half by doubling
them (measured over 144 heads: coefficient < 0.1 for 38% of them). Not weight-decayed
(nanoPE's rule for positional parameters). Distances are real: float times are exact, no table,
no clipping.

Multiplicative, so attention runs scores() in query blocks (explicit): memory O(query block x T).
The coefficient is computed as (1 + e^v) sigmoid(w |t - s| - v), which saturates instead of
overflowing at any distance.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from encoding import Encoding, compute_dtype, relative_distance


class DA(Encoding):
    per_layer = True
    explicit = True

    def __init__(self, config):
        super().__init__(config)
        self.w = nn.Parameter(torch.randn(config.n_head) * 0.02)
        self.v = nn.Parameter(torch.zeros(config.n_head))

    def coefficients(self, pos_q, pos_k, dtype=torch.float32):
        """(1 + e^v_h) / (1 + e^{v_h - w_h |t - s|}), (H, Tq, Tk), in dtype (float32 at least).
        t - s is taken in the positions' own dtype, before any rounding."""
        d = relative_distance(pos_q, pos_k).abs().to(dtype)
        w, v = (p.to(dtype)[:, None, None] for p in (self.w, self.v))
        return (1 + torch.exp(v)) * torch.sigmoid(w * d - v)

    def scores(self, q, k, pos_q, pos_k):
        ct = compute_dtype(q.dtype)
        s = (q.to(ct) @ k.to(ct).mT).to(ct) / math.sqrt(self.head_dim)
        return F.relu(s) * self.coefficients(pos_q, pos_k, ct)
