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
# Jordan logits grow like t^3 e^{lam t} and amplify any rounding of q and k: in
# scripts/preflight.py bfloat16 moved the logits 0.7 (relative, GPT-2 width) and TF32 0.08 (demo,
# 4x length) away from float32. Train in float32 without TF32 (slower on a GPU), so that the
# numbers mean what they say.
dtype = "float32"
tf32 = False
