# Defaults for every run, and the schema of config keys: a key is valid if and only if this file
# assigns it, and its value here fixes the key's type (an int is accepted for a float). Encoding
# files (configs/rope.py, ...) change a few lines on top of it.
#
# Sized for WikiText-103 on one A100/H100-class GPU (GPT-2 small, 328M tokens: README, "Train one
# encoding"); block_size 512 is the ALiBi paper's training length. On a CPU use configs/demo/*.py.

# I/O
out_dir = "out/wikitext103/base"  # run directory: ckpt.pt, log.jsonl, config.json
eval_interval = 500  # evaluate (and checkpoint) every this many iterations, and at iter 0
log_interval = 10  # print a progress line every this many iterations
eval_iters = 30  # evaluation batches: 30 x 16 windows x 512 = 246k tokens ~ all of val
always_save_checkpoint = True  # False: checkpoint at an evaluation only if val loss improved
init_from = "scratch"  # "scratch" or "resume" (continue the run in out_dir exactly)

# wandb logging (WANDB_MODE=offline works without network)
wandb_log = False
wandb_project = "nanope"
wandb_run_name = ""  # empty: the last part of out_dir

# data: data_dir/dataset/{train,val}.bin and meta.json, made by data/prepare.py
dataset = "wikitext103"
data_dir = "data"
gradient_accumulation_steps = 4  # total over all GPUs; divided by the number of DDP processes
batch_size = 16  # windows per micro-step (per GPU)
block_size = 512  # training length L

# model
encoding = "rope"  # a file in encodings/; see configs/<encoding>.py
encoding_kwargs = {}  # that encoding's options, e.g. {"base": 10000.0} for rope
n_layer = 12
n_head = 12
n_embd = 768
dropout = 0.1  # residual and embedding dropout: ~2.8 passes over 120M tokens overfit a little
# dropout of attention probabilities. 0: FlexAttention has none, so with it on, the bias encodings
# would train through SDPA's query blocks on CUDA instead (slower, and not what preflight checks)
attn_dropout = 0.0
bias = False  # biases in Linears and LayerNorms (False: slightly faster, as good)
# "index": positions are token indices; "learned": a learned clock per layer and head, for the
# relative encodings (docs/time.md)
time = "index"
time_shared = False  # time="learned": one clock for all layers (from the embeddings), not one each
# "index": training positions 0 .. T-1; "randomized": sorted distinct positions drawn from
# [0, max_train_position) per training sequence (Ruoss et al. 2023); evaluation uses 0 .. T-1
train_positions = "index"
max_train_position = 0  # >= block_size (0: 8 x block_size); learned tables get that many rows

# AdamW
learning_rate = 6e-4  # peak learning rate
max_iters = 10000
weight_decay = 0.1
beta1 = 0.9
beta2 = 0.95
grad_clip = 1.0  # clip the global gradient norm at this value; 0.0 disables

# learning-rate schedule: linear warmup, then cosine decay to min_lr
decay_lr = True
warmup_iters = 500
lr_decay_iters = 0  # iteration where the cosine reaches min_lr; 0 means max_iters
min_lr = 6e-5  # ~learning_rate / 10 (Chinchilla)

# system
device = "auto"  # "auto" (cuda if available, else cpu), "cpu", "cuda", "cuda:1", "mps"
# "auto": bfloat16 autocast on GPUs that support it, else float32 (always on CPU); also "float32",
# "bfloat16", "float16" (with a grad scaler)
dtype = "auto"
tf32 = True  # CUDA matmuls in TF32; False where an encoding amplifies q, k rounding (Jordan blocks)
# attention of the bias encodings (ALiBi, T5, ...): "auto" FlexAttention on CUDA, SDPA elsewhere;
# "sdpa"; "flex" wherever it runs
attn_backend = "auto"
compile = True  # torch.compile the model (inductor: CUDA, or CPU with a C++ compiler); MPS: eager
seed = 1337
peak_tflops = 0.0  # the GPU's peak, for the MFU in the progress line; 0: from its name (train.py)
