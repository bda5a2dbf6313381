# TENER (Yan et al. 2019): Transformer-XL's terms with an unprojected sinusoid (encodings/tener.py).
encoding = "tener"
out_dir = "out/wikitext103/tener"
