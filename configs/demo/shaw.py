# The CPU demo with the shaw encoding (see configs/shaw.py for what it is).
include("base.py")
encoding = "shaw"
out_dir = "out/demo/shaw"
