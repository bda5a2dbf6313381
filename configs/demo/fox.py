# The CPU demo with the fox encoding (see configs/fox.py for what it is).
include("base.py")
encoding = "fox"
out_dir = "out/demo/fox"
