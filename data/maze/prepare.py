"""
Generate 30x30 mazes with a start, a goal and one shortest path between them (as TRM's Maze-Hard); or read
the public Maze-Hard the TRM paper trains and tests on.

    python data/maze/prepare.py                          # hard: shortest path >= 110 steps, 1000 + 1000
    python data/maze/prepare.py --difficulty=easy --out_dir=data/maze_easy
    python data/maze/prepare.py --n_train=100 --n_test=100 --min_len=60 --loop_prob=0.2
    python data/maze/prepare.py --source=hf --out_dir=data/maze_hard              # the paper's 1000 + 1000
    python data/maze/prepare.py --source=path/to/folder --out_dir=data/maze_hard  # its CSVs, offline

A maze: a randomized depth-first-search maze on a 15x15 lattice of rooms (rooms on every other
cell, with a random offset of 0 or 1 per axis so the outer walls vary), then each remaining wall
between two rooms knocked out with probability --loop_prob so that several routes exist.
S is a random open cell, G a random open cell whose BFS distance from S lies in the difficulty's
range; the label marks one shortest path (chosen at random among the shortest ones).

    difficulty   shortest path length (steps S -> G)
    easy         10 .. 60
    medium       60 .. 109
    hard         >= 110   (Maze-Hard)

--source=hf reads the hub dataset sapientinc/maze-30x30-hard-1k, --source=FOLDER a folder holding its
train.csv and test.csv (offline): columns source, question, answer, rating; question and answer are 900
characters row by row, '#' wall, ' ' open, 'S' start, 'G' goal, and 'o' the path (answer only). Every row
is checked (lengths, characters, one S and one G, the answer = the question plus 'o' on open cells); the
first bad one is a one-line error and nothing is written. --subsample=N keeps N random train rows (seeded
by --seed; all by default), --n_test caps test. The rating column is not kept.

Tokens: PAD 0, wall 1, open 2, start 3, goal 4, path 5 (labels only). 900 cells row-major.
Writes <split>_inputs.npy [N, 900] uint8, <split>_labels.npy [N, 900] int16 (the input with the
path cells set to 5; every cell carries loss), <split>_lengths.npy [N] int32 (steps S -> G: the
path cells + 1, the shortest path's length) and meta.json.
"""
import argparse
import json
import os
import sys
import time

import numpy as np
from tqdm import tqdm

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, 'data'))  # puzzle_csv
sys.path.insert(0, ROOT)
from common import or_exit, save_json, save_npy, write_atomic  # noqa: E402
from puzzle_csv import provenance, read_splits, source_error  # noqa: E402
from puzzles import MAZE_GOAL, MAZE_OPEN, MAZE_PATH, MAZE_START, MAZE_WALL, maze_distances  # noqa: E402

SIZE = 30
DIFFICULTIES = {'easy': (10, 60), 'medium': (60, 109), 'hard': (110, None)}
HUB_NAME = 'sapientinc/maze-30x30-hard-1k'
# the public CSVs' characters (TRM's charset '# SGo', in its order) as this script's tokens
CHAR_TOKENS = {'#': MAZE_WALL, ' ': MAZE_OPEN, 'S': MAZE_START, 'G': MAZE_GOAL, 'o': MAZE_PATH}


def make_maze(rng, loop_prob):
    """Boolean open-cell mask [30, 30]."""
    off_r, off_c = rng.integers(0, 2, 2)
    n = SIZE // 2  # 15 rooms per axis
    open_ = np.zeros((SIZE, SIZE), bool)
    seen = np.zeros((n, n), bool)
    start = (int(rng.integers(n)), int(rng.integers(n)))
    stack, seen[start] = [start], True
    open_[off_r + 2 * start[0], off_c + 2 * start[1]] = True
    while stack:  # iterative randomized DFS: carve to a random unvisited neighbour, else backtrack
        r, c = stack[-1]
        nbrs = [(r + dr, c + dc) for dr, dc in ((-1, 0), (1, 0), (0, -1), (0, 1))
                if 0 <= r + dr < n and 0 <= c + dc < n and not seen[r + dr, c + dc]]
        if not nbrs:
            stack.pop()
            continue
        rr, cc = nbrs[rng.integers(len(nbrs))]
        seen[rr, cc] = True
        open_[off_r + 2 * rr, off_c + 2 * cc] = True
        open_[off_r + r + rr, off_c + c + cc] = True  # the wall cell between the two rooms
        stack.append((rr, cc))
    # knock out extra walls between adjacent rooms: loops, so shortest paths are not the only paths
    for r in range(n):
        for c in range(n):
            for rr, cc in ((r + 1, c), (r, c + 1)):
                if rr < n and cc < n and rng.random() < loop_prob:
                    open_[off_r + r + rr, off_c + c + cc] = True
    return open_


