"""
Generate Sudoku puzzles with a unique solution and a difficulty knob, in the token format of TRM; or read
the public Sudoku-Extreme the TRM paper trains on (1000 of its train puzzles) and tests on.

    python data/sudoku/prepare.py                                   # hard: 1000 train, 2000 test
    python data/sudoku/prepare.py --difficulty=easy --out_dir=data/sudoku_easy
    python data/sudoku/prepare.py --n_train=100 --n_test=100 --num_proc=2 --seed=1
    python data/sudoku/prepare.py --source=hf --subsample=1000 --out_dir=data/sudoku_extreme   # the paper's
    python data/sudoku/prepare.py --source=path/to/folder --subsample=1000 --out_dir=data/sudoku_extreme

The solver is bitmask constraint propagation (naked + hidden singles) plus depth-first search
on the cell with the fewest candidates (MRV). It counts solutions up to a limit (2 proves
uniqueness) and counts its guesses (candidate values tried at branch points) and backtracks
(tries that failed): the difficulty rating used to filter puzzles.

Difficulty (rating = guesses of a full count-to-2 search, which also proves uniqueness):
    easy     clues removed only while naked+hidden singles alone still solve it: 0 guesses
    medium   clues removed until minimal (no clue can go without losing uniqueness), 1..7 guesses
    hard     minimal, >= 8 guesses (rejection sampling: ~20% of minimal puzzles)
    extreme  minimal, >= 20 guesses (~4% of minimal puzzles: slow, ~0.6 s of CPU per puzzle)
Every puzzle of a split has exactly one solution and its rating within the bounds (checked).
About a third of random minimal puzzles need no guess, so 'minimal' alone is not 'hard'.

--source=hf reads the hub dataset sapientinc/sudoku-extreme, --source=FOLDER a folder holding its
train.csv and test.csv (offline): columns source, question, answer, rating; question and answer are 81
characters row by row, '.' for a blank, digits 1-9. Every row is checked (lengths, characters, clues
kept by the answer, the answer a solved grid); the first bad one is a one-line error and nothing is
written. --subsample=N keeps N random train rows (seeded by --seed; all by default), --n_test caps test.

Tokens (as TRM): PAD 0, blank 1, digit d -> d + 1 (2..10); 81 cells row-major.
Writes <split>_inputs.npy [N, 81] uint8, <split>_labels.npy [N, 81] int16 (the solution's tokens,
every cell carries loss), <split>_ratings.npy [N, 2] int32 (guesses, backtracks; from a CSV: its
rating column, and -1: not measured) and meta.json.
"""
import argparse
import json
import os
import random
import sys
import time
from multiprocessing import Pool

import numpy as np
from tqdm import tqdm

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # data/: puzzle_csv
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from common import or_exit, save_json, save_npy, write_atomic  # noqa: E402
from puzzle_csv import provenance, read_splits, source_error  # noqa: E402
from puzzles import sudoku_valid  # noqa: E402

HUB_NAME = 'sapientinc/sudoku-extreme'

ALL = 0x1FF  # candidate digits 1..9 as bits 0..8
ROWS = [[r * 9 + c for c in range(9)] for r in range(9)]
COLS = [[r * 9 + c for r in range(9)] for c in range(9)]
BOXES = [[(br + r) * 9 + bc + c for r in range(3) for c in range(3)] for br in (0, 3, 6) for bc in (0, 3, 6)]
UNITS = tuple(tuple(u) for u in ROWS + COLS + BOXES)
PEERS = tuple(tuple(sorted({p for u in UNITS if i in u for p in u} - {i})) for i in range(81))
POPCOUNT = [bin(m).count('1') for m in range(ALL + 1)]
BIT_DIGIT = {1 << d: d + 1 for d in range(9)}

# difficulty name -> (dig to minimal?, min guesses, max guesses or None)
DIFFICULTIES = {
    'easy': (False, 0, 0),
    'medium': (True, 1, 7),
    'hard': (True, 8, None),
    'extreme': (True, 20, None),
}


