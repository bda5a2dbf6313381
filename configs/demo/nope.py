include("base.py")
encoding = "nope"
out_dir = "out/demo/nope"
