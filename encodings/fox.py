"""FoX, the Forgetting Transformer (Lin, Nikishin, He, Courville 2025, "Forgetting Transformer:
Softmax Attention with a Forget Gate"): no position embedding; each head has a forget gate
f_u = sigmoid(w_h . x_u + b_h) computed from the layer's input, and

    logit(t, s) = q_t . k_s / sqrt(d) + sum_{u=s+1..t} log f_u = q_t . k_s / sqrt(d) - (c_t - c_s),

c the cumulative sum of -log f. That is ALiBi with slope 1 on a learned clock whose steps are
delta_u = -log f_u = softplus(-(w . x_u + b)): model.LearnedClock, which this encoding asks for
(time = "learned"), with the sign of (w, b) absorbed. A constant gate f = e^{-m_h} (w = 0) is
ALiBi's -m_h (t - s) exactly. On positions other than token indices (randomized ones) each
-log f_u is scaled by the position's step, as the clock does. Init as the authors' code:
w ~ N(0, 0.02), b = 0, so f starts near 1/2 (delta = ln 2). One gate per layer and head
(GPTConfig.time_shared = True: one for all).
"""

import math

from encoding import Encoding, relative_distance


class FoX(Encoding):
    time = "learned"
    clock_init = dict(delta=math.log(2.0), weight_std=0.02)

    def bias(self, q, k, pos_q, pos_k):
        return -relative_distance(pos_q, pos_k).float()  # c_s - c_t: (B, H, Tq, Tk) on the clock
