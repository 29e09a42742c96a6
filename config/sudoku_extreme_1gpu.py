# The TRM paper's Sudoku-Extreme recipe (config/tiny_puzzle.py: mlp_t, 2 layers x 512, n 6, T 3, N_sup 16,
# batch 768, lr 1e-4, weight decay 1.0, EMA) on one GPU with 80 GB or more, nothing to compile but torch:
# AdamW in place of the official AdamATan2 (a CUDA extension), bf16 autocast, torch.compile.
#   python data/sudoku/prepare.py --source=hf --subsample=1000 --out_dir=data/sudoku_extreme   # the public set
#   python train.py config/sudoku_extreme_1gpu.py
#   python eval.py --out_dir=out-sudoku-extreme-1gpu --eval_iters=0    # the whole test split (423k puzzles)
# Expected, from the FLOP count (python bench.py config/sudoku_extreme_1gpu.py --estimate=True): 5.02M params,
# 32.8 TFLOP per iteration, 60,000 iterations = 1.97e18 FLOP: 5h31m at 10% of an H100/H200's 989 TFLOP/s
# bf16 peak, 1h50m at 30%; ~50 GiB per step. The paper reports 87.4% exact on the test set (one seed).
import os
exec(open(os.path.join(os.path.dirname(__file__), 'tiny_puzzle.py')).read())
dataset = 'sudoku_extreme'
out_dir = 'out-sudoku-extreme-1gpu'
wandb_run_name = 'sudoku-extreme-1gpu'
dtype = 'bfloat16'
eval_iters = 13          # ~10k test puzzles per eval during training; eval.py --eval_iters=0 scores all of them
