"""FIRE (Li et al. 2023, "Functional Interpolation for Relative Positions Improves Long Context
Transformers"): a learned function of the distance, normalised by the query's position:

    logit(i, j) = q_i . k_j / sqrt(d) + f( psi(i - j) / psi(max(i, L)) )_h
    psi(x) = log(c x + 1),   f(x) = W2 relu(W1 x + b1),   W1, b1 in R^width, W2 in R^{H x width}

The input lies in [0, 1] at every length; not shift invariant past L. As the paper's reference
module: width 32, |c| from 0.1, L = |L_multiplier| init_L, normaliser + 1e-6, one per layer.
Softmax ignores a constant per query, so there is no output bias b2 and the bias is f(x) - f(0):
no large common offset for bf16 attention to round into the gradients.
"""

import torch
import torch.nn as nn

from encoding import Encoding, relative_distance

EPS = 1e-6  # the authors' guard in the normaliser


def mlp(x, w1, b1, w2):
    """f(x) = sum_u w2[u] relu(w1[u] x + b1[u]), one hidden unit at a time (w2[u] broadcasts)."""
    out = 0.0
    for u in range(len(w1)):
        out = out + w2[u] * torch.relu(x * w1[u] + b1[u])
    return out


def normalized_distance(d, i, c, L):
    """psi(d) / (psi(max(i, L)) + eps), psi(x) = log(c x + 1), for distances d >= 0."""
    return torch.log1p(c * d) / (torch.log1p(c * torch.maximum(i, L)) + EPS)


class Fire(Encoding):
    compiled_flex_grad = False  # score_mod captures tensors computed in the graph (encoding.py)
    per_layer = True
    shift_invariant = False  # the bias depends on the query position i, not on i - j alone

    def __init__(self, config, mlp_width=32, init_c=0.1, init_L=512.0):
        super().__init__(config)
        if not (isinstance(mlp_width, int) and mlp_width > 0):
            raise ValueError(f"fire mlp_width must be a positive integer, got {mlp_width!r}")
        for name, value in (("init_c", init_c), ("init_L", init_L)):
            if not (isinstance(value, int | float) and value > 0):
                raise ValueError(f"fire {name} must be a positive number, got {value!r}")
        self.fc1 = nn.Linear(1, mlp_width)  # PyTorch's default init, as the authors'
        self.fc2 = nn.Linear(mlp_width, config.n_head, bias=False)  # no b2: docstring
        self.c = nn.Parameter(torch.tensor(float(init_c)))
        self.L_multiplier = nn.Parameter(torch.tensor(1.0))
        self.init_L = float(init_L)

    def weights(self):
        """(w1, b1, w2) of f in float32: w1, b1 (width,), w2 (width, H)."""
        return self.fc1.weight[:, 0].float(), self.fc1.bias.float(), self.fc2.weight.t().float()

    def c_and_L(self):
        """(|c|, L = |L_multiplier| init_L) as one 1-D float32 tensor: FlexAttention's eager
        backward differentiates indexing into it, not a captured 0-d tensor."""
        return torch.stack((self.c, self.L_multiplier * self.init_L)).float().abs()

    def bias(self, q, k, pos_q, pos_k):
        d = relative_distance(pos_q, pos_k).float().clamp(min=0)  # (Tq, Tk) | (B|1, H|1, Tq, Tk)
        cL = self.c_and_L()
        i = pos_q.float()[..., :, None]  # each query's own position, against every key
        x = normalized_distance(d, i, cL[0], cL[1])
        w1, b1, w2 = self.weights()
        f0 = mlp(b1.new_zeros(()), w1, b1, w2)  # (H,): f at x = 0
        # each unit's head weights as (1, H, 1, 1): (1, H, Tq, Tk), or (B|1, H, Tq, Tk) on a clock
        return mlp(x, w1, b1, w2[:, None, :, None, None]) - f0[None, :, None, None]

    def score_mod(self, q, pos):  # the same bias, element-wise, for FlexAttention
        (w1, b1, w2), cL, t = self.weights(), self.c_and_L(), pos
        f0 = mlp(b1.new_zeros(()), w1, b1, w2)

        def mod(score, b, h, i, j):
            d = (t[i] - t[j]).float().clamp(min=0)  # in the positions' dtype first, as bias()
            x = normalized_distance(d, t[i].float(), cL[0], cL[1])
            # head h's weight of each unit, w[h] of a 1-D w (flex differentiates that indexing)
            return score + mlp(x, w1, b1, [w[h] for w in w2]) - f0[h]

        return mod
