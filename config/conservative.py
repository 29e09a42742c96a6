# Preset A, conservative: 12 layers x 768 (GPT-2 small's blocks), recursion 3 loops x T=2 x 8 supervision
# steps, GPT-2 BPE on OpenWebText.   python train.py config/conservative.py
#   torchrun --standalone --nproc_per_node=8 train.py config/conservative.py
# Sizes (python bench.py --presets): 114M non-embedding + 39M embedding parameters; 26 GFLOPs per training
# token, 33x a plain GPT with the same blocks, because every token runs 8 supervision steps of
# 2 cycles x 4 net calls x 12 layers.
out_dir = 'out-conservative'
wandb_run_name = 'conservative'
dataset = 'openwebtext'
n_layer = 12
n_embd = 768
n_head = 12
n_kv_head = 4   # GQA: 3 query heads per key/value head
n_loops = 3
T_recursion = 2
n_sup = 8
block_size = 1024
# ~0.5M tokens per optimizer step (8 x 64 x 1024), GPT-2's batch; accumulation counts the whole job's
# micro-batches, so 8 GPUs run 8 each. Lower batch_size and raise the accumulation if memory is short.
batch_size = 8   # fits a 24 GB GPU (32 on 80 GB: python bench.py --presets=True)
gradient_accumulation_steps = 64
# GPT-2 small's AdamW recipe (lr 6e-4, beta2 0.95, wd 0.1, clip 1): the blocks are GPT-2 small's and
# post-norm keeps the recursive states bounded, so the same step size is stable; warmup 2000 as nanoGPT.
learning_rate = 6e-4
min_lr = 6e-5
warmup_iters = 2000
max_iters = 10000       # 5.2B tokens: ~1.4e20 FLOPs, half a day on 8 H100s at 40% MFU
lr_decay_iters = 10000
weight_decay = 0.1
beta2 = 0.95
eval_interval = 1000
eval_iters = 100
log_interval = 10
dtype = 'bfloat16'
compile = True
