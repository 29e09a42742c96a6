# One net for both updates (TRM) or separate nets for y and z (HRM's H and L modules), on sudoku_cpu's easy
# Sudoku: every run stops when exact match at the halting step reaches 0.7 on 256 test puzzles (early
# stopping), so `iters` in results.md is the iterations to that target (1500: not reached).
#   shared L=2    TRM: 2 blocks update z and y (0.38M)
#   separate L=2  equal FLOPs: the same calls, the y updates through their own 2 blocks (2x the block parameters)
#   separate L=1  equal parameters: 1 block for z, 1 for y (half the FLOPs per iteration)
#   python data/sudoku/prepare.py --difficulty=easy --min_clues=36 --n_train=10000 --n_test=1000 --out_dir=data/sudoku_easy36
#   python ablate.py config/ablate/separate_nets.py --jobs=2
config = 'config/sudoku_cpu.py'
budget = {'max_iters': 1500, 'lr_decay_iters': 1500}
common = {'max_seconds': 0, 'eval_interval': 100, 'eval_iters': 4,
          'early_stop_metric': 'test_exact_halt', 'early_stop_value': 0.7}
seeds = [1337]
settings = {
    'shared L=2': {},
    'separate L=2': {'separate_nets': True},
    'separate L=1': {'separate_nets': True, 'n_layer': 1},
}
