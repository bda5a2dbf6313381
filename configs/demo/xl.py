# The CPU demo with the xl encoding (see configs/xl.py for what it is).
include("base.py")
encoding = "xl"
out_dir = "out/demo/xl"
