# L starts at the training length, as configs/fire.py's: the MLP's inputs cover [0, 1).
include("base.py")
encoding = "fire"
encoding_kwargs = {"init_L": 64.0}
out_dir = "out/demo/fire"
