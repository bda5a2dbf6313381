# xPos (Sun et al. 2022): RoPE whose pairs also decay, torchscale's values (encodings/xpos.py).
encoding = "xpos"
out_dir = "out/wikitext103/xpos"
