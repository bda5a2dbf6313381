# The generator family A(t) = exp(tL) (encodings/generator.py) with real Jordan blocks: each
# 4x4 block makes logits polynomial in the distance (1, t, t^2/2, t^3/6), damped by e^{lam t}
# with a learned lam <= 0. The remaining channels are RoPE rotations. Legal under the causal
# mask, and so far unexplored: a research config, not a recommendation.
encoding = "generator"
encoding_kwargs = {
    "blocks": [
        {"type": "jordan", "count": 4, "size": 4, "lam": -0.02, "learnable": True},
        {"type": "rotation", "count": "rest"},
    ]
}
out_dir = "out/wikitext103/generator_jordan"
# Jordan logits grow like t^3 e^{lam t} and amplify any rounding of q and k (bfloat16 and TF32
# move them far from float32, scripts/preflight.py): train in float32 without TF32.
dtype = "float32"
tf32 = False
