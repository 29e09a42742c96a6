"""
Plots of train.py's JSON-lines logs (<out_dir>/metrics.jsonl) as PNG files (matplotlib's Agg backend:
no display needed).

    python plot.py out-shakespeare-char            # -> out-shakespeare-char/loss.png, speed.png
    python plot.py out-a out-b --to=plots          # several runs: a panel or a line each

loss.png: train (dashed) and val/test (solid) loss at every supervision step vs iteration, a panel per run.
speed.png: training tokens/s vs iteration, a line per run.
halting.png, when the evals logged halting (puzzle runs): the share of test puzzles halting at each
supervision step at the last eval, and the mean halting step vs iteration.
ablate.py draws its val loss vs wall time and FLOPs with plot_ablation, solve.py its control rollouts
with plot_rollouts.
"""
import json
import os
import re
import sys

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)
import numpy as np  # noqa: E402


def read_log(out_dir):
    """The rows of out_dir/metrics.jsonl (dicts with 'iter', 'kind': 'train' or 'eval', 'time', metrics)."""
    path = os.path.join(out_dir, 'metrics.jsonl')
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} not found: train.py writes it into its out_dir (python train.py --out_dir=...)")
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def step_keys(rows, pattern):
    """The keys of rows matching pattern (a regex with one group: the supervision step), in step order."""
    found = {(int(m.group(1)), k) for r in rows for k in r for m in [re.fullmatch(pattern, k)] if m}
    return [k for _, k in sorted(found)]


def curve(rows, key, kind=None):
    pts = [(r['iter'], r[key]) for r in rows if key in r and (kind is None or r['kind'] == kind)]
    return [p[0] for p in pts], [p[1] for p in pts]


def save(fig, path):
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_losses(runs, path):
    fig, axes = plt.subplots(1, len(runs), figsize=(6 * len(runs), 4), squeeze=False)
    for ax, (name, rows) in zip(axes[0], runs):
        train = step_keys(rows, r'loss_s(\d+)') or (['loss'] if any('loss' in r for r in rows) else [])
        evals = step_keys(rows, r'(?:val|test)_loss_s(\d+)')
        for s, key in enumerate(train):
            ax.plot(*curve(rows, key, 'train'), '--', color=f'C{s}', alpha=0.6, label=f'train {key}')
        for s, key in enumerate(evals):
            ax.plot(*curve(rows, key, 'eval'), 'o-', color=f'C{s}', label=key)
        ax.set(title=name, xlabel='iteration', ylabel='loss')
        ax.legend(fontsize=7)
    return save(fig, path)


def plot_speed(runs, path):
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, rows in runs:
        ax.plot(*curve(rows, 'tok_per_s', 'train'), label=name)
    ax.set(xlabel='iteration', ylabel='tokens/s (training)', ylim=(0, None))
    ax.legend(fontsize=7)
    return save(fig, path)


def plot_halting(runs, path):
    """None when no run logged halting data."""
    keys = {name: sorted({k for r in rows for k in r if k.endswith(('_halt_step', '_halt_hist'))}) for name, rows in runs}
    runs = [(name, rows) for name, rows in runs if keys[name]]
    if not runs:
        return None
    fig, (hist, mean) = plt.subplots(1, 2, figsize=(11, 4))
    width = 0.8 / len(runs)
    for i, (name, rows) in enumerate(runs):
        for key in keys[name]:
            last = [r for r in rows if key in r]
            if key.endswith('_hist'):  # the share of puzzles halting at each step, at the last eval
                shares = last[-1][key]
                hist.bar([s + 1 + (i - (len(runs) - 1) / 2) * width for s in range(len(shares))], shares, width,
                         label=f"{name} (iter {last[-1]['iter']})")
            else:
                mean.plot(*curve(rows, key, 'eval'), 'o-', label=f'{name} {key}')
    hist.set(xlabel='halting step (first q > 0, else n_sup)', ylabel='share of puzzles', title='last eval')
    mean.set(xlabel='iteration', ylabel='mean halting step')
    for ax in (hist, mean):
        if ax.has_data():
            ax.legend(fontsize=7)
    return save(fig, path)


