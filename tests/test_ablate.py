import csv
import json
import os
import re
import subprocess
import sys

import pytest
import torch

from conftest import ROOT
from test_train import PUZZLE, make_sudoku_data


def run(script, cwd, *args, check=True):
    proc = subprocess.run([sys.executable, os.path.join(ROOT, script), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300, env=dict(os.environ, WANDB_MODE='disabled'))
    if check:
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc


def ablate(cwd, *args):
    return run('ablate.py', cwd, *args).stdout


def bench(cwd, *args):
    return run('bench.py', cwd, *args).stdout


def test_ablate_grid_writes_table_csv_and_plot_and_plot_py_renders_the_logs(run_dir):
    # a two-setting puzzle grid (the trm schedule, test metrics per supervision step, halting data)
    import matplotlib.image
    make_sudoku_data(run_dir)
    common = dict(a[2:].split('=', 1) for a in PUZZLE if not a.startswith(('--max_iters', '--lr_decay', '--eval_')))
    common['n_sup'] = 2
    (run_dir / 'grid.py').write_text(f"budget = {{'max_iters': 2}}\ncommon = {common!r}\n"
                                     "settings = {'one': {'n_loops': 1}, 'two': {'n_loops': 2, 'T_recursion': 1}}\n")
    out = ablate(run_dir, 'grid.py', '--eval_iters=1')
    root = run_dir / 'out-ablate-grid'
    table = (root / 'results.md').read_text()
    assert table in out
    for name, over in (('one', 'n_loops=1'), ('two', 'n_loops=2, T_recursion=1')):  # loss (exact) at both steps
        assert re.search(rf'^\| {name} \| {over} \|.*\| 2 \| \d+ s( \| [\d.]+ \([\d.]+\)){{2}} \|$', table, re.M), table
    with open(root / 'results.csv') as f:
        rows = {r['setting']: r for r in csv.DictReader(f)}
    for name in ('one', 'two'):  # the final metrics are the last eval of each run's own log
        with open(root / name / 'metrics.jsonl') as f:
            last = [json.loads(line) for line in f if '"eval"' in line][-1]
        assert last['iter'] == 2
        last_one = last if name == 'one' else last_one
        assert all(float(rows[name][f'test_{m}_s{s}']) == last[f'test_{m}_s{s}'] for m in ('loss', 'exact') for s in (1, 2))
    # T=2 cycles of 2 net calls, the first forward only (2 + 3 x 2 = 8 forward-equivalents) vs 1 cycle of 3 (9)
    assert float(rows['two']['flops_per_token']) > float(rows['one']['flops_per_token'])
    assert (root / 'val_loss.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    # puzzles are scored by exact match: per step and at halting, and exact.png (time to accuracy among its panels)
    m = re.search(r'^\| one \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|$', table, re.M)
    assert m and [float(v) for v in m.groups()] == [round(last_one[k], 3 if k != 'test_halt_step' else 2) for k in
                                                    ('test_exact_s1', 'test_exact_s2', 'test_exact_halt', 'test_halt_step')], table
    assert matplotlib.image.imread(root / 'exact.png').std() > 0.01
    # the plot entry, on the two runs' logs
    proc = subprocess.run([sys.executable, os.path.join(ROOT, 'plot.py'), str(root / 'one'), str(root / 'two'),
                           '--to=plots'], cwd=run_dir, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ('loss', 'speed', 'halting'):
        image = matplotlib.image.imread(run_dir / 'plots' / f'{name}.png')
        assert image.shape[0] >= 300 and image.std() > 0.01, name  # not blank


def test_ablate_grid_on_control_reports_cost_ratio_and_success(control_run):
    # a control grid's table reads like a puzzle grid's, with what a controller is judged by next to the loss
    from conftest import CONTROL
    common = dict(a[2:].split('=', 1) for a in CONTROL if not a.startswith(('--max_iters', '--lr_decay', '--eval_', '--out_dir')))
    # its base config has a wall-clock budget: an iteration budget must not inherit its lr schedule
    (control_run / 'cbase.py').write_text("max_seconds = 600.0\n")
    (control_run / 'cgrid.py').write_text(f"budget = {{'max_iters': 2}}\ncommon = {common!r}\nconfig = 'cbase.py'\n"
                                          "settings = {'silu': {'mlp': 'silu'}, 'swiglu': {'mlp': 'swiglu'}}\n")
    # through bench.py --ablate, which hands the grid and the train.py keys given to it to ablate.py
    bench(control_run, '--ablate=cgrid.py', '--eval_iters=1', '--compile=False', '--ablate_dir=out-cgrid')
    table = (control_run / 'out-cgrid' / 'results.md').read_text()
    assert 'final val loss per supervision step (cost ratio median, success)' in table
    with open(control_run / 'out-cgrid' / 'results.csv') as f:
        final = {r['setting']: r for r in csv.DictReader(f)}
    for name in ('silu', 'swiglu'):  # loss (median cost ratio, success) at both supervision steps
        assert re.search(rf'^\| {name} \| mlp={name} \|.*( \| [\d.]+ \([\d.]+, [\d.]+%\)){{2}} \|$', table, re.M), table
        row = next(line for line in table.splitlines() if line.startswith(f'| {name} |'))
        assert f"({float(final[name]['val_cost_ratio_median_s2']):.3f}, " in row  # the median, not the mean
        assert torch.load(control_run / 'out-cgrid' / name / 'ckpt.pt', weights_only=True)['config']['max_seconds'] == 0


def test_ablate_checks_its_arguments_before_training(run_dir):
    # a typo in a key fails at once, with one line, not after the first settings have trained
    (run_dir / 'grid.py').write_text("budget = {'max_iters': 2}\nsettings = {'a': {}}\n")
    proc = run('ablate.py', run_dir, 'grid.py', '--n_lops=2', check=False)
    assert proc.returncode != 0 and "unknown config key 'n_lops'" in proc.stderr and not (run_dir / 'out-ablate-grid').exists()
    proc = run('ablate.py', run_dir, check=False)
    assert proc.returncode != 0 and proc.stderr.startswith('usage: python ablate.py GRID_FILE')
    (run_dir / 'bad.py').write_text("budget = {'max_iters': 2}\nsettings = {'a': {'dataset': 'missing'}}\n")
    proc = run('ablate.py', run_dir, 'bad.py', check=False)  # no data: the task's message, before train.py runs
    assert proc.returncode != 0 and "setting 'a' of bad.py" in proc.stderr and 'prepare.py' in proc.stderr
    proc = run('ablate.py', run_dir, 'grid.py', '--seeds=one', check=False)
    assert proc.returncode != 0 and '--seeds=one: give integers' in proc.stderr


def test_equivalent_depth_reads_the_plain_curve_in_log_depth():
    from ablate import equivalent_depth
    plain = [(4, 1.0), (1, 2.0), (2, 1.5)]
    assert equivalent_depth(plain, 1.25) == pytest.approx((2 * 2 ** 0.5, ''))  # halfway from 2 to 4 layers
    assert equivalent_depth(plain, 1.5) == pytest.approx((2.0, ''))
    assert equivalent_depth(plain, 0.5) == (4, '>')  # better than the deepest: a bound, not an extrapolation
    assert equivalent_depth(plain, 2.5) == (1, '<')
    # a deeper model that came out worse does not bend the curve back: a running minimum
    assert equivalent_depth([(1, 2.0), (2, 2.1), (4, 1.0)], 1.5) == pytest.approx((2 * 2 ** 0.5, ''))


def test_ablate_seeds_jobs_exact_tables_and_what_a_loop_is_worth(run_dir):
    # plain models of 1 and 2 layers and a recursive one on a reasoning set, two seeds, two at a time
    import matplotlib.image
    from conftest import TINY, make_reasoning_data
    make_reasoning_data(run_dir, 'pointer')
    common = dict(a[2:].split('=', 1) for a in TINY if not a.startswith(('--dataset', '--block_size', '--n_layer')))
    common.update(dataset='reasoning/pointer', block_size=64, eval_n_sup=3)
    (run_dir / 'grid.py').write_text(
        f"budget = {{'max_iters': 2}}\ncommon = {common!r}\nseeds = [1, 2]\n"
        "settings = {'plain1': {'recursion': False, 'n_layer': 1}, 'plain2': {'recursion': False, 'n_layer': 2},\n"
        "            'rec': {'n_layer': 1, 'n_sup': 2}}\n")
    ablate(run_dir, 'grid.py', '--jobs=2')
    root = run_dir / 'out-ablate-grid'
    table = (root / 'results.md').read_text()
    assert 'mean ± half the min-max range over 2 seeds' in table
    with open(root / 'results.csv') as f:
        rows = list(csv.DictReader(f))
    assert sorted((r['setting'], r['seed']) for r in rows) == [(n, s) for n in ('plain1', 'plain2', 'rec') for s in '12']
    # the table's mean is the seeds' mean; the exact table has 3 eval steps (one past training's 2) and halting
    rec = [float(r['val_loss_s2']) for r in rows if r['setting'] == 'rec']
    assert f"{sum(rec) / 2:.4f}±{abs(rec[0] - rec[1]) / 2:.4f}" in table
    assert re.search(r'^\| rec \|( [\d.]+±[\d.]+ \|){8} [\d.]+±[\d.]+ \|$', table, re.M), table
    # what a loop is worth: the recursive setting on the plain curve (1 layer x 2 calls x 2 steps)
    line = next(l for l in table.splitlines() if l.startswith('| rec | pre-norm, 1/2 layers | 1 | 4 | 4 |'))
    assert len(line.split('|')) == 10
    assert matplotlib.image.imread(root / 'exact.png').std() > 0.01
    # --seeds replaces the grid's
    ablate(run_dir, 'grid.py', '--seeds=3')
    assert (root / 'rec' / 'seed3' / 'ckpt.pt').exists()


def test_ablate_tabulates_the_runs_that_finished_when_one_fails_and_table_only_trains_nothing(run_dir):
    from conftest import TINY, make_reasoning_data
    make_reasoning_data(run_dir, 'pointer')
    common = dict(a[2:].split('=', 1) for a in TINY if not a.startswith(('--dataset', '--block_size')))
    common.update(dataset='reasoning/pointer', block_size=64)
    # 'bad' passes the checks made before training and fails in train.py: there is no checkpoint to resume
    (run_dir / 'grid.py').write_text(f"budget = {{'max_iters': 2}}\ncommon = {common!r}\nseeds = [1, 2]\n"
                                     "settings = {'ok': {}, 'bad': {'init_from': 'resume'}}\n")
    root = run_dir / 'out-ablate-grid'
    proc = run('ablate.py', run_dir, 'grid.py', '--seeds=1', check=False)
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert f"error: train.py failed in {os.path.join('out-ablate-grid', 'bad', 'seed1')}" in proc.stdout
    table = (root / 'results.md').read_text()
    assert re.search(r'^\| ok \| - \|', table, re.M) and '| bad |' not in table, table
    assert table.rstrip().endswith(f"see its train.log): {os.path.join('out-ablate-grid', 'bad', 'seed1')}")
    assert not (root / 'bad' / 'seed1' / 'ablate.json').exists()  # a failed run is retried next time
    # the grid's two seeds, tabulated without training: 'ok' has one of them
    out = ablate(run_dir, 'grid.py', '--table_only=True')
    assert not (root / 'ok' / 'seed2').exists()
    table = (root / 'results.md').read_text()
    assert table in out and re.search(r'^\| ok \(1 of 2 seeds\) \| - \|', table, re.M), table
    assert all(os.path.join('out-ablate-grid', n, f'seed{s}') in table.splitlines()[-1]
               for n, s in (('ok', 2), ('bad', 1), ('bad', 2)))
    with open(root / 'results.csv') as f:
        assert [(r['setting'], r['seed']) for r in csv.DictReader(f)] == [('ok', '1')]
    # bench.py --ablate runs the same grid and fails the same way
    proc = run('bench.py', run_dir, '--ablate=grid.py', check=False)
    assert proc.returncode == 1 and (root / 'ok' / 'seed2' / 'ablate.json').exists(), proc.stdout[-2000:]
