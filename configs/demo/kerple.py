# The CPU demo with the kerple encoding (see configs/kerple.py for what it is).
include("base.py")
encoding = "kerple"
out_dir = "out/demo/kerple"
