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
# Jordan logits grow like t^3 e^{lam t} and amplify any rounding of q and k: in
# scripts/preflight.py bfloat16 moved the logits 0.7 (relative, GPT-2 width) and TF32 0.08 (demo,
# 4x length) away from float32. Train in float32 without TF32 (slower on a GPU), so that the
# numbers mean what they say.
dtype = "float32"
tf32 = False
