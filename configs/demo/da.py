# The CPU demo with the da encoding (see configs/da.py for what it is).
include("base.py")
encoding = "da"
out_dir = "out/demo/da"
