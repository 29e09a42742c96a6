"""
Short training runs whose metrics.jsonl values are recorded in tests/recorded_runs.json: a change that
should not alter what train.py computes (a refactor) must reproduce them. Float32, eager, fixed seeds:

    python tests/recorded_runs.py            # run them and compare with the recorded values
    python tests/recorded_runs.py --record   # overwrite the recorded values (only for an intended change)

tests/test_train.py runs the same comparison.
"""
import json
import math
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from conftest import ROOT, TEXT, make_arc_data, make_sudoku_data  # noqa: E402

RECORD = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'recorded_runs.json')
COMMON = ['--compile=False', '--dtype=float32', '--seed=1337']
# the default LM (train.py's model, on a few KB of Shakespeare), a Sudoku TRM under the trm schedule
# (augmentation, carry, halting, stable-max), an ARC model with a puzzle embedding (voting), a controller
RUNS = {
    'lm': ['--dataset=tiny', '--max_iters=100', '--eval_interval=50', '--eval_iters=4', '--log_interval=10'],
    'sudoku_trm': ['--dataset=sudoku_tiny', '--mixer=mlp_t', '--n_embd=32', '--n_sup=3', '--n_loops=2',
                   '--T_recursion=2', '--batch_size=16', '--loss=stablemax', '--max_iters=30', '--eval_interval=15',
                   '--eval_iters=1', '--log_interval=5'],
    'arc': ['--dataset=arc_tiny', '--n_layer=1', '--n_head=2', '--n_kv_head=1', '--n_embd=32', '--n_sup=2',
            '--n_loops=1', '--T_recursion=1', '--batch_size=4', '--max_iters=4', '--eval_interval=4',
            '--eval_iters=1', '--log_interval=2', '--arc_n_aug=16', '--arc_eval_votes=4', '--puzzle_emb_ndim=32'],
    'control': ['--dataset=control/di', '--batch_size=64', '--n_layer=1', '--n_head=2', '--n_kv_head=2',
                '--n_embd=32', '--n_loops=1', '--T_recursion=1', '--n_sup=2', '--supervision_weight_base=4.0',
                '--learning_rate=1e-2', '--max_iters=40', '--eval_interval=20', '--eval_iters=2',
                '--log_interval=10', '--rollout_loss_weight=0.1'],
    'control_trm': ['--dataset=control/di', '--schedule=trm', '--batch_size=32', '--n_layer=1', '--n_head=2',
                    '--n_kv_head=2', '--n_embd=32', '--n_sup=2', '--max_iters=20', '--eval_interval=20',
                    '--eval_iters=1', '--log_interval=10'],
}
NOT_COMPARED = {'time', 'tok_per_s', 'samples_steps_per_s', 'rss_mb', 'task'}  # timings, memory, new keys


def make_data(cwd):
    import numpy as np
    import pickle
    d = os.path.join(cwd, 'data', 'tiny')
    os.makedirs(d)
    chars = sorted(set(TEXT))
    ids = np.array([chars.index(c) for c in TEXT], dtype=np.uint16)
    n = int(0.9 * len(ids))
    ids[:n].tofile(os.path.join(d, 'train.bin'))
    ids[n:].tofile(os.path.join(d, 'val.bin'))
    with open(os.path.join(d, 'meta.pkl'), 'wb') as f:
        pickle.dump({'vocab_size': len(chars), 'stoi': {c: i for i, c in enumerate(chars)},
                     'itos': dict(enumerate(chars))}, f)
    from pathlib import Path
    make_sudoku_data(Path(cwd), n_train=64, n_test=16, blanks=4)
    make_arc_data(Path(cwd))
    subprocess.run([sys.executable, os.path.join(ROOT, 'data', 'control', 'prepare.py'), '--system=double_integrator',
                    f'--out_dir={os.path.join(cwd, "data", "control", "di")}', '--n_train=500', '--n_val=64',
                    '--n_test=64'], check=True, capture_output=True)


def run_all(cwd):
    """{run name: [metrics.jsonl rows without timings]} of every run, trained in cwd."""
    make_data(cwd)
    env = dict(os.environ, WANDB_MODE='disabled', OMP_NUM_THREADS='1')
    out = {}
    for name, args in RUNS.items():
        proc = subprocess.run([sys.executable, os.path.join(ROOT, 'train.py'), *COMMON, *args, f'--out_dir=out-{name}'],
                              cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f"{name} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
        with open(os.path.join(cwd, f'out-{name}', 'metrics.jsonl')) as f:
            rows = [json.loads(line) for line in f]
        out[name] = [{k: v for k, v in r.items() if k not in NOT_COMPARED} for r in rows]
    return out


def differences(recorded, got, rel=0.0):
    """Lines naming every value of `got` that differs from `recorded` by more than rel (relative)."""
    lines = []
    for name in recorded:
        a, b = recorded[name], got.get(name, [])
        if len(a) != len(b):
            lines.append(f"{name}: {len(b)} rows, recorded {len(a)}")
            continue
        for i, (ra, rb) in enumerate(zip(a, b)):
            if set(ra) != set(rb):
                lines.append(f"{name} row {i}: keys differ: {sorted(set(ra) ^ set(rb))}")
            for k in set(ra) & set(rb):
                va, vb = ra[k], rb[k]
                if isinstance(va, list):
                    bad = len(va) != len(vb) or any(abs(x - y) > rel * max(abs(x), 1e-12) for x, y in zip(va, vb))
                elif isinstance(va, float) and isinstance(vb, float):
                    bad = not (va == vb or (math.isnan(va) and math.isnan(vb)) or abs(va - vb) <= rel * abs(va))
                else:
                    bad = va != vb
                if bad:
                    lines.append(f"{name} row {i} ({ra.get('kind')} iter {ra.get('iter')}): {k} = {vb!r}, recorded {va!r}")
    return lines


if __name__ == '__main__':
    with tempfile.TemporaryDirectory() as cwd:
        got = run_all(cwd)
    if '--record' in sys.argv:
        with open(RECORD, 'w') as f:
            json.dump(got, f, indent=0)
        print(f"recorded {sum(map(len, got.values()))} rows of {len(got)} runs in {RECORD}")
    else:
        with open(RECORD) as f:
            diff = differences(json.load(f), got)
        print('\n'.join(diff[:40]) or f"identical: every value of {sum(map(len, got.values()))} rows of {len(got)} runs")
        sys.exit(1 if diff else 0)
