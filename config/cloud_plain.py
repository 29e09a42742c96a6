# Preset D's recursion-off baseline: the same blocks run once over the tokens (a plain pre-norm
# Llama-style GPT), same data, batch and schedule.   python train.py config/cloud_plain.py
import os
exec(open(os.path.join(os.path.dirname(__file__), 'cloud.py')).read())
recursion = False
out_dir = 'out-cloud-plain'
wandb_run_name = 'cloud-plain'
