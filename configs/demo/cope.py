include("base.py")
encoding = "cope"
out_dir = "out/demo/cope"
