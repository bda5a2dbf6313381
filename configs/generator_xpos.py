# xPos (Sun et al. 2022; configs/xpos.py) written as a generator (encodings/generator.py): one
# damped block e^{alpha_i t} R(-theta_i t) per rotation pair i, with RoPE's frequency
# theta_i = 10000^(-2i/d) and xPos's decay alpha_i = ln(zeta_i) / 512, zeta_i = (2i/d + 0.4) / 1.4,
# the same for every head: a damped rotation with one decay per frequency. One block per pair, as
# a damped block's decay may vary by head but not by block. Same scores as xpos
# (tests/test_xpos_prope.py checks it); slower, as the generator applies each block separately.
# The blocks are written for the head dimension n_embd // n_head of the settings this file is
# loaded with (configs/base.py: 768 / 12 = 64); a --n_embd or --n_head given on the command line
# is applied after this file runs, and the generator then reports the channel mismatch.
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
