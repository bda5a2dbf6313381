include("base.py")
encoding = "shaw"
out_dir = "out/demo/shaw"