class Stats:
    __slots__ = ('guesses', 'backtracks', 'limit_hit')

    def __init__(self):
        self.guesses = self.backtracks = 0
        self.limit_hit = False


def propagate(cand, queue):
    """Naked and hidden singles to a fixpoint. cand: 81 candidate masks (edited in place);
    queue: cells just fixed to one value whose value must be removed from their peers.
    Returns False on a contradiction. (Hot loop: locals only, ~all of the generator's time.)"""
    peers, units = PEERS, UNITS
    while True:
        while queue:  # naked singles: a fixed cell's value leaves all its peers
            i = queue.pop()
            m = cand[i]
            for p in peers[i]:
                pm = cand[p]
                if pm & m:
                    pm &= ~m
                    if not pm:
                        return False
                    cand[p] = pm
                    if not pm & (pm - 1):
                        queue.append(p)
        for u in units:  # hidden singles: a digit with one possible place in a unit goes there
            once = twice = 0
            for i in u:
                m = cand[i]
                twice |= once & m
                once |= m
            if once != 511:
                return False  # some digit has no place left in this unit
            hidden = once & ~twice
            if hidden:
                for i in u:
                    b = cand[i] & hidden
                    if b and cand[i] != b:
                        if b & (b - 1):
                            return False  # two digits that each must go to this one cell
                        cand[i] = b
                        queue.append(i)
        if not queue:
            return True


def _search(cand, limit, sols, stats, rng, max_guesses):
    best, best_n = -1, 10
    for i in range(81):  # MRV: branch on the open cell with fewest candidates
        n = POPCOUNT[cand[i]]
        if 1 < n < best_n:
            best, best_n = i, n
            if n == 2:
                break
    if best < 0:
        sols.append(cand)
        return
    m = cand[best]
    bits = [1 << d for d in range(9) if m >> d & 1]
    if rng is not None:
        rng.shuffle(bits)
    for b in bits:
        if max_guesses is not None and stats.guesses >= max_guesses:
            stats.limit_hit = True
            return
        stats.guesses += 1
        child = cand[:]
        child[best] = b
        if propagate(child, [best]):
            before = len(sols)
            _search(child, limit, sols, stats, rng, max_guesses)
            if len(sols) == before:
                stats.backtracks += 1
        else:
            stats.backtracks += 1
        if len(sols) >= limit:
            return


def solve(grid, limit=2, rng=None, max_guesses=None):
    """grid: 81 ints, 0 = blank, 1..9 = given. Returns (solutions as lists of 81 digits, at most
    `limit` of them; Stats). rng (random.Random) shuffles the order values are tried in;
    max_guesses stops the search early (stats.limit_hit)."""
    if len(grid) != 81 or any(not 0 <= v <= 9 for v in grid):
        raise ValueError("a sudoku grid is 81 integers in 0..9 (0 = blank)")
    cand, queue = [ALL] * 81, []
    for i, v in enumerate(grid):
        if v:
            cand[i] = 1 << (v - 1)
            queue.append(i)
    stats, sols = Stats(), []
    if propagate(cand, queue):
        _search(cand, limit, sols, stats, rng, max_guesses)
    return [[BIT_DIGIT[m] for m in s] for s in sols], stats


def rate(grid):
    """(number of solutions up to 2, guesses, backtracks) of a full count-to-2 search."""
    sols, st = solve(grid, limit=2)
    return len(sols), st.guesses, st.backtracks


def random_solution(rng):
    return solve([0] * 81, limit=1, rng=rng)[0][0]


def _unique_without(grid, i, v):
    """Is the puzzle `grid` (cell i now blank, its solution value v) still uniquely solvable?
    True iff no solution puts another value at i: one search with v excluded, not a count to 2."""
    cand, queue = [ALL] * 81, []
    for j, w in enumerate(grid):
        if w:
            cand[j] = 1 << (w - 1)
            queue.append(j)
    cand[i] = ALL & ~(1 << (v - 1))
    if not cand[i] & (cand[i] - 1):
        queue.append(i)
    sols = []
    if propagate(cand, queue):
        _search(cand, 1, sols, Stats(), None, None)
    return not sols


