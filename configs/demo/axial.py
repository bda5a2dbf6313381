# The CPU demo with the axial encoding (see configs/axial.py for what it is): shape (8, 8), dims
# (48, 16) by default at block_size 64, n_embd 64.
include("base.py")
encoding = "axial"
out_dir = "out/demo/axial"
