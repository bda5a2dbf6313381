include("base.py")
encoding = "sinusoidal"
out_dir = "out/demo/sinusoidal"
