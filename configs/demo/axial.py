include("base.py")
encoding = "axial"
out_dir = "out/demo/axial"
