# The CPU demo with the sandwich encoding (see configs/sandwich.py for what it is).
include("base.py")
encoding = "sandwich"
out_dir = "out/demo/sandwich"
