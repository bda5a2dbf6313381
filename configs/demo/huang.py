include("base.py")
encoding = "huang"
out_dir = "out/demo/huang"
