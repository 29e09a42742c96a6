# Preset A's iso-FLOP baseline: a plain GPT as wide as the preset and deep enough to spend the same
# training FLOPs per token as its recursion (546 layers; python bench.py --presets shows both counts).
# Recursion with many supervision steps is costly: at equal FLOPs the plain net is this deep.
import os
exec(open(os.path.join(os.path.dirname(__file__), 'conservative.py')).read())
recursion = False
n_layer = 546
out_dir = 'out-conservative-isoflop'
wandb_run_name = 'conservative-isoflop'
