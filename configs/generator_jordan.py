# A generator of real Jordan blocks (docs/generator.md): logits polynomial in the distance, damped
# by a learned e^{lam t}; the rest RoPE. A research config, not a recommendation.
encoding = "generator"
encoding_kwargs = {
    "blocks": [
        {"type": "jordan", "count": 4, "size": 4, "lam": -0.02, "learnable": True},
        {"type": "rotation", "count": "rest"},
    ]
}
out_dir = "out/wikitext103/generator_jordan"
# its logits grow like t^3 e^{lam t} and amplify the rounding of q and k (bfloat16 and TF32 move
# them far from float32, scripts/preflight.py): float32 without TF32
dtype = "float32"
tf32 = False
