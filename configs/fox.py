# FoX, the Forgetting Transformer (Lin et al. 2025): no position embedding; a forget gate per
# layer and head, f_u = sigmoid(w . x_u + b), adds sum_{u=s+1..t} log f_u to the logit of (t, s):
# ALiBi on a clock learned from the data (encodings/fox.py; docs/time.md).
encoding = "fox"
out_dir = "out/wikitext103/fox"
