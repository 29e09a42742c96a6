# Recursion vs recursion off vs an iso-FLOP plain GPT on the default LM (char-level Shakespeare).
# The default recursion (2 layers, n_loops 1, T 1, n_sup 1) calls the 2-layer net twice per token with
# gradients through both, so a plain GPT of 4 such layers spends the same FLOPs per token (bench.py prints
# both counts). recursion=False keeps the same 2 blocks run once (pre-norm, final norm).
#   python data/shakespeare_char/prepare.py
#   python ablate.py config/ablate/recursion.py
budget = {'max_iters': 600, 'lr_decay_iters': 600}
common = {'compile': False, 'warmup_iters': 30, 'eval_interval': 150, 'eval_iters': 10, 'log_interval': 50}
settings = {
    'recursion': {},
    'recursion_off': {'recursion': False},
    'isoflop_plain': {'recursion': False, 'n_layer': 4},
}
