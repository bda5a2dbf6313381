include("base.py")
encoding = "alibi"
out_dir = "out/demo/alibi"
