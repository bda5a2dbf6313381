# ALiBi as a generator: a nilpotent block on two virtual coordinates adds -m (t - s) to every
# logit (docs/generator.md); the same scores as alibi (tests/test_generator.py).
encoding = "generator"
encoding_kwargs = {"blocks": [{"type": "zero", "count": "rest"}, {"type": "nilpotent"}]}
out_dir = "out/wikitext103/generator_alibi"
