include("base.py")
encoding = "xl"
out_dir = "out/demo/xl"