def dig(solution, rng, singles_only, min_clues=0):
    """Remove clues in random order while the solution stays unique (and, if singles_only, while
    the puzzle needs no guess), trying only 81 - min_clues cells (so at least min_clues clues stay).
    Returns the puzzle (81 ints, 0 = blank).
    Same result as trying the cells one by one, but a run of cells is tried at once while that
    works (a puzzle with more clues than an accepted one is accepted too): the first ~40 removals
    cost a handful of solver calls instead of ~40."""
    grid = list(solution)
    order = list(range(81))
    rng.shuffle(order)
    order = order[:81 - min_clues]
    k, run = 0, 32
    while k < len(order):
        cells = order[k:k + run]
        for i in cells:
            grid[i] = 0
        if singles_only:
            sols, st = solve(grid, limit=2, max_guesses=1)
            ok = st.guesses == 0 and len(sols) == 1
        elif len(cells) == 1:
            ok = _unique_without(grid, cells[0], solution[cells[0]])
        else:
            ok = len(solve(grid, limit=2)[0]) == 1
        if ok or run == 1:
            if not ok:
                grid[cells[0]] = solution[cells[0]]
            k += len(cells)
        else:  # put the run back and retry its start with a shorter run
            for i in cells:
                grid[i] = solution[i]
            run //= 2
    return grid


def make_puzzle(args):
    """One puzzle of the given difficulty: (puzzle, solution, guesses, backtracks, attempts)."""
    seed, difficulty, min_clues = args if len(args) == 3 else (*args, 0)
    minimal, lo, hi = DIFFICULTIES[difficulty]
    rng = random.Random(seed)
    attempts = 0
    while True:  # rejection sampling on the rating
        attempts += 1
        solution = random_solution(rng)
        puzzle = dig(solution, rng, singles_only=not minimal, min_clues=min_clues)
        n, g, b = rate(puzzle)
        if n != 1:
            raise RuntimeError("bug: digging lost uniqueness")
        if g >= lo and (hi is None or g <= hi):
            return puzzle, solution, g, b, attempts


def to_tokens(grid):
    return np.asarray(grid, dtype=np.uint8) + 1  # blank 0 -> 1, digit d -> d + 1


def csv_tokens(split, d):
    """(inputs, labels, ratings) of the public CSV rows d (from read_splits), tokenised as the generated
    puzzles. ValueError naming the first bad row (its line in the file) and what is wrong with it."""
    def where(i):
        return f"{split}.csv line {d['rows'][i] + 2}"  # 1-based, after the header

    for i, (q, s, r) in enumerate(zip(d['question'], d['answer'], d['rating'])):
        if len(q) != 81 or len(s) != 81:
            raise ValueError(f"{where(i)}: question and answer have {len(q)} and {len(s)} characters; a Sudoku "
                             f"is 81, row by row ('.' for a blank in the question)")
        bad = (set(q) - set('.123456789')) | (set(s) - set('123456789'))
        if bad:
            raise ValueError(f"{where(i)}: characters {', '.join(map(repr, sorted(bad)))}; a question holds "
                             f"'.' (blank) and digits 1-9, an answer digits 1-9 only")
        if not r.strip().lstrip('-').isdigit():
            raise ValueError(f"{where(i)}: rating {r!r} is not an integer")

    def digits(strs):  # every string is now 81 ASCII characters: one buffer, '.' as 0 (a blank)
        return np.frombuffer(''.join(strs).replace('.', '0').encode(), np.uint8).reshape(-1, 81) - ord('0')

    inputs, labels = to_tokens(digits(d['question'])), to_tokens(digits(d['answer'])).astype(np.int16)
    clash = (inputs > 1) & (inputs != labels)
    if clash.any():
        i, cell = map(int, np.argwhere(clash)[0])
        raise ValueError(f"{where(i)}: the clue at row {cell // 9 + 1}, column {cell % 9 + 1} is "
                         f"{inputs[i, cell] - 1} but the answer has {labels[i, cell] - 1} there; question and answer "
                         f"must be the same puzzle (fix or drop the row)")
    broken = ~sudoku_valid(inputs, labels)
    if broken.any():
        raise ValueError(f"{where(int(np.argmax(broken)))}: the answer is not a solved Sudoku (a digit twice in a "
                         f"row, column or box); fix or drop the row")
    ratings = np.stack([np.array([int(r) for r in d['rating']], np.int32), np.full(len(inputs), -1, np.int32)], 1)
    return inputs, labels, ratings


