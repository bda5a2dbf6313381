# The CPU demo with p-RoPE, rope's p option (see configs/p_rope.py for what it is).
include("base.py")
encoding = "rope"
encoding_kwargs = {"p": 0.75}
out_dir = "out/demo/p_rope"
