"""
Evaluate checkpoints without training: every metric at every supervision step and at the step where the
q-head halts, on one split, for one run or for several (seeds: mean ± half the range over them).

    python eval.py --out_dir=out-sudoku-cpu                   # the run's last eval again, from its ckpt.pt
    python eval.py --out_dir=out-sudoku-cpu --eval_iters=0    # the whole test split
    python eval.py --out_dir=out-a,out-b,out-c --eval_iters=0 --eval_n_sup=32   # 3 seeds, 2x the steps trained

Keys left at None take the run's value from its checkpoint: by default the numbers are the ones the run's
last eval printed (the same batches, the same weights: the EMA's where the run kept one). The table names
the split, where its data came from (the data folder's meta) and how many rows it covers.
Puzzles: exact (the whole answer right), cell accuracy, rules (the answer obeys the rules: any solution
counts); halt: the answer at the first step with sigmoid(q) > halt_threshold, with the mean step. ARC:
pass@1 / pass@2 voted over arc_eval_votes augmented views, and the single model (the identity view alone)
in rows of its own.
"""
import os
import sys
from types import SimpleNamespace

import torch

import checkpoint
from common import or_exit, prepare_command, runtime, save_json, task_module
from configurator import DEVICE, DTYPE, at_least, fraction, from_command_line, none_or
from evaluate import eval_steps, evaluate

# -----------------------------------------------------------------------------
out_dir = 'out-sudoku-cpu'  # run folders, comma-separated (one per seed): mean ± half the range over them
ckpt_name = 'ckpt.pt'       # or best.pt
split = ''                  # '' = the run's held-out split (test: puzzles; val: language models, control)
eval_iters = None           # batches; 0 = the whole split; None = the run's
batch_size = None
eval_n_sup = None           # supervision steps; 0 = the model's n_sup; None = what the run's evals ran
halt_threshold = None
arc_eval_votes = None
use_ema = True              # the EMA weights where the run kept them (what its evals scored)
device = ''                 # '' = auto: cuda > mps > cpu
dtype = ''                  # '' = auto, as train.py
json_path = ''              # also write every run's metrics, the means and spreads here
# -----------------------------------------------------------------------------
RULES = {'eval_iters': none_or(at_least(0, "0 = the whole split")), 'batch_size': none_or(at_least(1)),
         'eval_n_sup': none_or(at_least(0, "0 = n_sup")), 'halt_threshold': none_or(fraction()),
         'arc_eval_votes': none_or(at_least(1)), 'device': DEVICE, 'dtype': DTYPE}
overrides = from_command_line(globals(), __file__, rules=RULES)
globals().update(overrides)
overrides = {k: overrides[k] for k in ('eval_iters', 'batch_size', 'eval_n_sup', 'halt_threshold', 'arc_eval_votes')
             if overrides[k] is not None}
device, device_type, dtype, ctx = or_exit(runtime, device, dtype)
run = SimpleNamespace(device=device, ctx=ctx, rank=0, world_size=1, all_reduce=lambda t: None,
                      to_device=lambda batch: tuple(t.to(device) if t is not None else None for t in batch))


def evaluate_run(folder):
    """(metrics, a line saying what was evaluated, supervision steps) of one run's checkpoint."""
    model, ckpt, path = checkpoint.load_or_exit(folder, ckpt_name, device, use_ema)
    config = {**ckpt['config'], **overrides, 'fsdp': False}  # one process: the model is whole here
    data_dir = os.path.join('data', config['dataset'])
    if not os.path.isdir(data_dir):
        sys.exit(f"error: {path} was trained on {data_dir}, which is not here; prepare it first: "
                 f"{prepare_command(config['dataset'])}")
    task = task_module(ckpt['task'])
    data = or_exit(task.load, data_dir, config)
    name = split or task.SPLITS[1]
    if name not in task.SPLITS:
        sys.exit(f"error: split={name!r}: a {ckpt['task']} run has the splits {', '.join(task.SPLITS)}")
    metrics = evaluate(model, task, data, config, run, splits=[name])
    if data.get('kind') == 'arc':  # the single model: one vote, the identity view
        single = evaluate(model, task, data, {**config, 'arc_eval_votes': 1}, run, splits=[name])
        metrics.update({k.replace('_pass@', '_single_pass@'): v for k, v in single.items() if '_pass@' in k})
    rows = sum(len(ix) for ix in task.eval_rows(data, name, torch.Generator().manual_seed(0), config, 0, 1))
    meta = data.get('meta') or {}  # where the data came from: a generator (its difficulty, seed) or a public set
    source = meta.get('source', 'generated')
    source = f"{prepare_command(config['dataset'])} (generated)" if source == 'generated' else f"from {source}"
    if isinstance(meta.get('difficulty'), dict):
        source += f", difficulty {meta['difficulty']['name']}"
    if 'seed' in meta:
        source += f", data seed {meta['seed']}"
    whole = ' (the whole split)' if config['eval_iters'] == 0 else f" ({config['eval_iters']} batches of {config['batch_size']})"
    where = (f"{path}: iter {ckpt['iter_num']}, seed {config['seed']}, {'EMA' if use_ema and ckpt.get('ema') else 'raw'} "
             f"weights; {data_dir} {name}: {rows} rows{whole}; {source}")
    return metrics, where, eval_steps(model, config)


def table(runs, S):
    """Lines: one row per metric (steps 1..S, then the halting step's), mean ± half the range over runs."""
    names = sorted({k.rsplit('_', 1)[0] for m in runs for k in m if k.rsplit('_', 1)[-1] in ('halt', f's{S}')})
    halting = any(f'{n}_halt' in m for m in runs for n in names)
    width = max(len(n) for n in names) + 2 if names else 8
    head = ''.join(f"{f's{s}':>14}" for s in range(1, S + 1)) + (f"{'halt':>14}" if halting else '')
    lines = [f"{'':<{width}}{head}"]
    for n in names:
        cells = [cell([m.get(f'{n}_s{s}') for m in runs]) for s in range(1, S + 1)]
        cells += [cell([m.get(f'{n}_halt') for m in runs])] if halting else []
        lines.append(f"{n:<{width}}" + ''.join(f"{c:>14}" for c in cells))
    for k in sorted({k for m in runs for k in m if '_halt_step' in k}):
        lines.append(f"{k}: {cell([m.get(k) for m in runs], '.2f')} (mean supervision step at halting)")
    return lines


def cell(values, fmt='.4f'):
    """'mean' or 'mean±half the range' of the values that were measured; '-' if none."""
    values = [v for v in values if v is not None]
    if not values:
        return '-'
    mean = sum(values) / len(values)
    return f"{mean:{fmt}}" + (f"±{(max(values) - min(values)) / 2:{fmt}}" if len(values) > 1 else '')


results = [evaluate_run(folder) for folder in out_dir.split(',') if folder]
steps = {S for _, _, S in results}
if len(steps) > 1:
    sys.exit(f"error: the runs evaluate different numbers of supervision steps ({sorted(steps)}); set --eval_n_sup")
S = steps.pop()
runs = [m for m, _, _ in results]
print('\n'.join(where for _, where, _ in results))
if len(runs) > 1:
    print(f"mean ± half the range over {len(runs)} runs")
print('\n'.join(table(runs, S)))
if json_path:
    save_json(json_path, {'runs': [{'where': where, 'metrics': m} for m, where, _ in results]})
