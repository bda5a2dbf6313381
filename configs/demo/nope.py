# The CPU demo with the nope encoding (see configs/nope.py for what it is).
include("base.py")
encoding = "nope"
out_dir = "out/demo/nope"
