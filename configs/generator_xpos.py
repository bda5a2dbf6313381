# xPos as a generator (docs/generator.md): one damped block per pair, the same scores, slower.
# For the head dimension set before this file (768 / 12 = 64): a later --n_embd or --n_head
# makes the generator report a channel mismatch.
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
