"""Tests of eval.py: a checkpoint's metrics per supervision step and at halting, without training; the whole
split; several runs as mean ± half the range; ARC single-model and voted rows; one-line errors."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT, make_arc_data, one_line_error, run_train


def run_eval(cwd, *args):
    return subprocess.run([sys.executable, os.path.join(ROOT, 'eval.py'), '--dtype=float32', *args], cwd=cwd,
                          env=dict(os.environ, OMP_NUM_THREADS='1'), capture_output=True, text=True, timeout=300)


def evaluated(cwd, *args):
    """(stdout, the JSON eval.py wrote) of a successful eval."""
    proc = run_eval(cwd, f'--json_path={cwd / "eval.json"}', *args)
    assert proc.returncode == 0, proc.stderr
    with open(cwd / 'eval.json') as f:
        return proc.stdout, json.load(f)['runs']


def test_eval_reproduces_the_runs_last_eval(sudoku_run):
    """By default, the numbers the run's last eval logged: every test metric at each step and at halting."""
    with open(sudoku_run / 'sudoku' / 'metrics.jsonl') as f:
        last = [json.loads(line) for line in f if '"eval"' in line][-1]
    out, runs = evaluated(sudoku_run, '--out_dir=sudoku')
    got = runs[0]['metrics']
    logged = {k: v for k, v in last.items() if k.startswith('test_') and k != 'test_halt_hist'}
    assert {'test_exact_s1', 'test_exact_s2', 'test_exact_halt', 'test_halt_step'} <= set(logged)
    assert got.keys() >= logged.keys() and all(not k.startswith('train_') for k in got)
    for k, v in logged.items():
        assert got[k] == pytest.approx(v, rel=1e-6, abs=1e-7), k
    # the table: provenance, a column per step and the halting step, the mean halting step
    assert 'sudoku/ckpt.pt: iter 150, seed 1337, raw weights; data/sudoku_tiny test: 64 rows (1 batches of 64)' in out
    header = next(line for line in out.splitlines() if line.strip().startswith('s1'))
    assert header.split() == ['s1', 's2', 'halt']
    row = next(line for line in out.splitlines() if line.startswith('test_exact '))
    assert row.split()[1:] == [f"{logged[k]:.4f}" for k in ('test_exact_s1', 'test_exact_s2', 'test_exact_halt')]
    assert f"test_halt_step: {logged['test_halt_step']:.2f}" in out


def test_whole_split_weighs_rows_not_batches(sudoku_run):
    """eval_iters=0 scores every row once: the numbers do not depend on how the rows are batched (64 rows
    as one batch, or as 6 batches of 10 and one of 4)."""
    _, one = evaluated(sudoku_run, '--out_dir=sudoku', '--eval_iters=0', '--batch_size=64')
    out, uneven = evaluated(sudoku_run, '--out_dir=sudoku', '--eval_iters=0', '--batch_size=10')
    assert 'test: 64 rows (the whole split)' in out
    a, b = one[0]['metrics'], uneven[0]['metrics']
    assert a.keys() == b.keys()
    for k in a:
        if k != 'test_halt_hist':
            assert b[k] == pytest.approx(a[k], rel=1e-5, abs=1e-6), k
    # more steps than trained (test-time scaling): columns s1..s4
    out, runs = evaluated(sudoku_run, '--out_dir=sudoku', '--eval_n_sup=4')
    assert 'test_exact_s4' in runs[0]['metrics'] and out.count('s4') >= 1


def test_several_runs_give_mean_and_half_range(sudoku_run, tmp_path):
    """Two checkpoints (here one run copied, with its weights nudged): each cell is mean±half the range."""
    import torch
    shutil.copytree(sudoku_run / 'sudoku', tmp_path / 'b')
    ckpt = torch.load(tmp_path / 'b' / 'ckpt.pt', weights_only=True)
    ckpt['model'] = {k: v + 0.05 * torch.randn_like(v) if v.is_floating_point() else v for k, v in ckpt['model'].items()}
    torch.save(ckpt, tmp_path / 'b' / 'ckpt.pt')
    os.symlink(sudoku_run / 'data', tmp_path / 'data')
    shutil.copytree(sudoku_run / 'sudoku', tmp_path / 'a')
    out, runs = evaluated(tmp_path, '--out_dir=a,b')
    assert len(runs) == 2 and 'mean ± half the range over 2 runs' in out
    a, b = (r['metrics']['test_loss_s2'] for r in runs)
    assert a != b
    row = next(line for line in out.splitlines() if line.startswith('test_loss '))
    assert row.split()[2] == f"{(a + b) / 2:.4f}±{abs(a - b) / 2:.4f}"


def test_arc_reports_single_model_and_voted(tmp_path):
    make_arc_data(tmp_path)
    run_train(tmp_path, '--dataset=arc_tiny', '--out_dir=arc', '--n_layer=1', '--n_head=2', '--n_kv_head=1',
              '--n_embd=32', '--n_sup=2', '--batch_size=4', '--max_iters=4', '--eval_interval=4', '--eval_iters=1',
              '--arc_n_aug=16', '--arc_eval_votes=4', '--puzzle_emb_ndim=32')
    out, runs = evaluated(tmp_path, '--out_dir=arc')
    m = runs[0]['metrics']
    for k in ('test_pass@1_s2', 'test_pass@2_s2', 'test_single_pass@1_s2', 'test_single_pass@1_halt'):
        assert k in m and 0 <= m[k] <= 1, k
    assert any(line.startswith('test_single_pass@1 ') for line in out.splitlines())


def test_bad_input_is_one_clear_error(sudoku_run, tmp_path):
    assert 'not found; train first' in one_line_error(run_eval(tmp_path, '--out_dir=nothing'))
    line = one_line_error(run_eval(sudoku_run, '--out_dir=sudoku', '--split=val'))
    assert "split='val'" in line and 'train, test' in line
    line = one_line_error(run_eval(sudoku_run, '--out_dir=sudoku', '--eval_iters=-1'))
    assert 'eval_iters=-1' in line
    shutil.copytree(sudoku_run / 'sudoku', tmp_path / 'sudoku')  # a run whose data is not here
    line = one_line_error(run_eval(tmp_path, '--out_dir=sudoku'))
    assert 'data/sudoku_tiny' in line and 'prepare it first' in line
