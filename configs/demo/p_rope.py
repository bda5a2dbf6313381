include("base.py")
encoding = "rope"
encoding_kwargs = {"p": 0.75}
out_dir = "out/demo/p_rope"
