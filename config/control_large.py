# Control, TinyRecursiveControl's large size (~2M parameters): config/control.py at 288 wide.
#   python train.py config/control_large.py
import os
exec(open(os.path.join(os.path.dirname(__file__), 'control.py')).read())
n_embd = 288
out_dir = 'out-control-large'
wandb_run_name = 'control-di-large'
