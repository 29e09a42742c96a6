# The TRM paper's Maze-Hard recipe (config/tiny_puzzle_maze.py: attention, 2 layers x 512, n 4, T 3, N_sup 16)
# on one GPU with 80 GB or more: the paper's global batch of 768 over 4 GPUs does not fit one (~200 GiB per
# step), so batch 192 (the paper's per-GPU batch) and 4x the iterations: the same puzzles seen, the same FLOPs.
#   python data/maze/prepare.py --source=hf --out_dir=data/maze_hard        # the public set (1000 train)
#   python train.py config/maze_hard_1gpu.py
#   python eval.py --out_dir=out-maze-hard-1gpu --eval_iters=0
# Expected, from the FLOP count (python bench.py config/maze_hard_1gpu.py --estimate=True): 6.82M params,
# 76.4 TFLOP per iteration, 120,000 iterations = 9.17e18 FLOP: 25h45m at 10% of an H100/H200's 989 TFLOP/s
# bf16 peak, 8h35m at 30%; ~51 GiB per step. The paper reports 85.3% exact on the test set.
import os
exec(open(os.path.join(os.path.dirname(__file__), 'tiny_puzzle_maze.py')).read())
dataset = 'maze_hard'
out_dir = 'out-maze-hard-1gpu'
wandb_run_name = 'maze-hard-1gpu'
dtype = 'bfloat16'
batch_size = 192
max_iters = 120000
eval_interval = 10000
eval_iters = 5           # ~1000 test mazes per eval
