# p-RoPE (Barbero et al. 2024): rope rotating only the fraction p of its pairs with the highest
# frequencies (the paper trained p = 0.25 and 0.75); rope's other options act on the kept pairs.
encoding = "rope"
encoding_kwargs = {"p": 0.75}
out_dir = "out/wikitext103/p_rope"