def prepare_csv(a):
    """The public CSVs (--source=hf or a folder) into the generated set's files: every split read and
    checked before anything is written, so a bad row leaves out_dir as it was."""
    t0 = time.time()
    data = read_splits(a.source, HUB_NAME, ('question', 'answer', 'rating'), a.subsample, a.n_test, a.seed)
    arrays = {split: csv_tokens(split, d) for split, d in data.items()}
    os.makedirs(a.out_dir, exist_ok=True)
    counts, ratings = {}, {}
    for split, (inputs, labels, rt) in arrays.items():
        for name, arr in (('inputs', inputs), ('labels', labels), ('ratings', rt)):
            save_npy(os.path.join(a.out_dir, f'{split}_{name}.npy'), arr)
        r, clues = rt[:, 0], (inputs > 1).sum(1)
        counts[split] = len(inputs)
        ratings[split] = {'rating_min': int(r.min()), 'rating_median': float(np.median(r)),
                          'rating_mean': float(r.mean()), 'rating_max': int(r.max()),
                          'clues_mean': float(clues.mean()), 'clues_min': int(clues.min()),
                          'clues_max': int(clues.max())}
        print(f"{split}: {len(inputs)} of {data[split]['total']} puzzles, rating min/median/max "
              f"{r.min()}/{np.median(r):g}/{r.max()}, clues {clues.min()}..{clues.max()} (mean {clues.mean():.1f})")
    origin = provenance(a, HUB_NAME, data)
    meta = {'vocab_size': 11, 'seq_len': 81, 'grid': [9, 9], 'pad_id': 0, 'blank_id': 1,
            'ignore_label': -100, 'augmentation': 'sudoku',
            'tokens': 'PAD 0, blank 1, digit d -> d + 1',
            'difficulty': {'name': 'public',
                           'rating': "<split>_ratings.npy column 0: the CSV's rating column (the source's own "
                                     "difficulty rating); column 1: -1 (not measured)"},
            **origin,
            'counts': counts, 'ratings': ratings, 'prepare_seconds': round(time.time() - t0, 1)}
    save_json(os.path.join(a.out_dir, 'meta.json'), meta, indent=1)
    print(f"wrote {a.out_dir} from {origin['source']} in {time.time() - t0:.1f}s")


