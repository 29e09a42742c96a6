# The recursion-off baseline: a plain pre-norm Llama-style GPT (RMSNorm, RoPE,
# SwiGLU) at nanoGPT's documented CPU recipe for shakespeare_char
# (4 layers, 4 heads, 128 wide, block 64, batch 12, 2000 iters), so that
#   python train.py config/shakespeare_char_plain.py
# and the recursive default can be compared at equal wall-clock.
out_dir = 'out-shakespeare-char-plain'
wandb_run_name = 'shakespeare-char-plain'
recursion = False
n_layer = 4
n_head = 4
n_kv_head = 4
n_embd = 128
block_size = 64
batch_size = 12
max_iters = 2000
lr_decay_iters = 2000
learning_rate = 1e-3
min_lr = 1e-4
warmup_iters = 100
eval_interval = 250
eval_iters = 20
dropout = 0.0
