# xPos (configs/xpos.py) written as a generator (encodings/generator.py): one damped block
# e^{alpha_i t} R(-theta_i t) per rotation pair i (a block's decay varies by head, not by pair),
# theta_i = 10000^(-2i/d), alpha_i = ln(zeta_i) / 512, zeta_i = (2i/d + 0.4) / 1.4. Same scores
# as xpos, slower. Written for the head dimension of the settings loaded before this file (768 /
# 12 = 64): a --n_embd or --n_head on the command line comes after, and the generator then
# reports the channel mismatch.
import math

_d = n_embd // n_head  # noqa: F821 (set by configs/base.py before this file runs)
encoding = "generator"
encoding_kwargs = {
    "blocks": [
        {
            "type": "damped",
            "omega": 10000.0 ** (-2 * i / _d),
            "alpha": math.log((2 * i / _d + 0.4) / 1.4) / 512,
        }
        for i in range(_d // 2)
    ]
}
out_dir = "out/wikitext103/generator_xpos"
