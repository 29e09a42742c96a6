import importlib.util
import json
import os
import pickle
import random
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def pytest_configure(config):
    config.addinivalue_line('markers', 'gpu: needs a CUDA GPU (python -m pytest -m gpu); skipped without one')

# a few thousand characters of real text: enough to train on for a few steps
TEXT = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
        "First Citizen:\nYou are all resolved rather to die than to famish?\n\nAll:\nResolved. resolved.\n\n"
        "First Citizen:\nFirst, you know Caius Marcius is chief enemy to the people.\n\n") * 20


@pytest.fixture
def run_dir(tmp_path):
    """A working directory holding data/tiny (char-level, nanoGPT format), as train.py expects."""
    make_char_data(tmp_path)
    return tmp_path


def make_char_data(cwd):
    """data/tiny in cwd: TEXT as a char-level nanoGPT set (train.bin, val.bin, meta.pkl)."""
    d = cwd / 'data' / 'tiny'
    d.mkdir(parents=True)
    chars = sorted(set(TEXT))
    stoi = {c: i for i, c in enumerate(chars)}
    ids = np.array([stoi[c] for c in TEXT], dtype=np.uint16)
    n = int(0.9 * len(ids))
    ids[:n].tofile(d / 'train.bin')
    ids[n:].tofile(d / 'val.bin')
    with open(d / 'meta.pkl', 'wb') as f:
        pickle.dump({'vocab_size': len(chars), 'stoi': stoi, 'itos': dict(enumerate(chars))}, f)


TINY = ['--dataset=tiny', '--batch_size=4', '--block_size=32', '--n_layer=1', '--n_head=2', '--n_kv_head=1',
        '--n_embd=32', '--eval_iters=2', '--log_interval=1', '--warmup_iters=2', '--compile=False']


