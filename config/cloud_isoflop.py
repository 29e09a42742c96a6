# Preset D's iso-FLOP baseline: a plain GPT as wide as the preset and deep enough to spend the same
# training FLOPs per token as its recursion (1947 layers; python bench.py --presets shows both counts).
# Recursion with many supervision steps is costly: at equal FLOPs the plain net is this deep.
import os
exec(open(os.path.join(os.path.dirname(__file__), 'cloud.py')).read())
recursion = False
n_layer = 1947
out_dir = 'out-cloud-isoflop'
wandb_run_name = 'cloud-isoflop'
