# FoX, the Forgetting Transformer (Lin et al. 2025): ALiBi on a learned clock (docs/time.md).
encoding = "fox"
out_dir = "out/wikitext103/fox"
