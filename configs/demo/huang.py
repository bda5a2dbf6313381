# The CPU demo with the huang encoding (see configs/huang.py for what it is).
include("base.py")
encoding = "huang"
out_dir = "out/demo/huang"
