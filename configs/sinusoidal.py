# Sinusoidal absolute positions (Vaswani et al. 2017, "Attention Is All You Need"): fixed sines
# and cosines added to the token embeddings. The ALiBi paper's baseline that fails past L.
encoding = "sinusoidal"
out_dir = "out/wikitext103/sinusoidal"
