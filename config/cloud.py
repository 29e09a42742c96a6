# Preset D, cloud: 24 layers x 1536, recursion 4 loops x T=2 x 12 supervision steps, 2048 context,
# GPT-2 BPE on OpenWebText. Meant for a node or more:
#   torchrun --standalone --nproc_per_node=8 train.py config/cloud.py
#   torchrun --standalone --nproc_per_node=8 train.py config/cloud.py --fsdp=True   # when it does not fit
# Sizes (python bench.py --presets): 672M non-embedding + 77M embedding parameters (12 GB of fp32
# weights + gradients + AdamW state: fits an 80 GB GPU with DDP, FSDP shards it on smaller ones);
# 363 GFLOPs per training token, 74x a plain GPT with the same blocks.
out_dir = 'out-cloud'
wandb_run_name = 'cloud'
dataset = 'openwebtext'
n_layer = 24
n_embd = 1536
n_head = 16
n_kv_head = 4
n_loops = 4
T_recursion = 2
n_sup = 12
block_size = 2048
batch_size = 1              # ~0.5M tokens per optimizer step (1 x 256 x 2048); 1 sequence needs ~33 GB (bench.py --presets)
gradient_accumulation_steps = 256
# GPT-3 XL (24 x 2048) trained at 2e-4; this net is narrower but recursed deeper: the same value
learning_rate = 2e-4
min_lr = 2e-5
warmup_iters = 2000
max_iters = 10000       # 5.2B tokens: ~1.9e21 FLOPs
lr_decay_iters = 10000
weight_decay = 0.1
beta2 = 0.95
eval_interval = 1000
eval_iters = 100
log_interval = 10
dtype = 'bfloat16'
compile = True
