# The TRM paper's Sudoku-Extreme setup (arXiv 2510.04871, and the official code's config/arch/trm.yaml):
#   python data/sudoku/prepare.py --difficulty=extreme && python train.py config/tiny_puzzle.py   # generated
#   python data/sudoku/prepare.py --source=hf --subsample=1000 --out_dir=data/sudoku_extreme       # the paper's data
#   python train.py config/tiny_puzzle.py --dataset=sudoku_extreme   (config/sudoku_extreme_1gpu.py: on one GPU)
# GPU-sized: batch 768 with 16 supervision steps of 3 x 7 net calls.
dataset = 'sudoku'
out_dir = 'out-tiny-puzzle'
wandb_run_name = 'tiny-puzzle-sudoku'
trm_faithful = True     # the official numerics (model.py); init_from='trm:PATH' reads its checkpoints
mixer = 'mlp_t'         # paper: "TRM-MLP" beats attention on 9x9 Sudoku (87.4% vs 74.7%)
n_layer = 2             # paper: 2 layers
n_embd = 512            # paper: hidden size 512
n_head = 8
n_kv_head = 8
expansion = 4.0
n_loops = 6             # paper: n = 6
T_recursion = 3         # paper: T = 3
n_sup = 16              # paper: N_sup = 16
puzzle_emb_ndim = 512   # official code: puzzle_emb_ndim = hidden_size, 16 prefix positions
puzzle_emb_len = 16
loss = 'stablemax'      # official: stablemax_cross_entropy
schedule = 'trm'
halt_exploration_prob = 0.1
act_loss_weight = 0.5
batch_size = 768        # paper: global batch 768
learning_rate = 1e-4    # paper: lr 1e-4, weight decay 1.0 for Sudoku, AdamW (0.9, 0.95), warmup 2K steps
puzzle_emb_lr = 1e-4
weight_decay = 1.0
puzzle_emb_weight_decay = 1.0
beta1 = 0.9
beta2 = 0.95
warmup_iters = 2000
decay_lr = False        # official: constant after warmup (lr_min_ratio 1.0)
max_iters = 60000       # paper: 50K epochs of 1000 puzzles; ~65K optimizer steps at batch 768
eval_interval = 5000
eval_iters = 4
log_interval = 100
use_ema = True          # paper: EMA 0.999
ema_decay = 0.999
compile = True
