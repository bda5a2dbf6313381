# configs/generator_jordan.py in the demo's 16-wide heads, as there in float32 without TF32.
include("base.py")
encoding = "generator"
encoding_kwargs = {
    "blocks": [
        {"type": "jordan", "count": 2, "size": 4, "lam": -0.02, "learnable": True},
        {"type": "rotation", "count": "rest"},
    ]
}
out_dir = "out/demo/generator_jordan"
dtype = "float32"
tf32 = False
