include("base.py")
encoding = "kerple"
out_dir = "out/demo/kerple"
