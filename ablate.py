"""
Ablation grids: train.py runs every setting of a grid file for the same budget on the same data and seed,
then a markdown table, a CSV and plots of val loss vs wall time and vs FLOPs.

    python ablate.py config/ablate/nsup.py                            # -> out-ablate-nsup/
    python ablate.py config/ablate/nsup.py --ablate_dir=out-x --eval_iters=5
    python bench.py --ablate=config/ablate/nsup.py                    # the same

A grid file is plain Python:

    settings = {'name': {'key': value, ...}, ...}  # train.py overrides per setting
    budget = {'max_iters': 300}                     # the same for every setting; or {'seconds': 60}
    common = {...}                                  # optional: overrides shared by every setting
    config = 'config/x.py'                          # optional: a config file under every setting

--key=value arguments (train.py's keys) apply to every setting, after the budget and before the
setting's own. A seconds budget stops a run with SIGTERM (train.py checkpoints), then an eval-only pass
over that checkpoint logs the final metrics. Finished runs (same arguments) are kept and not rerun.
"""
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import torch

from common import gpt_args, task_module, task_of
from configurator import ConfigError, configure, train_defaults
from model import GPT, GPTConfig

TRAIN_PY = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'train.py')


def derive(c, data=None):
    """(task module, its data, GPTConfig arguments) of a train.py config dict c, as train.py derives them:
    c's model keys plus what the data in data/<dataset> fixes. data: use this instead of task.load
    (which raises ValueError with one line when the data is not there)."""
    data_dir = os.path.join('data', c['dataset'])
    task = task_module(task_of(data_dir))
    if data is None:
        data = task.load(data_dir, c)
    return task, data, gpt_args(c, task, data)


def run_ablation(path, train_args=(), ablate_dir=''):
    """Train every setting of the grid file at `path` with train.py, then write results.md, results.csv
    and val_loss.png next to the runs (ablate_dir, '' = out-ablate-<grid name>). train_args: --key=value
    overrides of train.py keys for every setting."""
    import plot  # here, not at the top: bench.py imports this module, and matplotlib takes a second
    grid = {}
    try:
        with open(path) as f:
            exec(compile(f.read(), path, 'exec'), grid)
    except OSError as e:
        sys.exit(f"error: cannot read the grid file {path} ({e.strerror})")
    settings, budget = grid.get('settings'), dict(grid.get('budget', {}))
    if not isinstance(settings, dict) or not settings or not all(isinstance(s, dict) for s in settings.values()):
        sys.exit(f"error: {path} must define settings = {{'name': {{'key': value, ...}}, ...}}")
    seconds = budget.pop('seconds', 0)
    if not seconds and 'max_iters' not in budget:
        sys.exit(f"error: {path}: budget must hold 'max_iters' (iterations) or 'seconds', e.g. budget = {{'max_iters': 300}}")
    if seconds:
        budget.setdefault('max_iters', 10 ** 9)  # the clock stops it
    elif 'max_seconds' not in grid.get('common', {}):  # equal iterations: a base config's wall-clock lr cosine
        budget['max_seconds'] = 0                        # (max_seconds) would give each setting another schedule
    root = ablate_dir or 'out-ablate-' + os.path.splitext(os.path.basename(path))[0]
    base = [grid['config']] if grid.get('config') else []
    runs = []
    for name, overrides in settings.items():
        run_dir = os.path.join(root, name)
        args = (base + [f'--{k}={v}' for k, v in {**grid.get('common', {}), **budget}.items()] + list(train_args)
                + [f'--{k}={v}' for k, v in overrides.items()] + [f'--out_dir={run_dir}'])
        try:
            c = configure(train_defaults(), args)
            task, _, model_args = derive(c)
            with torch.device('meta'):  # sizes and FLOPs only: no memory, no compute
                model = GPT(GPTConfig(**model_args))
        except ValueError as e:  # ConfigError too
            sys.exit(f"error: setting {name!r} of {path}: {e}")
        done_path = os.path.join(run_dir, 'ablate.json')
        done = json.load(open(done_path)) if os.path.exists(done_path) else {}
        if done.get('args') != args:
            shutil.rmtree(run_dir, ignore_errors=True)
            os.makedirs(run_dir)
            print(f"{name}: python train.py {' '.join(args)}", flush=True)
            done = {'args': args, 'wall': train_run(args, run_dir, seconds)}
            with open(done_path, 'w') as f:
                json.dump(done, f)
        rows = plot.read_log(run_dir)
        evals, trains = [r for r in rows if r['kind'] == 'eval'], [r for r in rows if r['kind'] == 'train']
        if not evals:
            sys.exit(f"error: {run_dir}/metrics.jsonl has no eval; see {run_dir}/train.log")
        schedule = c['schedule'] or task.SCHEDULES[0]
        # FLOPs per iteration: every row runs n_sup steps (batch schedule) or one (trm schedule)
        per_iter = (model.flops_per_token() * c['gradient_accumulation_steps'] * c['batch_size'] * model.config.block_size
                    / (model.n_sup if schedule == 'trm' else 1))
        speeds = [r['tok_per_s'] for r in trains[1:] or trains]  # the first log interval holds the compile
        runs.append({'name': name, 'overrides': overrides, 'dir': run_dir, 'rows': rows, 'final': evals[-1],
                     'split': task.SPLITS[1], 'n_sup': model.n_sup, 'params': model.get_num_params(),
                     'flops_per_token': model.flops_per_token(), 'flops_per_iter': per_iter,
                     'tok_per_s': float(np.median(speeds)) if speeds else float('nan'),
                     'iters': evals[-1]['iter'], 'wall': done['wall']})
    write_ablation(runs, root, path)
    plot.plot_ablation(runs, os.path.join(root, 'val_loss.png'))
    print(f"wrote {root}/results.md, results.csv, val_loss.png")


