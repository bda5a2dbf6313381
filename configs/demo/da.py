include("base.py")
encoding = "da"
out_dir = "out/demo/da"
