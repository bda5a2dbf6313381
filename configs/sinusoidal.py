# Sinusoidal absolute positions (Vaswani et al. 2017): the ALiBi paper's baseline.
encoding = "sinusoidal"
out_dir = "out/wikitext103/sinusoidal"