def train_run(args, run_dir, seconds):
    """Run train.py with args (output in run_dir/train.log); returns its wall time in seconds."""
    env = dict(os.environ, WANDB_MODE=os.environ.get('WANDB_MODE', 'disabled'))
    t0 = time.time()
    with open(os.path.join(run_dir, 'train.log'), 'w') as log:
        proc = subprocess.Popen([sys.executable, TRAIN_PY, *args], stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            proc.wait(timeout=seconds or None)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)  # train.py finishes its step and checkpoints
            proc.wait()
        wall = time.time() - t0
        if proc.returncode == 0 and seconds:  # the final metrics of the stopped run
            proc = subprocess.run([sys.executable, TRAIN_PY, *args, '--init_from=resume', '--eval_only=True'],
                                  stdout=log, stderr=subprocess.STDOUT, env=env)
    if proc.returncode != 0:
        sys.exit(f"error: train.py failed in {run_dir} (exit {proc.returncode}); see {run_dir}/train.log")
    return wall


def write_ablation(runs, root, path):
    """results.md (one row per setting: final loss at every supervision step) and results.csv (every final metric)."""
    S = max(r['n_sup'] for r in runs)
    split = runs[0]['split']
    control = any(f'{split}_cost_ratio_s1' in r['final'] for r in runs)
    lines = [f"grid {path}: final {split} loss per supervision step" + (" (exact accuracy)" if split == 'test' else
                                                                         " (cost ratio, success)" if control else ''),
             '', '| setting | overrides | params | MFLOPs/token | tokens/s | iters | wall | '
             + ' | '.join(f's{s + 1}' for s in range(S)) + ' |', '|' + '---|' * (7 + S)]
    for r in runs:
        cells = []
        for s in range(S):
            loss = r['final'].get(f'{split}_loss_s{s + 1}')
            exact, ratio, success = (r['final'].get(f'{split}_{k}_s{s + 1}') for k in ('exact', 'cost_ratio', 'success'))
            extra = (f' ({exact:.3f})' if exact is not None else
                     f' ({ratio:.3f}, {success:.1%})' if ratio is not None else '')
            cells.append('' if loss is None else f'{loss:.4f}' + extra)
        over = ', '.join(f'{k}={v}' for k, v in r['overrides'].items()) or '-'
        lines.append(f"| {r['name']} | {over} | {r['params'] / 1e6:.2f}M | {r['flops_per_token'] / 1e6:.1f} | "
                     f"{r['tok_per_s']:,.0f} | {r['iters']} | {r['wall']:.0f} s | " + ' | '.join(cells) + ' |')
    text = '\n'.join(lines) + '\n'
    print('\n' + text)
    with open(os.path.join(root, 'results.md'), 'w') as f:
        f.write(text)
    keys = sorted({k for r in runs for k in r['final'] if k not in ('iter', 'kind', 'time', 'lr')})
    with open(os.path.join(root, 'results.csv'), 'w', newline='') as f:
        w = csv.writer(f)
        w.writerow(['setting', 'overrides', 'params', 'flops_per_token', 'tok_per_s', 'iters', 'wall_s'] + keys)
        for r in runs:
            w.writerow([r['name'], json.dumps(r['overrides']), r['params'], r['flops_per_token'],
                        round(r['tok_per_s'], 1), r['iters'], round(r['wall'], 1)] + [r['final'].get(k, '') for k in keys])


if __name__ == '__main__':
    grids = [a for a in sys.argv[1:] if not a.startswith('--')]
    flags = [a for a in sys.argv[1:] if a.startswith('--')]
    if len(grids) != 1:
        sys.exit("usage: python ablate.py GRID_FILE [--ablate_dir=DIR] [--key=value ...] (train.py's keys)")
    try:  # check every flag here: a typo should not surface only after the first settings have trained
        ablate_dir = configure({'ablate_dir': '', **train_defaults()}, flags)['ablate_dir']
    except ConfigError as e:
        sys.exit(f"error: {e}")
    run_ablation(grids[0], [a for a in flags if not a.startswith('--ablate_dir=')], ablate_dir)
