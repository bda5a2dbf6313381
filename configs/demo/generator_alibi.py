include("base.py")
encoding = "generator"
encoding_kwargs = {"blocks": [{"type": "zero", "count": "rest"}, {"type": "nilpotent"}]}
out_dir = "out/demo/generator_alibi"
