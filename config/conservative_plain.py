# Preset A's recursion-off baseline: the same blocks run once over the tokens (a plain pre-norm
# Llama-style GPT), same data, batch and schedule.   python train.py config/conservative_plain.py
import os
exec(open(os.path.join(os.path.dirname(__file__), 'conservative.py')).read())
recursion = False
out_dir = 'out-conservative-plain'
wandb_run_name = 'conservative-plain'