def generate(n, difficulty, seed, num_proc, desc, min_clues=0):
    jobs = [(seed * 1_000_003 + k, difficulty, min_clues) for k in range(n)]
    with Pool(num_proc) as pool:
        return list(tqdm(pool.imap(make_puzzle, jobs, chunksize=4), total=n, desc=desc))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--source', default='generated',
                    help=f"generated (this script's solver), hf (the hub's {HUB_NAME}) or a folder holding its "
                         f"train.csv and test.csv")
    ap.add_argument('--difficulty', default='hard', help='|'.join(DIFFICULTIES))
    ap.add_argument('--n_train', type=int, default=None, help='puzzles to generate for train (default 1000)')
    ap.add_argument('--n_test', type=int, default=None,
                    help='puzzles to generate for test (default 2000); from a CSV: at most this many (default all)')
    ap.add_argument('--subsample', type=int, default=None,
                    help='from a CSV: this many random train puzzles (default all; the paper: 1000)')
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--min_clues', type=int, default=0,
                    help='keep at least this many clues (easier puzzles: fewer blanks; 0 = dig as far as the difficulty allows)')
    ap.add_argument('--num_proc', type=int, default=os.cpu_count() or 1)
    ap.add_argument('--out_dir', default=os.path.dirname(os.path.abspath(__file__)))
    a = ap.parse_args(argv)
    error = source_error(a, 'puzzles')
    if error:
        sys.exit(error)
    if a.source != 'generated':
        return or_exit(prepare_csv, a)
    a.n_train = 1000 if a.n_train is None else a.n_train
    a.n_test = 2000 if a.n_test is None else a.n_test
    if a.difficulty not in DIFFICULTIES:
        sys.exit(f"error: --difficulty={a.difficulty} is not one of {', '.join(DIFFICULTIES)}")
    if not 0 <= a.min_clues <= 81:
        sys.exit(f"error: --min_clues={a.min_clues} must be between 0 and 81")
    if a.n_train < 1 or a.n_test < 1 or a.num_proc < 1:
        sys.exit("error: --n_train, --n_test and --num_proc must be positive integers")
    os.makedirs(a.out_dir, exist_ok=True)

    t0 = time.time()
    counts, ratings = {}, {}
    # train and test from disjoint seed streams, and no puzzle in both
    splits = [('train', a.n_train, 2 * a.seed), ('test', a.n_test, 2 * a.seed + 1)]
    seen = set()
    for split, n, seed in splits:
        rows = generate(n, a.difficulty, seed, a.num_proc, f"{split} ({a.difficulty})", a.min_clues)
        rows = [r for r in rows if tuple(r[0]) not in seen]  # a duplicate is astronomically rare
        seen.update(tuple(r[0]) for r in rows)
        inputs = np.stack([to_tokens(r[0]) for r in rows])
        labels = np.stack([to_tokens(r[1]) for r in rows]).astype(np.int16)
        rt = np.array([[r[2], r[3]] for r in rows], dtype=np.int32)
        save_npy(os.path.join(a.out_dir, f'{split}_inputs.npy'), inputs)
        save_npy(os.path.join(a.out_dir, f'{split}_labels.npy'), labels)
        save_npy(os.path.join(a.out_dir, f'{split}_ratings.npy'), rt)
        g = rt[:, 0]
        clues = (inputs > 1).sum(1)
        counts[split] = len(rows)
        ratings[split] = {'guesses_min': int(g.min()), 'guesses_median': float(np.median(g)),
                          'guesses_mean': float(g.mean()), 'guesses_max': int(g.max()),
                          'clues_mean': float(clues.mean()), 'clues_min': int(clues.min()),
                          'clues_max': int(clues.max()),
                          'attempts_per_puzzle': float(np.mean([r[4] for r in rows]))}
        print(f"{split}: {len(rows)} puzzles, guesses min/median/max {g.min()}/{np.median(g):g}/{g.max()}, "
              f"clues {clues.min()}..{clues.max()} (mean {clues.mean():.1f})")

    minimal, lo, hi = DIFFICULTIES[a.difficulty]
    meta = {'vocab_size': 11, 'seq_len': 81, 'grid': [9, 9], 'pad_id': 0, 'blank_id': 1,
            'ignore_label': -100, 'augmentation': 'sudoku',
            'tokens': 'PAD 0, blank 1, digit d -> d + 1',
            'difficulty': {'name': a.difficulty, 'minimal': minimal, 'min_guesses': lo, 'max_guesses': hi,
                           'min_clues': a.min_clues,
                           'rating': 'guesses of a full count-to-2 MRV search after naked+hidden singles'},
            'source': 'generated', 'seed': a.seed, 'counts': counts, 'ratings': ratings,
            'prepare_seconds': round(time.time() - t0, 1)}
    def dump_meta(tmp):
        with open(tmp, 'w') as f:
            json.dump(meta, f, indent=1)
    write_atomic(os.path.join(a.out_dir, 'meta.json'), dump_meta)
    print(f"wrote {a.out_dir} in {time.time() - t0:.1f}s")


if __name__ == '__main__':
    main()