def plot_ablation(runs, path, exact_path=None):
    """Val (or test) loss at the last supervision step vs wall time and vs training FLOPs, a colour per
    setting (a line per seed). exact_path, where the runs score exact match (puzzles, data/reasoning): exact
    match (at the halting step where the runs halt, else the last training step) vs wall time and vs training
    FLOPs, and val (test) / hard exact match vs the supervision steps the final eval ran (test-time scaling
    past the dotted line), means over seeds. runs: dicts with name, rows, split, n_sup, flops_per_iter, final
    (see ablate.run_ablation)."""
    names = list(dict.fromkeys(r['name'] for r in runs))
    colour = {name: f'C{i % 10}' for i, name in enumerate(names)}
    fig, (by_time, by_flops) = plt.subplots(1, 2, figsize=(11, 4))
    for r in runs:
        key = f"{r['split']}_loss_s{r['n_sup']}"
        t, pts = 0.0, []
        for row in r['rows']:
            t = max(t, row['time'])  # an eval-only pass after a seconds budget restarts the clock
            if row['kind'] == 'eval' and key in row:
                pts.append((t, row['iter'] * r['flops_per_iter'], row[key]))
        first = r is next(x for x in runs if x['name'] == r['name'])
        for ax, x in ((by_time, 0), (by_flops, 1)):
            ax.plot([p[x] for p in pts], [p[2] for p in pts], 'o-', ms=3, color=colour[r['name']],
                    label=r['name'] if first else None)
    by_time.set(xlabel='wall time of training (s)', ylabel=f"{runs[0]['split']} loss, last supervision step")
    by_flops.set(xlabel='training FLOPs', ylabel=f"{runs[0]['split']} loss, last supervision step")
    for ax in (by_time, by_flops):
        ax.legend(fontsize=7)
    save(fig, path)
    split = runs[0]['split']
    if exact_path is None or not any(f'{split}_exact_s1' in r['final'] for r in runs):
        return path
    fig, (by_time, by_flops, by_steps) = plt.subplots(1, 3, figsize=(16, 4))
    for name in names:
        group = [r for r in runs if r['name'] == name]
        key = f"{split}_exact_halt" if f"{split}_exact_halt" in group[0]['final'] else f"{split}_exact_s{group[0]['n_sup']}"
        for r in group:  # time to accuracy: a line per seed (seeds run at different speeds)
            t, pts = 0.0, []
            for row in r['rows']:
                t = max(t, row['time'])
                if row['kind'] == 'eval' and key in row:
                    pts.append((t, row[key]))
            by_time.plot(*zip(*pts), 'o-', ms=3, color=colour[name], label=name if r is group[0] else None)
        curves = [[(row['iter'] * r['flops_per_iter'], row[key]) for row in r['rows'] if row['kind'] == 'eval' and key in row]
                  for r in group]
        n = min(len(c) for c in curves)
        by_flops.plot([curves[0][i][0] for i in range(n)], [np.mean([c[i][1] for c in curves]) for i in range(n)],
                      'o-', ms=3, color=colour[name], label=name)
        for split_, style in ((split, 'o-'), ('hard', 's--')):
            steps = [k for k in range(1, 65) if all(f'{split_}_exact_s{k}' in r['final'] for r in group)]
            means = [np.mean([r['final'][f'{split_}_exact_s{k}'] for r in group]) for k in steps]
            by_steps.plot(steps, means, style, ms=3, color=colour[name], label=f'{name} ({split_})' if split_ == split else None)
        by_steps.axvline(group[0]['n_sup'] + 0.5, color=colour[name], ls=':', lw=0.8)
    what = f"{split} exact match (at halting; without a q-head, last step)"
    by_time.set(xlabel='wall time of training, evals included (s)', ylabel=what)
    by_flops.set(xlabel='training FLOPs', ylabel=what)
    by_steps.set(xlabel='supervision steps at inference (dashed: hard split)', ylabel='exact match')
    for ax in (by_time, by_flops, by_steps):
        ax.legend(fontsize=7)
    return save(fig, exact_path)


def plot_rollouts(system, xs_pred, xs_opt, u_pred, u_opt, target, path):
    """Control rollouts (solve.py): every state and control over time, predicted (solid) against optimal
    (dashed), a colour per rollout; targets dotted. xs: [N, H+1, n], u: [N, H, m], target: [N, n]."""
    n, m, H = system['n_state'], system['n_control'], system['horizon']
    fig, axes = plt.subplots(n + m, 1, figsize=(7, 2 * (n + m)), sharex=True)
    tx = [t * system['dt'] for t in range(H + 1)]
    for i in range(len(xs_pred)):
        c = f'C{i % 10}'
        for d in range(n):
            axes[d].plot(tx, xs_pred[i, :, d], color=c, label='predicted' if i == 0 else None)
            axes[d].plot(tx, xs_opt[i, :, d], color=c, ls='--', label='optimal' if i == 0 else None)
            axes[d].axhline(target[i, d], color=c, lw=0.6, ls=':')
            axes[d].set_ylabel(f'state {d}')
        for k in range(m):
            for u, ls in ((u_pred, '-'), (u_opt, '--')):  # zero-order hold: the last value held to t = H dt
                axes[n + k].step(tx, list(u[i, :, k]) + [u[i, -1, k]], where='post', color=c, ls=ls)
            axes[n + k].set_ylabel(f'control {k}')
    axes[0].legend(loc='best')
    axes[-1].set_xlabel('time (s)')
    ratio = (control_cost(system, xs_pred, u_pred, target) / control_cost(system, xs_opt, u_opt, target)).mean()
    axes[0].set_title(f"{system['name']}: predicted (solid) vs optimal (dashed), mean cost ratio {ratio:.3f}", fontsize=10)
    return save(fig, path)


def control_cost(system, xs, u, target):
    import control  # only rollout plots need torch
    return control.cost(system, xs, u, target)


if __name__ == '__main__':
    dirs = [a for a in sys.argv[1:] if not a.startswith('--')]
    to = next((a.split('=', 1)[1] for a in sys.argv[1:] if a.startswith('--to=')), None)
    unknown = [a for a in sys.argv[1:] if a.startswith('--') and not a.startswith('--to=')]
    if not dirs or unknown:
        sys.exit("error: usage: python plot.py out_dir [out_dir2 ...] [--to=DIR]")
    to = to or (dirs[0] if len(dirs) == 1 else 'plots')
    try:
        runs = [(os.path.basename(os.path.normpath(d)), read_log(d)) for d in dirs]
    except FileNotFoundError as e:
        sys.exit(f"error: {e}")
    os.makedirs(to, exist_ok=True)
    written = [plot_losses(runs, os.path.join(to, 'loss.png')), plot_speed(runs, os.path.join(to, 'speed.png')),
               plot_halting(runs, os.path.join(to, 'halting.png'))]
    print('wrote ' + ', '.join(p for p in written if p))
