import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# a few thousand characters of real text: enough to train on for a few steps
TEXT = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
        "First Citizen:\nYou are all resolved rather to die than to famish?\n\nAll:\nResolved. resolved.\n\n"
        "First Citizen:\nFirst, you know Caius Marcius is chief enemy to the people.\n\n") * 20


@pytest.fixture
def run_dir(tmp_path):
    """A working directory holding data/tiny (char-level, nanoGPT format), as train.py expects."""
    d = tmp_path / 'data' / 'tiny'
    d.mkdir(parents=True)
    chars = sorted(set(TEXT))
    stoi = {c: i for i, c in enumerate(chars)}
    ids = np.array([stoi[c] for c in TEXT], dtype=np.uint16)
    n = int(0.9 * len(ids))
    ids[:n].tofile(d / 'train.bin')
    ids[n:].tofile(d / 'val.bin')
    with open(d / 'meta.pkl', 'wb') as f:
        pickle.dump({'vocab_size': len(chars), 'stoi': stoi, 'itos': dict(enumerate(chars))}, f)
    return tmp_path


TINY = ['--dataset=tiny', '--batch_size=4', '--block_size=32', '--n_layer=1', '--n_head=2', '--n_kv_head=1',
        '--n_embd=32', '--eval_iters=2', '--log_interval=1', '--warmup_iters=2', '--compile=False']


def run_train(cwd, *args, check=True):
    """Run train.py in cwd with the tiny config plus args; returns the CompletedProcess."""
    env = dict(os.environ, WANDB_MODE=os.environ.get('WANDB_MODE', 'disabled'))
    proc = subprocess.run([sys.executable, os.path.join(ROOT, 'train.py'), *TINY, *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"train.py failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


# a tiny recursive controller: 1 layer, 32 wide, 2 supervision steps (the second weighted 4x, as config/control.py)
CONTROL = ['--dataset=control/di', '--out_dir=out', '--batch_size=64', '--n_layer=1', '--n_head=2', '--n_kv_head=2',
           '--n_embd=32', '--n_loops=1', '--T_recursion=1', '--n_sup=2', '--supervision_weight_base=4.0',
           '--learning_rate=1e-2', '--weight_decay=0.0', '--max_iters=300', '--lr_decay_iters=300', '--warmup_iters=20',
           '--eval_interval=150', '--eval_iters=4', '--log_interval=50', '--dtype=float32']


@pytest.fixture(scope='session')
def control_run(tmp_path_factory):
    """A tiny recursive controller trained for a few seconds on a small double-integrator set (made by
    data/control/prepare.py): the working directory, with data/control/di and out/ (checkpoint, metrics)."""
    cwd = tmp_path_factory.mktemp('control')
    proc = subprocess.run([sys.executable, os.path.join(ROOT, 'data', 'control', 'prepare.py'), '--system=double_integrator',
                           f'--out_dir={cwd / "data" / "control" / "di"}', '--n_train=2000', '--n_val=256', '--n_test=64'],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    run_train(cwd, *CONTROL)
    return cwd
