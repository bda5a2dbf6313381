# The generator family A(t) = exp(tL) (docs/generator.md): edit the blocks to build your own.
encoding = "generator"
encoding_kwargs = {
    "blocks": [
        {"type": "rotation", "count": 24},  # 48 RoPE channels
        {"type": "damped", "count": 4},  # 8 channels of damped RoPE (RetNet decays)
        {"type": "zero", "count": "rest"},  # the remaining 8 channels carry no position
    ]
}
out_dir = "out/wikitext103/generator"
