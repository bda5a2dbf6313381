# The CPU demo with the tener encoding (see configs/tener.py for what it is).
include("base.py")
encoding = "tener"
out_dir = "out/demo/tener"
