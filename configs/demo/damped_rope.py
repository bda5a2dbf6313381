# The CPU demo with the damped_rope encoding (see configs/damped_rope.py for what it is).
include("base.py")
encoding = "damped_rope"
out_dir = "out/demo/damped_rope"
