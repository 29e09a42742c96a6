# GrokFast on and off on modular addition (data/reasoning, p=31: 480 of the 961 sums train, the other 481 are
# never seen), the iterations until the held-out sums are right: every run stops once val exact match reaches
# 0.9 (early stopping), so `iters` in results.md is the iterations to that threshold (6000: not reached).
# A plain 2-layer model in fp32 (recursion off: GrokFast filters any model's gradients, and the plain one is
# 8x cheaper per iteration), weight decay 1.0 (grokking needs it), windows of 32 tokens (4 sums each).
#   python data/reasoning/prepare.py --task=modular --modulus=31 --out_dir=data/reasoning/modular31
#   python ablate.py config/ablate/grokfast.py --jobs=2      # ~15 min on 2 cores
config = 'config/reasoning.py'
budget = {'max_iters': 6000, 'lr_decay_iters': 6000}
common = {'dataset': 'reasoning/modular31', 'recursion': False, 'dtype': 'float32', 'weight_decay': 1.0,
          'block_size': 32, 'batch_size': 32, 'eval_interval': 250, 'log_interval': 250,
          'early_stop_metric': 'val_exact_s1', 'early_stop_value': 0.9}
seeds = [1337, 1338, 1339]
settings = {
    'AdamW': {},
    'GrokFast': {'grokfast_lamb': 2.0},  # the paper's EMA filter: alpha 0.98 (the default), lamb 2
}
