# Conditioned y/z inits (yz_init_from) against the fixed ones on sudoku_cpu's easy Sudoku: does a frozen
# language model trained on Sudoku text (puzzle, space, solution; 4 augmentations of the 10,000 training
# puzzles) give the recursion a better start than two fixed vectors? Its states of the puzzle's 81 characters,
# mean-pooled, through a learned projection (33k parameters beside the 0.38M). 400 iterations of the trm
# schedule, test exact at the halting step every 100 (256 puzzles), 2 seeds.
#   python data/sudoku/prepare.py --difficulty=easy --min_clues=36 --n_train=10000 --n_test=1000 --out_dir=data/sudoku_easy36
#   python data/sudoku/text.py --puzzles=data/sudoku_easy36 --out_dir=data/sudoku_easy36_text
#   python train.py --dataset=sudoku_easy36_text --out_dir=out-sudoku-text --max_iters=2000 --lr_decay_iters=2000 --eval_interval=500
#   python ablate.py config/ablate/condition.py --jobs=2
config = 'config/sudoku_cpu.py'
budget = {'max_iters': 400, 'lr_decay_iters': 400}
common = {'max_seconds': 0, 'eval_interval': 100, 'eval_iters': 4, 'compile': False}
seeds = [1337, 1338]
settings = {
    'fixed init': {},
    'conditioned, mean': {'yz_init_from': 'ckpt:out-sudoku-text/ckpt.pt'},
}
