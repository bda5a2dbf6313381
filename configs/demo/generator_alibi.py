# The CPU demo with ALiBi written as a generator: a nilpotent block on two virtual coordinates
# (see configs/generator_alibi.py). Same scores as ALiBi; the row should match alibi's.
include("base.py")
encoding = "generator"
encoding_kwargs = {"blocks": [{"type": "zero", "count": "rest"}, {"type": "nilpotent"}]}
out_dir = "out/demo/generator_alibi"
