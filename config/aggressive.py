# Preset C, aggressive: 20 layers x 1024, recursion 4 loops x T=2 x 12 supervision steps, GPT-2 BPE on
# OpenWebText.   torchrun --standalone --nproc_per_node=8 train.py config/aggressive.py
# Sizes (python bench.py --presets): 273M non-embedding + 52M embedding parameters; 130 GFLOPs per
# training token, 69x a plain GPT with the same blocks.
out_dir = 'out-aggressive'
wandb_run_name = 'aggressive'
dataset = 'openwebtext'
n_layer = 20
n_embd = 1024
n_head = 16
n_kv_head = 4
n_loops = 4
T_recursion = 2
n_sup = 12
block_size = 1024
batch_size = 4              # ~0.5M tokens per optimizer step (4 x 128 x 1024)
gradient_accumulation_steps = 128
# a little below B's 3e-4: deeper blocks and 12 supervision steps add 12 gradient contributions per batch
learning_rate = 2.5e-4
min_lr = 2.5e-5
warmup_iters = 2000
max_iters = 10000       # 5.2B tokens: ~6.8e20 FLOPs
lr_decay_iters = 10000
weight_decay = 0.1
beta2 = 0.95
eval_interval = 1000
eval_iters = 100
log_interval = 10
dtype = 'bfloat16'
compile = True
