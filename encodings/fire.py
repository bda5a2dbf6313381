"""FIRE (Li, You, Guruganesh, Ainslie, Ontanon, Zaheer, Sanghai, Yang, Kumar, Bhojanapalli 2023,
"Functional Interpolation for Relative Positions Improves Long Context Transformers", ICLR 2024,
arXiv 2310.04418): a small learned function of the distance, normalised by the query's position,
added to the logits:

    logit(i, j) = q_i . k_j / sqrt(d) + f_theta( psi(i - j) / psi(max(i, L)) )_h
    psi(x)      = log(c x + 1)
    f_theta(x)  = W2 relu(W1 x + b1),   W1, b1 in R^width, W2 in R^{H x width}

one output per head h; c > 0 and the threshold L are learned. "Progressive interpolation": the
input lies in [0, 1] for every causal pair at every length, so a longer sequence asks f for no
input it has not seen; only its spacing gets finer. Not shift invariant, by design: the same
distance gets a different bias at a different query position i once i > L.

Choices the paper leaves to its code follow the reference PyTorch module that accompanies it
(reproduced in several repositories, e.g. mcleish7/arithmetic, cramming/architectures/
embeddings.py: width 32, init_c 0.1, init_L 512, eps 1e-6):
- f_theta: one hidden layer of `mlp_width` = 32 units, ReLU, PyTorch's default Linear init;
- c starts at `init_c` = 0.1 and enters as |c| (psi(x) = log(|c x| + 1): any sign is valid);
- L = |L_multiplier| * init_L: the code learns a multiplier (init 1) of a fixed `init_L` = 512,
  a relative learning rate for L, used as a threshold max(i, L) on the query position;
- the normalisation exactly: psi(i - j) / (psi(max(i, L)) + eps), eps = 1e-6 (a guard for c->0);
- one FIRE per layer (the module sits in each attention layer): per_layer = True;
- distances i - j < 0 (future keys, masked anyway) are clamped to 0 here; the code takes |i - j|.
Two differences that change no attention weight, as softmax ignores a constant per head and
query: the output layer has no bias b2 (the code's nn.Linear has one, whose exact gradient is
0), and the bias is f(x) - f(0), 0 at i = j (as Sandwich's). Both keep the bias and its
gradients free of a large common offset, which bf16 attention rounds: with f(x) alone the
gradients of b1 and W2 were off by 7% and 2.4% under bf16 autocast, with f(x) - f(0) by under 1%
(measured as tests/test_gpu_paths.py does).
Not weight-decayed (nanoPE's rule for positional parameters).
With the default init_L = 512 and training at 512 tokens (configs/fire.py) the normaliser starts
as the constant psi(L) for every training position and the inputs cover [0, 1); past L it grows
with i.

The MLP runs one hidden unit at a time, elementwise on the (Tq, Tk) inputs, in float32: no
(Tq, Tk, width) tensor at evaluation, so memory stays O(heads x query block x T) as the other
biases'. In training, autograd keeps every unit's ReLU output for the backward pass: width
(Tq, Tk) tensors per block and layer (9 MB at T = 256), not batch-sized. The same function
serves FlexAttention's score_mod, and torch.compile can fuse the whole loop (it is all
elementwise). Autocast never touches it (no matmul): the bias is computed in float32, and
rounded once where attention adds it.
"""

import torch
import torch.nn as nn

from encoding import Encoding, relative_distance

EPS = 1e-6  # the authors' guard in the normaliser


def mlp(x, w1, b1, w2):
    """sum_u w2[u] relu(w1[u] x + b1[u]): f_theta on a tensor of inputs x, one hidden unit at a
    time (w2[u] broadcasts against x to give the heads' outputs)."""
    out = 0.0
    for u in range(len(w1)):
        out = out + w2[u] * torch.relu(x * w1[u] + b1[u])
    return out


def normalized_distance(d, i, c, L):
    """psi(d) / (psi(max(i, L)) + eps), psi(x) = log(c x + 1), for distances d >= 0 and query
    positions i (broadcast against each other)."""
    return torch.log1p(c * d) / (torch.log1p(c * torch.maximum(i, L)) + EPS)


class Fire(Encoding):
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
        self.fc2 = nn.Linear(mlp_width, config.n_head, bias=False)  # see the docstring
        self.c = nn.Parameter(torch.tensor(float(init_c)))
        self.L_multiplier = nn.Parameter(torch.tensor(1.0))
        self.init_L = float(init_L)

    def weights(self):
        """(w1, b1, w2) of f_theta in float32: w1, b1 (width,), w2 (width, H): row u holds unit
        u's weight into each head."""
        return self.fc1.weight[:, 0].float(), self.fc1.bias.float(), self.fc2.weight.t().float()

    def c_and_L(self):
        """(|c|, L = |L_multiplier| init_L) as one float32 tensor of two. One 1-D tensor, indexed
        inside score_mod: FlexAttention's eager backward differentiates that, not a captured 0-d
        tensor (a vmap error on CPU)."""
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
