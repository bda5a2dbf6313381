# The CPU demo with a generator of real Jordan blocks (see configs/generator_jordan.py): two 4x4
# blocks make logits polynomial in the distance, damped by a learned e^{lam t}; the other half of
# each 16-channel head is RoPE rotations.
include("base.py")
encoding = "generator"
encoding_kwargs = {
    "blocks": [
        {"type": "jordan", "count": 2, "size": 4, "lam": -0.02, "learnable": True},
        {"type": "rotation", "count": "rest"},
    ]
}
out_dir = "out/demo/generator_jordan"
# Jordan logits grow like t^3 e^{lam t} and amplify any rounding of q and k (bfloat16 and TF32
# move them far from float32, scripts/preflight.py): train in float32 without TF32.
dtype = "float32"
tf32 = False
