# The default recursion (n_loops 1, T 1, n_sup 1: two calls of the shared net per token) at nanoGPT's
# shakespeare_char dims (6 layers x 384, 6 heads, block 256), batch 16 for a 2-core CPU: the size at which
# bench.py measures MFU on CPU (docs/results.md).
#   python bench.py config/shakespeare_char_384_plain.py --vs=config/shakespeare_char_384.py
out_dir = 'out-shakespeare-char-384'
wandb_run_name = 'shakespeare-char-384'
n_layer = 6
n_head = 6
n_kv_head = 6
n_embd = 384
block_size = 256
batch_size = 16
learning_rate = 1e-3
min_lr = 1e-4
