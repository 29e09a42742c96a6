"""
A prepared Sudoku folder as text for a character-level language model: one line per puzzle, its 81 cells
then a space then its solution's 81 cells ('.' a blank, digits 1-9: puzzles.TOKEN_TEXT), train.bin from
the train split (each puzzle under --n_aug random augmentations, the ones training draws), val.bin from the
test split as it is, meta.pkl (nanoGPT's char-level format). A language model trained on it is a frozen
model a Sudoku run can condition its y/z inits on (yz_init_from='ckpt:...', config/ablate/condition.py).

    python data/sudoku/text.py --puzzles=data/sudoku_easy36 --out_dir=data/sudoku_easy36_text
"""
import argparse
import os
import pickle
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from common import write_atomic  # noqa: E402
from puzzles import TOKEN_TEXT, augment, load_split  # noqa: E402

CHARS = '\n .123456789'
STOI = {c: i for i, c in enumerate(CHARS)}


def lines(inputs, labels):
    """The text of puzzles (input tokens [N, 81]) and their solutions (labels: IGNORE on givens)."""
    text = np.array(list(TOKEN_TEXT['sudoku']))
    solution = np.where(labels >= 0, labels, inputs)  # givens carry no label: the input holds them
    return [''.join(text[x]) + ' ' + ''.join(text[y]) + '\n' for x, y in zip(inputs, solution)]


def encode(rows):
    return np.array([STOI[c] for c in ''.join(rows)], dtype=np.uint16)


def main():
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument('--puzzles', required=True, help='a Sudoku folder written by data/sudoku/prepare.py')
    p.add_argument('--out_dir', required=True)
    p.add_argument('--n_aug', type=int, default=4, help='augmented copies of each training puzzle (>= 1)')
    p.add_argument('--seed', type=int, default=0)
    a = p.parse_args()
    try:
        train, test = load_split(a.puzzles, 'train'), load_split(a.puzzles, 'test')
    except (OSError, ValueError) as e:
        sys.exit(f"error: cannot read puzzles from {a.puzzles} ({e}); prepare them with data/sudoku/prepare.py")
    if train['meta']['augmentation'] != 'sudoku' or a.n_aug < 1:
        sys.exit(f"error: {a.puzzles} holds {train['meta']['augmentation']} puzzles (need Sudoku), n_aug={a.n_aug} (need >= 1)")
    rng = np.random.default_rng(a.seed)
    rows = []
    for _ in range(a.n_aug):
        x, y, _ = augment('sudoku', train['inputs'], train['labels'], rng)
        rows += lines(x, y)
    rows = [rows[i] for i in rng.permutation(len(rows))]
    os.makedirs(a.out_dir, exist_ok=True)
    write_atomic(os.path.join(a.out_dir, 'train.bin'), encode(rows).tofile)
    write_atomic(os.path.join(a.out_dir, 'val.bin'), encode(lines(test['inputs'], test['labels'])).tofile)

    def dump_meta(tmp):
        with open(tmp, 'wb') as f:
            pickle.dump({'vocab_size': len(CHARS), 'stoi': STOI, 'itos': dict(enumerate(CHARS))}, f)
    write_atomic(os.path.join(a.out_dir, 'meta.pkl'), dump_meta)
    print(f"wrote {a.out_dir}: {len(rows):,} training lines ({a.n_aug} augmentations of {len(train['inputs']):,} "
          f"puzzles), {len(test['inputs']):,} val lines, {len(CHARS)} characters")


if __name__ == '__main__':
    main()
