# Shared settings of the CPU demo (configs/sweeps/demo.py, `make demo`): every encoding trains on
# the offline demo corpus (Python's documentation, byte tokens) at 64 bytes, short enough that 32x
# is cheap to evaluate. Tiny models (~0.13M parameters), yet the ALiBi paper's picture shows:
# 32 x 64 = 2,048 tokens per iteration, 800 iterations = 1.4 passes over the training split.
dataset = "demo"
out_dir = "out/demo/base"  # each configs/demo/<encoding>.py sets its own
block_size = 64
batch_size = 32
gradient_accumulation_steps = 1
n_layer = 2
n_head = 4
n_embd = 64
dropout = 0.0  # 1.4 epochs of a tiny model: nothing to regularise
bias = False

learning_rate = 3e-3  # tiny models take (and need, in 800 steps) a large learning rate
max_iters = 800
warmup_iters = 50
min_lr = 3e-4
weight_decay = 0.1
beta2 = 0.99  # few tokens per step: a longer second-moment average is steadier

eval_interval = 100  # val loss at 0, 100, ..., 800 for the training curves
eval_iters = 10  # 10 x 32 windows: 20k tokens, ~1/3 of the val split
log_interval = 50
device = "cpu"  # the demo is meant for CPU; train.py also takes --device=cuda
compile = False
