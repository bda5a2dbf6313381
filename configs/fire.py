# FIRE (Li et al. 2023): a learned MLP bias of the normalised distance, one per layer
# (encodings/fire.py). init_L = 512 = the training length: training sees inputs in [0, 1).
encoding = "fire"
out_dir = "out/wikitext103/fire"
