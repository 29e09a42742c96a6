# Deep supervision on the default LM (char-level Shakespeare): n_sup = 1, 2, 4, 8 for the same number of
# iterations, so n_sup=8 spends 8x the FLOPs of n_sup=1; out-ablate-nsup/results.md and val_loss.png compare
# them at equal iterations, FLOPs and wall time.   python data/shakespeare_char/prepare.py
#   python ablate.py config/ablate/nsup.py
budget = {'max_iters': 300, 'lr_decay_iters': 300}
# small budget: no compile (its ~20 s would dominate short runs), few eval batches
common = {'compile': False, 'warmup_iters': 30, 'eval_interval': 100, 'eval_iters': 10, 'log_interval': 25}
settings = {
    'n_sup=1': {'n_sup': 1},
    'n_sup=2': {'n_sup': 2},
    'n_sup=4': {'n_sup': 4},
    'n_sup=8': {'n_sup': 8},
}
