include("base.py")
encoding = "fox"
out_dir = "out/demo/fox"
