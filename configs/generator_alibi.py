# ALiBi written as a generator (encodings/generator.py): the nilpotent block N = [[0, 1], [0, 0]]
# on two virtual coordinates q_aug = (1, 0), k_aug = (0, -m) gives exp(tN) = [[1, t], [0, 1]] and
# adds -m (t - s) to every logit (applied as that bias, computed in t - s); all of q and k's own
# channels are plain (zero generator).
# Same slopes as ALiBi, same scores (tests/test_generator.py checks it): the reduction, runnable.
encoding = "generator"
encoding_kwargs = {"blocks": [{"type": "zero", "count": "rest"}, {"type": "nilpotent"}]}
out_dir = "out/wikitext103/generator_alibi"