def run_all(cwd, cases, script='train.py', prefix=()):
    """Run `script` once per case ({name: (args, ...)}) in cwd, 8 processes at a time (one thread each: two
    cores take twenty cases in ~40 s); {name: CompletedProcess}. Case i writes to out_dir o<i> unless its
    args name another."""
    from concurrent.futures import ThreadPoolExecutor
    env = dict(os.environ, WANDB_MODE='disabled', OMP_NUM_THREADS='1')

    def run(i, args):
        return subprocess.run([sys.executable, os.path.join(ROOT, script), *prefix, f'--out_dir=o{i}', *args],
                              cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    with ThreadPoolExecutor(8) as pool:
        futures = {name: pool.submit(run, i, args) for i, (name, (args, *_)) in enumerate(cases.items())}
    return {name: f.result() for name, f in futures.items()}


def one_line_error(proc):
    """The single line a refused run writes (stderr), after checking it failed, without a traceback."""
    assert proc.returncode != 0
    assert 'Traceback' not in proc.stdout + proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


def run_train(cwd, *args, check=True):
    """Run train.py in cwd with the tiny config plus args; returns the CompletedProcess."""
    env = dict(os.environ, WANDB_MODE=os.environ.get('WANDB_MODE', 'disabled'))
    proc = subprocess.run([sys.executable, os.path.join(ROOT, 'train.py'), *TINY, *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"train.py failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def make_reasoning_data(cwd, task='pointer'):
    """data/reasoning/<task> in cwd, small: pointer chasing of 1-2 hops (hard: 3-4), 300 train examples."""
    subprocess.run([sys.executable, os.path.join(ROOT, 'data', 'reasoning', 'prepare.py'), f'--task={task}',
                    f'--out_dir={cwd}/data/reasoning/{task}', '--hops=2', '--digits=2', '--modulus=11',
                    '--n_train=300', '--n_val=40', '--n_hard=40', '--min_tokens=20000'],
                   check=True, capture_output=True)


def make_sudoku_data(run_dir, n_train=64, n_test=16, blanks=4):
    """A tiny Sudoku set in the puzzle format: solved grids with a few cells blanked."""
    spec = importlib.util.spec_from_file_location('sudoku_prepare', os.path.join(ROOT, 'data', 'sudoku', 'prepare.py'))
    sudoku = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sudoku)
    rng = random.Random(0)
    d = run_dir / 'data' / 'sudoku_tiny'
    d.mkdir(parents=True)
    for split, n in (('train', n_train), ('test', n_test)):
        X, Y = [], []
        for _ in range(n):
            solution = sudoku.random_solution(rng)
            puzzle = list(solution)
            for i in rng.sample(range(81), blanks):
                puzzle[i] = 0
            X.append(sudoku.to_tokens(puzzle))
            Y.append(sudoku.to_tokens(solution))
        np.save(d / f'{split}_inputs.npy', np.array(X, np.uint8))
        np.save(d / f'{split}_labels.npy', np.array(Y, np.int16))
    (d / 'meta.json').write_text(json.dumps({'vocab_size': 11, 'seq_len': 81, 'grid': [9, 9], 'pad_id': 0,
                                             'ignore_label': -100, 'augmentation': 'sudoku',
                                             'counts': {'train': n_train, 'test': n_test}}))


def make_arc_data(run_dir, n_tasks=3):
    """A tiny ARC set in the prepared format: small random grids, output = input flipped left-right; two
    demonstration pairs per task in train, one test pair in test (sharing the task's puzzle id)."""
    import puzzles
    rng = np.random.default_rng(0)
    d = run_dir / 'data' / 'arc_tiny'
    d.mkdir(parents=True)
    rows = {'train': [], 'test': []}
    for t in range(n_tasks):
        for split in ('train', 'train', 'test'):
            g = rng.integers(0, 10, rng.integers(2, 5, 2))
            rows[split].append((puzzles.arc_encode(g), puzzles.arc_encode(g[:, ::-1], labels=True), t))
    for split, rs in rows.items():
        np.save(d / f'{split}_inputs.npy', np.stack([r[0] for r in rs]).astype(np.uint8))
        np.save(d / f'{split}_labels.npy', np.stack([r[1] for r in rs]).astype(np.int16))
        np.save(d / f'{split}_puzzle_ids.npy', np.array([r[2] for r in rs], np.int32))
    (d / 'meta.json').write_text(json.dumps({'vocab_size': 12, 'seq_len': 900, 'grid': [30, 30], 'pad_id': 0,
                                             'eos_id': 1, 'ignore_label': -100, 'augmentation': 'arc',
                                             'num_puzzle_ids': n_tasks, 'puzzle_names': [f'task{t}' for t in range(n_tasks)],
                                             'counts': {k: len(v) for k, v in rows.items()}}))


# a tiny mlp_t TRM that learns 1-blank Sudoku (the blank's digit is the one its row lacks): chance, for a model
# that copies the 80 givens and guesses the blank, is 1/9 exact; this run gets well above it in seconds
SUDOKU_RUN = ['--dataset=sudoku_tiny', '--out_dir=sudoku', '--mixer=mlp_t', '--schedule=batch', '--n_embd=32',
              '--n_loops=1', '--T_recursion=2', '--n_sup=2', '--batch_size=64', '--learning_rate=1e-2',
              '--max_iters=150', '--lr_decay_iters=150', '--eval_interval=150', '--eval_iters=1',
              '--log_interval=50', '--use_ema=False', '--dtype=float32']


@pytest.fixture(scope='session')
def sudoku_run(tmp_path_factory):
    """A working directory with data/sudoku_tiny (1 blank; 256 train, 64 test puzzles) and the run SUDOKU_RUN
    trained on it in ./sudoku (shared by the tests of training and of sampling)."""
    d = tmp_path_factory.mktemp('sudoku')
    make_sudoku_data(d, n_train=256, n_test=64, blanks=1)
    run_train(d, *SUDOKU_RUN)
    return d


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
