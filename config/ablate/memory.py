# Does a persistent memory help? The default recursive net on char-level Shakespeare (2 layers x 128, one
# supervision step of 2 net calls) with a bank of 64 or 256 slots read by every z update, against what the
# same parameters buy otherwise: a wider net (n_embd 136: memory 64's parameters, 8% more FLOPs) and a deeper
# one (3 layers: 1.3x memory 64's parameters, 1.4x its FLOPs). Equal tokens (600 iterations of 8 x 128, the
# depth grid's budget).
#   python data/shakespeare_char/prepare.py
#   python ablate.py config/ablate/memory.py --jobs=2          # ~30 min on 2 cores
#   rec               0.38M params, 5.26 MFLOPs/token
#   rec memory 64     0.43M, 5.56        rec memory 256   0.48M, 5.85
#   rec n_embd=136    0.43M, 5.98        rec L=3          0.56M, 7.87
budget = {'max_iters': 600, 'lr_decay_iters': 600}
seeds = [1337, 1338, 1339]
common = {'compile': False, 'warmup_iters': 30, 'eval_interval': 150, 'eval_iters': 10, 'log_interval': 50}
settings = {
    'rec': {},
    'rec memory 64': {'memory_slots': 64},
    'rec memory 256': {'memory_slots': 256},
    'rec n_embd=136': {'n_embd': 136},
    'rec L=3': {'n_layer': 3},
}
