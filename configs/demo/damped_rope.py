include("base.py")
encoding = "damped_rope"
out_dir = "out/demo/damped_rope"
