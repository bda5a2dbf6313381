# ALiBi (Press, Smith, Lewis 2022): fixed per-head slopes on the distance (encodings/alibi.py).
encoding = "alibi"
out_dir = "out/wikitext103/alibi"
