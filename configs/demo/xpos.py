# The CPU demo with the xpos encoding (see configs/xpos.py for what it is).
include("base.py")
encoding = "xpos"
out_dir = "out/demo/xpos"
