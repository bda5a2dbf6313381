include("base.py")
encoding = "tener"
out_dir = "out/demo/tener"
