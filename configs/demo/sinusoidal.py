# The CPU demo with the sinusoidal encoding (see configs/sinusoidal.py for what it is).
include("base.py")
encoding = "sinusoidal"
out_dir = "out/demo/sinusoidal"
