# The TRM paper's ARC-AGI setup: attention, n_loops 4, a learned embedding per (task, augmentation).
#   python data/arc/prepare.py && python train.py config/tiny_puzzle_arc.py
import os
exec(open(os.path.join(os.path.dirname(__file__), 'tiny_puzzle.py')).read())
dataset = 'arc'
out_dir = 'out-tiny-puzzle-arc'
wandb_run_name = 'tiny-puzzle-arc'
mixer = 'attention'
n_loops = 4             # paper: n = 4, T = 3
weight_decay = 0.1      # official ARC config: weight decay 0.1, puzzle embedding lr 1e-2
puzzle_emb_lr = 1e-2
puzzle_emb_weight_decay = 0.1
loss = 'softmax'
max_iters = 100000
