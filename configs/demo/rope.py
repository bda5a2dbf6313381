include("base.py")
encoding = "rope"
out_dir = "out/demo/rope"
