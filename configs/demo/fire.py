# The CPU demo with the fire encoding (see configs/fire.py for what it is). L starts at the
# training length, as configs/fire.py's 512 does at 512: the MLP's inputs cover [0, 1) in
# training (with L = 512 here they would stop at 0.5 and longer inputs would leave that range).
include("base.py")
encoding = "fire"
encoding_kwargs = {"init_L": 64.0}
out_dir = "out/demo/fire"
