# The buckets shrink with the training length so that all are trained: 16 up to distance
# 16 = L/4, as the ALiBi paper's 32 up to 128 at L = 512.
include("base.py")
encoding = "t5"
encoding_kwargs = {"num_buckets": 16, "max_distance": 16}
out_dir = "out/demo/t5"
