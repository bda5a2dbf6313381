# The CPU demo with the T5 bias (see configs/t5.py for what it is). The paper's setting (ALiBi
# paper: 32 buckets up to distance 128 at training length 512) trains every bucket, the last one
# included; at our training length 64 the default buckets past distance ~64 would never be
# trained. So the buckets shrink with the training length: 16 buckets (8 exact, 8 log-spaced)
# up to distance 16 = L/4, as 128 = 512/4 in the paper.
include("base.py")
encoding = "t5"
encoding_kwargs = {"num_buckets": 16, "max_distance": 16}
out_dir = "out/demo/t5"
