# The CPU demo with the learned encoding (see configs/learned.py for what it is).
include("base.py")
encoding = "learned"
out_dir = "out/demo/learned"
