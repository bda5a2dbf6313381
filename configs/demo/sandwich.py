include("base.py")
encoding = "sandwich"
out_dir = "out/demo/sandwich"
