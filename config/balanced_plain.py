# Preset B's recursion-off baseline: the same blocks run once over the tokens (a plain pre-norm
# Llama-style GPT), same data, batch and schedule.   python train.py config/balanced_plain.py
import os
exec(open(os.path.join(os.path.dirname(__file__), 'balanced.py')).read())
recursion = False
out_dir = 'out-balanced-plain'
wandb_run_name = 'balanced-plain'
