# The CPU demo with the alibi encoding (see configs/alibi.py for what it is).
include("base.py")
encoding = "alibi"
out_dir = "out/demo/alibi"
