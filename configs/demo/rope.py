# The CPU demo with the rope encoding (see configs/rope.py for what it is).
include("base.py")
encoding = "rope"
out_dir = "out/demo/rope"
