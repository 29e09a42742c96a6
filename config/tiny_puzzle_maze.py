# The TRM paper's Maze-Hard setup: attention (30x30 is too large for mlp_t), n_loops 4.
#   python data/maze/prepare.py && python train.py config/tiny_puzzle_maze.py
import os
exec(open(os.path.join(os.path.dirname(__file__), 'tiny_puzzle.py')).read())
dataset = 'maze'
out_dir = 'out-tiny-puzzle-maze'
wandb_run_name = 'tiny-puzzle-maze'
mixer = 'attention'     # paper: self-attention for 30x30 grids
n_loops = 4             # paper (Maze/ARC): n = 4, T = 3
max_iters = 30000
