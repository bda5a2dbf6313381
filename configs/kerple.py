# KERPLE (Chi et al. 2022): a learned kernel of the distance per head (encodings/kerple.py).
encoding = "kerple"
out_dir = "out/wikitext103/kerple"