def make_example(rng, lo, hi, loop_prob, max_tries=1000):
    for _ in range(max_tries):
        open_ = make_maze(rng, loop_prob)
        cells = np.argwhere(open_)
        start = tuple(cells[rng.integers(len(cells))])
        dist = maze_distances(open_, start)
        ok = np.argwhere((dist >= lo) & ((dist <= hi) if hi is not None else True))
        if len(ok) == 0:
            continue
        goal = tuple(ok[rng.integers(len(ok))])
        grid = np.where(open_, MAZE_OPEN, MAZE_WALL).astype(np.uint8)
        grid[start], grid[goal] = MAZE_START, MAZE_GOAL
        # one shortest path: walk back from G, each step to a random neighbour one step closer to S
        label = grid.astype(np.int16)
        r, c = goal
        while dist[r, c] > 1:
            steps = [(rr, cc) for rr, cc in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1))
                     if 0 <= rr < SIZE and 0 <= cc < SIZE and dist[rr, cc] == dist[r, c] - 1]
            r, c = steps[rng.integers(len(steps))]
            label[r, c] = MAZE_PATH
        return grid.reshape(-1), label.reshape(-1), int(dist[goal])
    raise RuntimeError(f"no maze with a shortest path in [{lo}, {hi}] after {max_tries} tries: "
                       f"lower --min_len or --loop_prob")


def to_tokens(texts):
    """Maze strings of SIZE * SIZE characters of CHAR_TOKENS (checked before) -> tokens [N, SIZE * SIZE] uint8."""
    lut = np.zeros(256, np.uint8)
    for ch, token in CHAR_TOKENS.items():
        lut[ord(ch)] = token
    return lut[np.frombuffer(''.join(texts).encode(), np.uint8).reshape(-1, SIZE * SIZE)]


def csv_tokens(split, d):
    """(inputs, labels, lengths) of the public CSV rows d (from read_splits), as the generated mazes.
    ValueError naming the first bad row (its line in the file) and what is wrong with it."""
    def where(i):
        return f"{split}.csv line {d['rows'][i] + 2}"  # 1-based, after the header

    for i, (q, s) in enumerate(zip(d['question'], d['answer'])):
        if len(q) != SIZE * SIZE or len(s) != SIZE * SIZE:
            raise ValueError(f"{where(i)}: question and answer have {len(q)} and {len(s)} characters; a maze is "
                             f"{SIZE * SIZE}, {SIZE} rows of {SIZE}")
        bad = (set(q) - set('# SG')) | (set(s) - set(CHAR_TOKENS))
        if bad:
            raise ValueError(f"{where(i)}: characters {', '.join(map(repr, sorted(bad)))}; a question holds '#' "
                             f"(wall), ' ' (open), 'S' and 'G', an answer also 'o' (the path)")
    inputs, labels = to_tokens(d['question']), to_tokens(d['answer']).astype(np.int16)
    n_start, n_goal = (inputs == MAZE_START).sum(1), (inputs == MAZE_GOAL).sum(1)
    bad = (n_start != 1) | (n_goal != 1)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"{where(i)}: the question has {n_start[i]} 'S' and {n_goal[i]} 'G'; a maze has one of each")
    bad = (np.where(labels == MAZE_PATH, MAZE_OPEN, labels) != inputs).any(1)
    if bad.any():  # the generator's label: the input with the path's open cells set to path
        raise ValueError(f"{where(int(np.argmax(bad)))}: the answer is not the question with 'o' on some open "
                         f"(' ') cells; question and answer must be the same maze (fix or drop the row)")
    lengths = ((labels == MAZE_PATH).sum(1) + 1).astype(np.int32)  # steps S -> G along the path
    return inputs, labels, lengths


