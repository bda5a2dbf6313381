"""FoX, the Forgetting Transformer (Lin, Nikishin, He, Courville 2025): a forget gate
f_u = sigmoid(w_h . x_u + b_h) per head and layer, and no position embedding:

    logit(t, s) = q_t . k_s / sqrt(d) + sum_{u=s+1..t} log f_u

ALiBi with slope 1 on a learned clock whose steps are -log f (time = "learned"; a constant gate
e^{-m_h} is ALiBi). Init as the authors' code: w ~ N(0, 0.02), b = 0 (f near 1/2).
"""

import math

from encoding import Encoding, relative_distance


class FoX(Encoding):
    time = "learned"
    clock_init = dict(delta=math.log(2.0), weight_std=0.02)

    def bias(self, q, k, pos_q, pos_k):
        return -relative_distance(pos_q, pos_k).float()  # c_s - c_t: (B, H, Tq, Tk) on the clock
