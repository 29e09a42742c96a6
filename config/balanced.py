# Preset B, balanced: 16 layers x 1024 (GPT-2 medium's width), recursion 4 loops x T=2 x 8 supervision
# steps, GPT-2 BPE on OpenWebText.   torchrun --standalone --nproc_per_node=8 train.py config/balanced.py
# Sizes (python bench.py --presets): 229M non-embedding + 52M embedding parameters; 70 GFLOPs per
# training token, 44x a plain GPT with the same blocks.
out_dir = 'out-balanced'
wandb_run_name = 'balanced'
dataset = 'openwebtext'
n_layer = 16
n_embd = 1024
n_head = 16
n_kv_head = 4
n_loops = 4
T_recursion = 2
n_sup = 8
block_size = 1024
# ~0.5M tokens per optimizer step (4 x 128 x 1024); the micro-batch halves against A for the wider,
# deeper net (memory per sequence: python bench.py --presets=True).
batch_size = 4
gradient_accumulation_steps = 128
# GPT-2 medium's learning rate (3e-4): wider nets want smaller steps (~1/width under AdamW)
learning_rate = 3e-4
min_lr = 3e-5
warmup_iters = 2000
max_iters = 10000       # 5.2B tokens: ~3.7e20 FLOPs
lr_decay_iters = 10000
weight_decay = 0.1
beta2 = 0.95
eval_interval = 1000
eval_iters = 100
log_interval = 10
dtype = 'bfloat16'
compile = True
