include("base.py")
encoding = "xpos"
out_dir = "out/demo/xpos"
