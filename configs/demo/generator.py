# configs/generator.py in the demo's 16-wide heads.
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
