include("base.py")
encoding = "learned"
out_dir = "out/demo/learned"
