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
    seeds = [1337, 1338, 1339]                      # optional: every setting once per seed (<setting>/seed<k>/);
                                                    # the table shows the mean and the spread (min-max) over them

--key=value arguments (train.py's keys) apply to every setting, after the budget and before the
setting's own. A seconds budget stops a run with SIGTERM (train.py checkpoints), then an eval-only pass
over that checkpoint logs the final metrics. Finished runs (same arguments) are kept and not rerun.
--jobs=N trains N settings at a time, one thread each (small models use two cores better as two runs);
--seeds=1337,1338 replaces the grid's seeds. A run that fails does not stop the others: the table holds the
runs that finished and names the rest, and ablate.py exits 1. --table_only=True trains nothing and tabulates
the runs finished so far (a grid stopped part way, or still running).

When a grid holds plain models (recursion=False) of several depths, results.md adds what a loop is worth:
each recursive setting's val loss is placed on the plain models' loss-vs-depth curve (equivalent_depth; '>6':
better than the deepest plain model, so only a bound).
"""
import csv
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

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


def run_ablation(path, train_args=(), ablate_dir='', jobs=1, seeds=None, table_only=False):
    """Train every setting (and seed) of the grid file at `path` with train.py, `jobs` at a time, then write
    results.md, results.csv and val_loss.png next to the runs (ablate_dir, '' = out-ablate-<grid name>).
    train_args: --key=value overrides of train.py keys for every setting; seeds: in place of the grid's;
    table_only: train nothing, tabulate the runs already finished. Returns the runs not in the table."""
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
    seeds = seeds or grid.get('seeds', [None])
    root = ablate_dir or 'out-ablate-' + os.path.splitext(os.path.basename(path))[0]
    base = [grid['config']] if grid.get('config') else []
    planned = []  # every run, checked before any trains: (setting, its overrides, run_dir, args, config, model, task)
    for name, overrides in settings.items():
        for seed in seeds:
            run_dir = os.path.join(root, name, f'seed{seed}') if seed is not None else os.path.join(root, name)
            args = (base + [f'--{k}={v}' for k, v in {**grid.get('common', {}), **budget}.items()] + list(train_args)
                    + [f'--{k}={v}' for k, v in overrides.items()] + ([f'--seed={seed}'] if seed is not None else [])
                    + [f'--out_dir={run_dir}'])
            try:
                c = configure(train_defaults(), args)
                task, _, model_args = derive(c)
                with torch.device('meta'):  # sizes and FLOPs only: no memory, no compute
                    model = GPT(GPTConfig(**model_args))
            except ValueError as e:  # ConfigError too
                sys.exit(f"error: setting {name!r} of {path}: {e}")
            planned.append((name, overrides, run_dir, args, c, model, task))

    def train_if_needed(plan):
        """The run's wall time: from ablate.json if it finished with these arguments, else trained now
        (None: it failed, or table_only)."""
        name, _, run_dir, args = plan[:4]
        done_path = os.path.join(run_dir, 'ablate.json')
        done = json.load(open(done_path)) if os.path.exists(done_path) else {}
        if done.get('args') == args:
            return done['wall']
        if table_only:
            return None
        shutil.rmtree(run_dir, ignore_errors=True)
        os.makedirs(run_dir)
        print(f"{name}: python train.py {' '.join(args)}\n", end='', flush=True)  # one write: jobs print at once
        wall = train_run(args, run_dir, seconds, threads=1 if jobs > 1 else None)
        if wall is not None:
            with open(done_path, 'w') as f:
                json.dump({'args': args, 'wall': wall}, f)
        return wall
    with ThreadPoolExecutor(jobs) as pool:
        walls = list(pool.map(train_if_needed, planned))
    runs, missing = [], []
    for (name, overrides, run_dir, args, c, model, task), wall in zip(planned, walls):
        rows = plot.read_log(run_dir) if wall is not None else []
        evals, trains = [r for r in rows if r['kind'] == 'eval'], [r for r in rows if r['kind'] == 'train']
        if not evals:
            missing.append(run_dir)
            continue
        per_iter = flops_per_iter(model, c, task)
        speeds = [r['tok_per_s'] for r in trains[1:] or trains]  # the first log interval holds the compile
        runs.append({'name': name, 'overrides': overrides, 'dir': run_dir, 'rows': rows, 'final': evals[-1],
                     'split': task.SPLITS[1], 'n_sup': model.n_sup, 'params': model.get_num_params(),
                     'flops_per_token': model.flops_per_token(), 'flops_per_iter': per_iter,
                     'tok_per_s': float(np.median(speeds)) if speeds else float('nan'),
                     'iters': evals[-1]['iter'], 'wall': wall, 'config': c,
                     'net_calls': net_calls(model.config) * model.n_sup})
    if not runs:
        sys.exit(f"error: no run of {path} has finished" + ('' if table_only else f"; see the train.log files under {root}/"))
    settings = aggregate(runs)
    write_ablation(settings, root, path, runs, len(seeds), missing)
    plot.plot_ablation(runs, os.path.join(root, 'val_loss.png'), os.path.join(root, 'exact.png'))
    print(f"wrote {root}/results.md, results.csv, val_loss.png" + (', exact.png' if os.path.exists(
        os.path.join(root, 'exact.png')) else ''))
    return missing


def flops_per_iter(model, c, task):
    """Training FLOPs of one iteration of config c: every row runs n_sup steps (batch schedule) or one (trm)."""
    schedule = c['schedule'] or task.SCHEDULES[0]
    rows = c['gradient_accumulation_steps'] * c['batch_size']
    return model.flops_per_token() * rows * model.config.block_size / (model.n_sup if schedule == 'trm' else 1)


def net_calls(cfg):
    """Calls of the block stack per supervision step: T cycles of n_loops + 1 (1 without recursion)."""
    return cfg.T_recursion * (cfg.n_loops + 1) if cfg.recursion else 1


def aggregate(runs):
    """One entry per setting: its first run's description, 'final' the mean over its seeds of every final
    metric, 'spread' (min, max) of each, 'seeds' how many."""
    out = {}
    for r in runs:
        out.setdefault(r['name'], []).append(r)
    settings = []
    for name, rs in out.items():
        keys = [k for k, v in rs[0]['final'].items() if isinstance(v, (int, float)) and all(k in x['final'] for x in rs)]
        values = {k: [x['final'][k] for x in rs] for k in keys}
        settings.append({**rs[0], 'seeds': len(rs), 'final': {k: float(np.mean(v)) for k, v in values.items()},
                         'spread': {k: (min(v), max(v)) for k, v in values.items()},
                         'wall': float(np.mean([x['wall'] for x in rs]))})
    return settings


def equivalent_depth(plain, loss):
    """The depth a plain model would need for this val loss, read off plain models' (layers, loss) points:
    linear in log(layers) between neighbouring depths, on the curve made monotone by a running minimum.
    Returns (layers, ''), or beyond the measured curve (deepest depth, '>') / (shallowest, '<'): a bound,
    since extending a curve that flattens would invent a number."""
    plain = sorted(plain)
    depths = np.log([d for d, _ in plain])
    losses = np.minimum.accumulate([l for _, l in plain])
    if loss < losses[-1]:
        return plain[-1][0], '>'
    if loss > losses[0]:
        return plain[0][0], '<'
    for i in range(len(plain) - 1):
        lo, hi = losses[i + 1], losses[i]
        if lo <= loss <= hi and hi > lo:
            return float(np.exp(depths[i] + (hi - loss) / (hi - lo) * (depths[i + 1] - depths[i]))), ''
    return plain[0][0], ''  # a flat curve: its shallowest depth already reaches this loss


def loop_worth(settings):
    """Lines of results.md placing each recursive setting on a curve of plain models' loss vs depth: its
    equivalent depth L_eq, what one applied layer is worth (L_eq / (n_layer x net calls)), and the
    recurrence-equivalence exponent phi in L_eq = n_layer x calls^phi (1: a loop is worth a unique layer,
    0: nothing). A curve per norm position (plain models are pre-norm by default, the recursion post-norm);
    each recursive setting is read off its own norm position's curve, else off the pre-norm one. Empty
    without plain models of two or more depths."""
    split = settings[0]['split']
    curves = {}  # norm position -> {layers: final loss}
    for r in settings:
        if not r['config']['recursion']:
            norm = r['config']['norm_position'] or 'pre'
            curves.setdefault(norm, {})[r['config']['n_layer']] = r['final'][f'{split}_loss_s1']
    curves = {norm: c for norm, c in curves.items() if len(c) >= 2}
    if not curves:
        return []
    lines = ['', f"what a loop is worth: each recursive setting's final {split} loss at its last step on the curve of "
             f"plain models (equivalent_depth: linear in log depth; '>': better than the deepest, a bound)", '',
             '| setting | curve | unique layers | net calls | applied layers | equivalent depth | worth per applied layer | phi |',
             '|---|---|---|---|---|---|---|---|']
    for r in settings:
        if not r['config']['recursion']:
            continue
        norm = r['config']['norm_position'] or 'post'
        norm = norm if norm in curves else 'pre' if 'pre' in curves else next(iter(curves))
        n, calls = r['config']['n_layer'], r['net_calls']
        depth, bound = equivalent_depth(list(curves[norm].items()), r['final'][f"{split}_loss_s{r['n_sup']}"])
        phi = f"{bound}{math.log(depth / n) / math.log(calls):.2f}" if calls > 1 else '-'
        layers = '/'.join(str(d) for d in sorted(curves[norm]))
        lines.append(f"| {r['name']} | {norm}-norm, {layers} layers | {n} | {calls} | {n * calls} | {bound}{depth:.2f} | "
                     f"{bound}{depth / (n * calls):.2f} | {phi} |")
    return lines


def train_run(args, run_dir, seconds, threads=None):
    """Run train.py with args (output in run_dir/train.log), on `threads` threads (None: torch's default);
    returns its wall time in seconds, None if it failed (one line says where its log is)."""
    env = dict(os.environ, WANDB_MODE=os.environ.get('WANDB_MODE', 'disabled'))
    if threads:
        env['OMP_NUM_THREADS'] = str(threads)
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
        print(f"error: train.py failed in {run_dir} (exit {proc.returncode}); see {run_dir}/train.log\n", end='', flush=True)
        return None
    return wall


def mean_spread(r, key, fmt):
    """'mean' of a setting's metric, '+-half its min-max range' after it when seeds differ; '' if absent."""
    if key not in r['final']:
        return ''
    lo, hi = r['spread'][key]
    return f"{r['final'][key]:{fmt}}" + (f"±{(hi - lo) / 2:{fmt}}" if r['seeds'] > 1 else '')


def write_ablation(settings, root, path, runs, n_seeds=1, missing=()):
    """results.md (one row per setting: final loss at every supervision step evals ran, mean over seeds; exact
    match per step and at halting where the task scores it; what a loop is worth; the runs missing from it) and
    results.csv (every final metric of every run). n_seeds: the grid's seeds per setting."""
    split = settings[0]['split']
    S = max(k for r in settings for k in range(1, 65) if f'{split}_loss_s{k}' in r['final'])
    control = any(f'{split}_cost_ratio_s1' in r['final'] for r in settings)
    median = any(f'{split}_cost_ratio_median_s1' in r['final'] for r in settings)  # the mean drowns in outliers
    seeds = max(r['seeds'] for r in settings)
    label = {r['name']: r['name'] + (f" ({r['seeds']} of {n_seeds} seeds)" if r['seeds'] < n_seeds else '')
             for r in settings}
    lines = [f"grid {path}: final {split} loss per supervision step" + (" (exact accuracy)" if split == 'test' else
                                                                         f" (cost ratio{' median' if median else ''}, success)"
                                                                         if control else '')
             + (f", mean ± half the min-max range over {seeds} seeds" if seeds > 1 else ''),
             '', '| setting | overrides | params | MFLOPs/token | tokens/s | iters | wall | '
             + ' | '.join(f's{s + 1}' for s in range(S)) + ' |', '|' + '---|' * (7 + S)]
    for r in settings:
        cells = []
        for s in range(S):
            loss = mean_spread(r, f'{split}_loss_s{s + 1}', '.4f')
            exact, ratio, success = (mean_spread(r, f'{split}_{k}_s{s + 1}', f) for k, f in
                                     (('exact', '.3f'), ('cost_ratio_median' if median else 'cost_ratio', '.3f'),
                                                      ('success', '.1%')))
            extra = f' ({exact})' if exact else f' ({ratio}, {success})' if ratio else ''
            cells.append(loss + extra if loss else '')
        over = ', '.join(f'{k}={v}' for k, v in r['overrides'].items()) or '-'
        lines.append(f"| {label[r['name']]} | {over} | {r['params'] / 1e6:.2f}M | {r['flops_per_token'] / 1e6:.1f} | "
                     f"{r['tok_per_s']:,.0f} | {r['iters']} | {r['wall']:.0f} s | " + ' | '.join(cells) + ' |')
    scored = [name for name in (split, 'hard') if any(f'{name}_exact_s1' in r['final'] for r in settings)]
    if scored:  # a task scored by exact match (puzzles, data/reasoning): per step, and at the halting step
        lines += ['', f"exact match ({' | '.join(scored)}) per supervision step evals ran, then at the halting step", '',
                  '| setting | ' + ' | '.join(f'{n} s{s + 1}' for n in scored for s in range(S)) + ' | '
                  + ' | '.join(f'{n} halt' for n in scored) + ' | halt steps |', '|' + '---|' * (2 + (S + 1) * len(scored))]
        for r in settings:
            cells = [mean_spread(r, f'{n}_exact_s{s + 1}', '.3f') for n in scored for s in range(S)]
            cells += [mean_spread(r, f'{n}_exact_halt', '.3f') for n in scored]
            lines.append(f"| {label[r['name']]} | " + ' | '.join(cells) + f" | {mean_spread(r, f'{split}_halt_step', '.2f')} |")
    lines += loop_worth(settings)
    if missing:
        lines += ['', f"not in the table (not finished, or failed: see its train.log): {', '.join(missing)}"]
    text = '\n'.join(lines) + '\n'
    print('\n' + text)
    with open(os.path.join(root, 'results.md'), 'w') as f:
        f.write(text)
    keys = sorted({k for r in runs for k in r['final'] if k not in ('iter', 'kind', 'time', 'lr')})
    with open(os.path.join(root, 'results.csv'), 'w', newline='') as f:
        w = csv.writer(f)
        w.writerow(['setting', 'seed', 'overrides', 'params', 'flops_per_token', 'tok_per_s', 'iters', 'wall_s'] + keys)
        for r in runs:
            w.writerow([r['name'], r['config']['seed'], json.dumps(r['overrides']), r['params'], r['flops_per_token'],
                        round(r['tok_per_s'], 1), r['iters'], round(r['wall'], 1)] + [r['final'].get(k, '') for k in keys])


if __name__ == '__main__':
    grids = [a for a in sys.argv[1:] if not a.startswith('--')]
    flags = [a for a in sys.argv[1:] if a.startswith('--')]
    if len(grids) != 1:
        sys.exit("usage: python ablate.py GRID_FILE [--ablate_dir=DIR] [--jobs=N] [--seeds=S,S,..] [--table_only=True] "
                 "[--key=value ...] (train.py's keys)")
    try:  # check every flag here: a typo should not surface only after the first settings have trained
        own = configure({'ablate_dir': '', 'jobs': 1, 'seeds': '', 'table_only': False, **train_defaults()}, flags)
        seeds = [int(v) for v in str(own['seeds']).split(',')] if own['seeds'] != '' else None
    except (ConfigError, ValueError) as e:
        sys.exit(f"error: {e}" if isinstance(e, ConfigError) else f"error: --seeds={own['seeds']}: give integers, e.g. --seeds=1337,1338")
    if own['jobs'] < 1:
        sys.exit(f"error: --jobs={own['jobs']}: must be >= 1 (settings trained at a time)")
    missing = run_ablation(grids[0], [a for a in flags if not a.startswith(('--ablate_dir=', '--jobs=', '--seeds=',
                                                                            '--table_only='))],
                           own['ablate_dir'], own['jobs'], seeds, own['table_only'])
    sys.exit(1 if missing and not own['table_only'] else 0)
