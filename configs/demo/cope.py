# The CPU demo with the cope encoding (see configs/cope.py for what it is).
include("base.py")
encoding = "cope"
out_dir = "out/demo/cope"
