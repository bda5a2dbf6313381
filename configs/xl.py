# Transformer-XL's relative encoding (Dai et al. 2019), no recurrence: encodings/xl.py.
encoding = "xl"
out_dir = "out/wikitext103/xl"
