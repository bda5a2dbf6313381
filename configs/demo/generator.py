# The CPU demo with a mixed generator, configs/generator.py in the demo's 16-wide heads: 4 RoPE
# pairs, 2 damped pairs (RetNet decays) and 4 channels without position.
include("base.py")
encoding = "generator"
encoding_kwargs = {
    "blocks": [
        {"type": "rotation", "count": 4},
        {"type": "damped", "count": 2},
        {"type": "zero", "count": "rest"},
    ]
}
out_dir = "out/demo/generator"