def prepare_csv(a):
    """The public CSVs (--source=hf or a folder) into the generated set's files: every split read and
    checked before anything is written, so a bad row leaves out_dir as it was."""
    t0 = time.time()
    data = read_splits(a.source, HUB_NAME, ('question', 'answer'), a.subsample, a.n_test, a.seed)
    arrays = {split: csv_tokens(split, d) for split, d in data.items()}
    os.makedirs(a.out_dir, exist_ok=True)
    counts, lengths = {}, {}
    for split, (inputs, labels, lens) in arrays.items():
        for name, arr in (('inputs', inputs), ('labels', labels), ('lengths', lens)):
            save_npy(os.path.join(a.out_dir, f'{split}_{name}.npy'), arr)
        counts[split] = len(inputs)
        lengths[split] = {'min': int(lens.min()), 'median': float(np.median(lens)), 'max': int(lens.max())}
        print(f"{split}: {len(inputs)} of {data[split]['total']} mazes, path length min/median/max "
              f"{lens.min()}/{np.median(lens):g}/{lens.max()}")
    origin = provenance(a, HUB_NAME, data)
    meta = {'vocab_size': 6, 'seq_len': SIZE * SIZE, 'grid': [SIZE, SIZE], 'pad_id': 0, 'ignore_label': -100,
            'augmentation': 'maze', 'tokens': 'PAD 0, wall 1, open 2, start 3, goal 4, path 5',
            'difficulty': {'name': 'public',
                           'rating': "the CSV's rating column is not kept; <split>_lengths.npy: the answer's "
                                     "path cells + 1"},
            **origin,
            'counts': counts, 'path_lengths': lengths, 'prepare_seconds': round(time.time() - t0, 1)}
    save_json(os.path.join(a.out_dir, 'meta.json'), meta, indent=1)
    print(f"wrote {a.out_dir} from {origin['source']} in {time.time() - t0:.1f}s")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--source', default='generated',
                    help=f"generated (this script's generator), hf (the hub's {HUB_NAME}) or a folder holding its "
                         f"train.csv and test.csv")
    ap.add_argument('--difficulty', default='hard', help='|'.join(DIFFICULTIES))
    ap.add_argument('--min_len', type=int, default=None, help="override the difficulty's minimum path length")
    ap.add_argument('--max_len', type=int, default=None, help="override the difficulty's maximum path length")
    ap.add_argument('--loop_prob', type=float, default=0.1)
    ap.add_argument('--n_train', type=int, default=None, help='mazes to generate for train (default 1000)')
    ap.add_argument('--n_test', type=int, default=None,
                    help='mazes to generate for test (default 1000); from a CSV: at most this many (default all)')
    ap.add_argument('--subsample', type=int, default=None, help='from a CSV: this many random train mazes (default all)')
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--out_dir', default=os.path.dirname(os.path.abspath(__file__)))
    a = ap.parse_args(argv)
    error = source_error(a, 'mazes')
    if error:
        sys.exit(error)
    if a.source != 'generated':
        return or_exit(prepare_csv, a)
    a.n_train = 1000 if a.n_train is None else a.n_train
    a.n_test = 1000 if a.n_test is None else a.n_test
    if a.difficulty not in DIFFICULTIES:
        sys.exit(f"error: --difficulty={a.difficulty} is not one of {', '.join(DIFFICULTIES)}")
    if a.n_train < 1 or a.n_test < 1:
        sys.exit("error: --n_train and --n_test must be positive integers")
    if not 0 <= a.loop_prob <= 1:
        sys.exit(f"error: --loop_prob={a.loop_prob} must be a probability in [0, 1]")
    lo, hi = DIFFICULTIES[a.difficulty]
    lo = lo if a.min_len is None else a.min_len
    hi = hi if a.max_len is None else a.max_len
    if lo < 1 or (hi is not None and hi < lo):
        sys.exit(f"error: path length range [{lo}, {hi}] is empty; need 1 <= --min_len <= --max_len")
    os.makedirs(a.out_dir, exist_ok=True)

    t0 = time.time()
    rng = np.random.default_rng(a.seed)
    counts, lengths = {}, {}
    seen = set()
    for split, n in (('train', a.n_train), ('test', a.n_test)):
        rows = []
        with tqdm(total=n, desc=f"{split} ({a.difficulty})") as bar:
            while len(rows) < n:
                x, y, d = make_example(rng, lo, hi, a.loop_prob)
                if x.tobytes() in seen:
                    continue  # no maze twice, so train and test are disjoint
                seen.add(x.tobytes())
                rows.append((x, y, d))
                bar.update(1)
        inputs, labels = np.stack([r[0] for r in rows]), np.stack([r[1] for r in rows])
        lens = np.array([r[2] for r in rows], np.int32)
        save_npy(os.path.join(a.out_dir, f'{split}_inputs.npy'), inputs)
        save_npy(os.path.join(a.out_dir, f'{split}_labels.npy'), labels)
        save_npy(os.path.join(a.out_dir, f'{split}_lengths.npy'), lens)
        counts[split] = n
        lengths[split] = {'min': int(lens.min()), 'median': float(np.median(lens)), 'max': int(lens.max())}
        print(f"{split}: {n} mazes, shortest path min/median/max {lens.min()}/{np.median(lens):g}/{lens.max()}")

    meta = {'vocab_size': 6, 'seq_len': SIZE * SIZE, 'grid': [SIZE, SIZE], 'pad_id': 0, 'ignore_label': -100,
            'augmentation': 'maze', 'tokens': 'PAD 0, wall 1, open 2, start 3, goal 4, path 5',
            'difficulty': {'name': a.difficulty, 'min_len': lo, 'max_len': hi, 'loop_prob': a.loop_prob},
            'source': 'generated', 'seed': a.seed, 'counts': counts, 'path_lengths': lengths,
            'prepare_seconds': round(time.time() - t0, 1)}
    def dump_meta(tmp):
        with open(tmp, 'w') as f:
            json.dump(meta, f, indent=1)
    write_atomic(os.path.join(a.out_dir, 'meta.json'), dump_meta)
    print(f"wrote {a.out_dir} in {time.time() - t0:.1f}s")


if __name__ == '__main__':
    main()
