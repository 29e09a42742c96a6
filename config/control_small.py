# Control, TinyRecursiveControl's small size (~0.2M parameters): config/control.py at 96 wide.
#   python train.py config/control_small.py
import os
exec(open(os.path.join(os.path.dirname(__file__), 'control.py')).read())
n_embd = 96
out_dir = 'out-control-small'
wandb_run_name = 'control-di-small'
