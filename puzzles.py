"""
Puzzle data for nanoTRM: loading, batches with on-the-fly augmentation (and its exact inverse),
rule checkers and metrics for Sudoku, mazes and ARC. Data comes from data/<name>/prepare.py:

    <split>_inputs.npy  [N, L] uint8     input tokens
    <split>_labels.npy  [N, L] int16     target tokens, IGNORE (-100) where a cell carries no loss
    <split>_puzzle_ids.npy [N] int32     ARC only: the task of each row (index into meta['puzzle_names'])
    meta.json                            vocab_size, seq_len, grid, pad_id, ignore_label, augmentation, ...

Typical use by a trainer:

    data = load_split('data/sudoku', 'train')
    b = batch_arrays(data, rng.integers(0, len(data['inputs']), 32), rng, augment=True)
    x, y = torch.from_numpy(b['inputs']), torch.from_numpy(b['labels'])       # int64 [B, L]
    back = invert(data['meta']['augmentation'], preds, b['aug'])              # predictions, original frame

Augmentations (each keeps a puzzle valid and has an exact inverse):
    sudoku  digit permutation, transpose, band/stack permutation, row/column permutation within them
    maze    the 8 dihedral transforms of the 30x30 grid
    arc     augmentation id k in [0, n_aug): dihedral transform k % 8 and colour permutation ARC_PERMS[k // 8]
            (black fixed; k = 0 is the identity). Grids are cropped, transformed and re-drawn at the
            top-left of the canvas with their EOS edge, so the canvas layout stays canonical.
            A task seen under augmentation k is a different task to the model: give it its own
            puzzle embedding, index puzzle_id * n_aug + aug_id (table size meta['num_puzzle_ids'] * n_aug).
"""
import json
import os
from collections import deque

import numpy as np
import torch
import torch.nn.functional as F

from lm import cross_entropy
from model import halted

IGNORE = -100
# maze tokens
MAZE_PAD, MAZE_WALL, MAZE_OPEN, MAZE_START, MAZE_GOAL, MAZE_PATH = 0, 1, 2, 3, 4, 5
# ARC tokens: PAD 0, EOS 1 (right and bottom edge of a grid), colour c -> c + 2
ARC_PAD, ARC_EOS, ARC_SIZE = 0, 1, 30
ARC_N_AUG = 8 * 64  # default number of ARC augmentations (dihedral x colour permutation)
_perm_rng = np.random.default_rng(20251008)
ARC_PERMS = np.stack([np.arange(10)] + [np.concatenate([[0], 1 + _perm_rng.permutation(9)]) for _ in range(1023)])
# the text form of each token id, one character per id (puzzle_io prints grids with it; a frozen LM reads it under
# yz_init_from): Sudoku blank '.', digits; maze wall '#', open '.', start 'S', goal 'G', path '*'; ARC PAD '.',
# EOS '|', colours as digits. PAD, never in an input, reads as '.'
TOKEN_TEXT = {'sudoku': '..123456789', 'maze': '.#.SG*', 'arc': '.|0123456789'}
DIHEDRAL_INV = [0, 3, 2, 1, 4, 5, 6, 7]  # rotations undo by the opposite rotation; reflections undo themselves


# ----------------------------------------------------------------------------- loading and batches

def load_split(data_dir, split):
    """dict with 'inputs', 'labels' (and 'puzzle_ids' for ARC) as numpy arrays, plus 'meta'."""
    meta_path = os.path.join(data_dir, 'meta.json')
    if not os.path.exists(meta_path):
        name = os.path.basename(os.path.normpath(data_dir))
        raise ValueError(f"no puzzle data in {data_dir} (meta.json missing): run "
                         f"`python data/{name}/prepare.py` first (sudoku, maze or arc)")
    with open(meta_path) as f:
        meta = json.load(f)
    out = {'meta': meta}
    for key in ('inputs', 'labels', 'puzzle_ids'):
        path = os.path.join(data_dir, f'{split}_{key}.npy')
        if os.path.exists(path):
            out[key] = np.load(path)
        elif key != 'puzzle_ids':
            raise ValueError(f"{path} is missing: split '{split}' not prepared (splits: {list(meta['counts'])})")
    if out['inputs'].shape != out['labels'].shape or out['inputs'].shape[1] != meta['seq_len']:
        raise ValueError(f"{data_dir}: inputs {out['inputs'].shape} and labels {out['labels'].shape} "
                         f"disagree with seq_len {meta['seq_len']}; re-run the prepare script")
    return out


def batch_arrays(data, ix, rng, augment=True, n_aug=ARC_N_AUG, aug_ids=None):
    """Rows ix of data (from load_split), augmented per row if augment. Returns a dict of numpy arrays:
    inputs, labels (int64 [B, L]), aug (the parameters invert() needs), ix, and for ARC puzzle_ids,
    aug_ids and emb_ids = puzzle_ids * n_aug + aug_ids (the puzzle-embedding row; table size
    meta['num_puzzle_ids'] * n_aug). ARC: aug_ids given = use those augmentations (for voting,
    ix = np.repeat(rows, K) and aug_ids = np.tile(arc_vote_ids(K, n_aug), len(rows)))."""
    ix = np.asarray(ix)
    kind = data['meta']['augmentation']
    inputs, labels = data['inputs'][ix], data['labels'][ix]
    if aug_ids is not None:
        if kind != 'arc' or len(aug_ids) != len(ix) or np.max(aug_ids) >= n_aug:
            raise ValueError(f"aug_ids: ARC only, one per row, each below n_aug={n_aug}")
        aug_ids = np.asarray(aug_ids, np.int64)
        inputs, labels = arc_apply(inputs, aug_ids, labels=False), arc_apply(labels, aug_ids, labels=True)
        aug = {'aug_id': aug_ids, 'dihedral': aug_ids % 8}
    elif augment:
        inputs, labels, aug = _augment(kind, inputs, labels, rng, n_aug)
    else:
        aug = identity_params(kind, len(ix))
    out = {'inputs': inputs.astype(np.int64), 'labels': labels.astype(np.int64), 'aug': aug, 'ix': ix}
    if 'puzzle_ids' in data:
        out['puzzle_ids'] = data['puzzle_ids'][ix].astype(np.int64)
        out['aug_ids'] = aug['aug_id'].astype(np.int64)
        out['emb_ids'] = out['puzzle_ids'] * n_aug + out['aug_ids']
    return out


def augment(kind, inputs, labels, rng, n_aug=ARC_N_AUG):
    """Augment each row independently: returns (inputs, labels, aug_params)."""
    return _augment(kind, inputs, labels, rng, n_aug)


def _augment(kind, inputs, labels, rng, n_aug):  # (batch_arrays' `augment` flag hides the public name)
    if kind == 'arc':
        return augment_arc(inputs, labels, rng, n_aug)
    if kind == 'sudoku':
        p = sudoku_params(rng, len(inputs))
        return sudoku_apply(inputs, p), sudoku_apply(labels, p), p
    if kind == 'maze':
        p = {'dihedral': rng.integers(0, 8, len(inputs))}
        return grid_dihedral(inputs, p['dihedral']), grid_dihedral(labels, p['dihedral']), p
    raise ValueError(f"unknown augmentation kind '{kind}': expected sudoku, maze or arc")


def invert(kind, tokens, aug):
    """Undo augment() on any token rows [B, L] (predictions, inputs or labels)."""
    if kind == 'sudoku':
        return sudoku_invert(tokens, aug)
    if kind == 'maze':
        return grid_dihedral(tokens, np.array([DIHEDRAL_INV[k] for k in aug['dihedral']]))
    if kind == 'arc':
        return arc_apply(tokens, aug['aug_id'], inverse=True)
    raise ValueError(f"unknown augmentation kind '{kind}': expected sudoku, maze or arc")


def identity_params(kind, n):
    if kind == 'sudoku':
        eye = np.tile(np.arange(9), (n, 1))
        return {'digits': eye.copy(), 'transpose': np.zeros(n, bool), 'rows': eye.copy(), 'cols': eye.copy()}
    if kind in ('maze', 'arc'):
        return {'dihedral': np.zeros(n, np.int64), 'aug_id': np.zeros(n, np.int64)}
    raise ValueError(f"unknown augmentation kind '{kind}': expected sudoku, maze or arc")


def map_tokens(tokens, lut):
    """Per-row lookup lut[B, V] of tokens [B, L]; negative values (IGNORE) pass through."""
    safe = np.where(tokens < 0, 0, tokens)
    return np.where(tokens < 0, tokens, np.take_along_axis(lut, safe.astype(np.int64), axis=1)).astype(tokens.dtype)


def dihedral(grid, k):
    """One of the 8 symmetries of the square on the last two axes: k < 4 rotates by 90*k degrees,
    k >= 4 transposes first (then rotates by 90*(k-4))."""
    if k >= 4:
        grid = np.swapaxes(grid, -1, -2)
    return np.rot90(grid, k % 4, axes=(-2, -1))


def grid_dihedral(tokens, ks):
    """Row-wise dihedral transform of square grids stored flat: tokens [B, S*S], ks [B]."""
    b, length = tokens.shape
    s = int(round(length ** 0.5))
    g = tokens.reshape(b, s, s)
    out = np.empty_like(g)
    for k in range(8):
        sel = ks == k
        if sel.any():
            out[sel] = dihedral(g[sel], k)
    return out.reshape(b, length)


# ----------------------------------------------------------------------------- sudoku

def sudoku_params(rng, n):
    def perms(*shape):  # random permutations along the last axis (argsort of uniform noise)
        return np.argsort(rng.random(shape), axis=-1)

    def block_perm():  # permute the 3 bands (stacks), then the 3 lines inside each
        return (perms(n, 3)[:, :, None] * 3 + perms(n, 3, 3)).reshape(n, 9)
    return {'digits': perms(n, 9), 'transpose': rng.random(n) < 0.5, 'rows': block_perm(), 'cols': block_perm()}


def _digit_lut(perm):
    lut = np.tile(np.arange(11), (len(perm), 1))
    lut[:, 2:] = perm + 2  # PAD 0 and blank 1 fixed; digit token 2 + d -> 2 + perm[d]
    return lut


def sudoku_apply(tokens, p):
    """new[i, j] = digit_perm(old'[rows[i], cols[j]]), old' = old transposed where p['transpose']."""
    b = len(tokens)
    g = tokens.reshape(b, 9, 9)
    g = np.where(p['transpose'][:, None, None], np.swapaxes(g, 1, 2), g)
    g = g[np.arange(b)[:, None, None], p['rows'][:, :, None], p['cols'][:, None, :]]
    return map_tokens(g.reshape(b, 81), _digit_lut(p['digits']))


def sudoku_invert(tokens, p):
    b = len(tokens)
    g = map_tokens(tokens, _digit_lut(np.argsort(p['digits'], axis=1))).reshape(b, 9, 9)
    out = np.empty_like(g)
    out[np.arange(b)[:, None, None], p['rows'][:, :, None], p['cols'][:, None, :]] = g
    out = np.where(p['transpose'][:, None, None], np.swapaxes(out, 1, 2), out)
    return out.reshape(b, 81)


def sudoku_valid(puzzle, answer):
    """Does answer obey the rules (each digit once per row, column and box) and keep the puzzle's
    givens? Tokens as prepared (blank 1, digit d -> d + 1); checks rules, not a stored solution.
    1-D inputs give a bool, [B, 81] inputs a bool array."""
    puzzle, answer = np.asarray(puzzle), np.asarray(answer)
    single = answer.ndim == 1
    puzzle, answer = puzzle.reshape(-1, 81), answer.reshape(-1, 81)
    g = answer.reshape(-1, 9, 9)
    boxes = g.reshape(-1, 3, 3, 3, 3).transpose(0, 1, 3, 2, 4).reshape(-1, 9, 9)
    want = np.arange(2, 11)
    ok = np.ones(len(g), bool)
    for units in (g, np.swapaxes(g, 1, 2), boxes):
        ok &= (np.sort(units, axis=-1) == want).all(axis=(1, 2))
    givens = puzzle >= 2
    ok &= ((answer == puzzle) | ~givens).all(axis=1)
    return bool(ok[0]) if single else ok


# ----------------------------------------------------------------------------- maze

def maze_distances(open_mask, src):
    """BFS step counts from src=(r, c) over True cells of open_mask [H, W]; -1 where unreachable."""
    h, w = open_mask.shape
    dist = np.full((h, w), -1, np.int32)
    dist[src] = 0
    q = deque([src])
    while q:
        r, c = q.popleft()
        d = dist[r, c] + 1
        for rr, cc in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)):
            if 0 <= rr < h and 0 <= cc < w and open_mask[rr, cc] and dist[rr, cc] < 0:
                dist[rr, cc] = d
                q.append((rr, cc))
    return dist


def maze_path_ok(inp, pred):
    """Is pred's set of PATH cells (plus S and G) exactly one shortest S->G path through open cells?"""
    s = int(round(len(inp) ** 0.5))
    inp, pred = inp.reshape(s, s), pred.reshape(s, s)
    start, goal = tuple(np.argwhere(inp == MAZE_START)[0]), tuple(np.argwhere(inp == MAZE_GOAL)[0])
    shortest = maze_distances(inp != MAZE_WALL, start)[goal]
    path = pred == MAZE_PATH
    if shortest < 0 or (path & (inp != MAZE_OPEN)).any() or path.sum() != shortest - 1:
        return False
    on = path.copy()
    on[start] = on[goal] = True
    # within the predicted cells G must be reached from S in `shortest` steps: with exactly
    # shortest - 1 path cells, that makes them one connected shortest path with no stray cells
    return maze_distances(on, start)[goal] == shortest


def maze_metrics(inputs, preds, labels):
    """(exact, valid_shortest) fractions over rows: exact = every labelled cell right;
    valid_shortest = the predicted path is a shortest S->G path (any of them, not only the label's)."""
    inputs, preds, labels = (np.asarray(a).reshape(len(inputs), -1) for a in (inputs, preds, labels))
    exact = ((preds == labels) | (labels == IGNORE)).all(axis=1)
    valid = np.array([maze_path_ok(i, p) for i, p in zip(inputs, preds)])
    return float(exact.mean()), float(valid.mean())


# ----------------------------------------------------------------------------- ARC

def arc_encode(grid, labels=False):
    """A colour grid (h, w <= 30) as 900 canvas tokens: colours at the top-left, EOS along its right
    and bottom edge, PAD (IGNORE for labels) elsewhere."""
    grid = np.asarray(grid)
    h, w = grid.shape
    if not (1 <= h <= ARC_SIZE and 1 <= w <= ARC_SIZE) or grid.min() < 0 or grid.max() > 9:
        raise ValueError(f"an ARC grid is 1..30 x 1..30 colours 0..9, got shape {grid.shape}")
    canvas = np.full((ARC_SIZE, ARC_SIZE), IGNORE if labels else ARC_PAD, np.int16)
    canvas[:h, :w] = grid + 2
    if h < ARC_SIZE:
        canvas[h, :min(w + 1, ARC_SIZE)] = ARC_EOS
    if w < ARC_SIZE:
        canvas[:min(h + 1, ARC_SIZE), w] = ARC_EOS
    return canvas.reshape(-1)


def arc_decode(tokens):
    """The colour grid drawn at the top-left of a canvas (crop at EOS), or None if the canvas
    holds no well-formed grid (a prediction can be anything)."""
    c = np.asarray(tokens).reshape(ARC_SIZE, ARC_SIZE)
    colour = c >= 2
    w = int(np.argmin(colour[0])) if not colour[0].all() else ARC_SIZE
    h = int(np.argmin(colour[:, 0])) if not colour[:, 0].all() else ARC_SIZE
    if h == 0 or w == 0 or not colour[:h, :w].all():
        return None
    return (c[:h, :w] - 2).astype(np.int64)


def arc_transform(grid, aug_id, inverse=False):
    """Augmentation aug_id of one colour grid (or its inverse)."""
    k, perm = aug_id % 8, ARC_PERMS[aug_id // 8]
    if inverse:
        return dihedral(np.argsort(perm)[grid], DIHEDRAL_INV[k])
    return perm[dihedral(grid, k)]


def arc_apply(tokens, aug_ids, inverse=False, labels=None):
    """Row-wise augmentation of canvases [B, 900]. Rows without a well-formed grid are returned as
    they are (only model predictions can be malformed)."""
    out = np.array(tokens, copy=True)
    for r, k in enumerate(aug_ids):
        g = arc_decode(out[r])
        if g is not None:
            lab = bool((out[r] == IGNORE).any()) if labels is None else labels
            out[r] = arc_encode(arc_transform(g, int(k), inverse), labels=lab)
    return out


def augment_arc(inputs, labels, rng, n_aug=ARC_N_AUG):
    if not 1 <= n_aug <= 8 * len(ARC_PERMS):
        raise ValueError(f"n_aug must be in 1..{8 * len(ARC_PERMS)}, got {n_aug}")
    ids = rng.integers(0, n_aug, len(inputs))
    return (arc_apply(inputs, ids, labels=False), arc_apply(labels, ids, labels=True),
            {'aug_id': ids, 'dihedral': ids % 8})


def arc_vote_ids(n_votes, n_aug=ARC_N_AUG, seed=0):
    """n_votes distinct augmentation ids for test-time voting: the identity first, then a fixed
    random choice (the same for every run, so votes are comparable)."""
    if not 1 <= n_votes <= n_aug:
        raise ValueError(f"n_votes must be in 1..n_aug={n_aug}, got {n_votes}")
    rest = np.random.default_rng(seed).permutation(np.arange(1, n_aug))[:n_votes - 1]
    return np.concatenate([[0], rest]).astype(np.int64)


def arc_vote(preds, aug_ids, answer, scores=None):
    """Vote over predictions for ONE test pair made under several augmentations: undo each, crop at
    EOS, count identical grids as one candidate (score = votes, or summed `scores` if given, e.g.
    halting confidences), rank. answer: the true colour grid or its label canvas.
    Returns (pass@1, pass@2, ranked list of (grid, score))."""
    answer = np.asarray(answer)
    if answer.ndim == 1:
        answer = arc_decode(answer)
    tally = {}
    for r, k in enumerate(aug_ids):
        g = arc_decode(preds[r])
        if g is None:
            continue
        g = arc_transform(g, int(k), inverse=True)
        key = (g.shape, g.tobytes())
        entry = tally.setdefault(key, [g, 0.0, r])
        entry[1] += 1.0 if scores is None else float(scores[r])
    ranked = sorted(tally.values(), key=lambda e: (-e[1], e[2]))  # ties: first seen wins
    hits = [g.shape == answer.shape and (g == answer).all() for g, _, _ in ranked[:2]]
    return bool(hits[:1] and hits[0]), any(hits), [(g, s) for g, s, _ in ranked]


def arc_pair_hits(preds, aug_ids, ix, labels, scores=None):
    """Vote per test pair: rows are (test row ix, augmentation aug_ids, prediction), labels indexed by ix
    (unaugmented). Returns (pairs, hits): the distinct test rows and their [n, 2] pass@1 / pass@2 (bool)."""
    preds, aug_ids, ix = np.asarray(preds), np.asarray(aug_ids), np.asarray(ix)
    pairs = np.unique(ix)
    hits = np.zeros((len(pairs), 2), bool)
    for j, i in enumerate(pairs):
        rows = np.flatnonzero(ix == i)
        hits[j] = arc_vote(preds[rows], aug_ids[rows], labels[i], None if scores is None else scores[rows])[:2]
    return pairs, hits


def arc_score(hits, puzzle_ids):
    """From per-pair hits [n, 2] and each pair's task: pass@1 and pass@2 over test pairs, and ARC's task
    score (mean over tasks of the fraction of its test pairs solved) for both."""
    hits, puzzle_ids = np.asarray(hits, float), np.asarray(puzzle_ids)
    tasks = np.array([hits[puzzle_ids == t].mean(0) for t in np.unique(puzzle_ids)])
    return {'pass@1': float(hits[:, 0].mean()), 'pass@2': float(hits[:, 1].mean()),
            'task_pass@1': float(tasks[:, 0].mean()), 'task_pass@2': float(tasks[:, 1].mean()),
            'n_pairs': len(hits), 'n_tasks': len(tasks)}


def arc_evaluate(preds, aug_ids, ix, labels, puzzle_ids, scores=None):
    """Score a whole ARC test set: rows are (test row ix, augmentation aug_ids, prediction), labels
    and puzzle_ids indexed by ix (unaugmented). Returns arc_score's dict."""
    pairs, hits = arc_pair_hits(preds, aug_ids, ix, labels, scores)
    return arc_score(hits, np.asarray(puzzle_ids)[pairs])


# ----------------------------------------------------------------------------- the puzzle task (train.py's surface: see lm.py)

SPLITS = ('train', 'test')
SCHEDULES = ('trm', 'batch')
NEXT_COMMAND = 'python solve.py --out_dir={out_dir}'


def load(data_dir, config):
    """Both splits; kind: sudoku, maze or arc (the data's augmentation); n_aug: augmentations per task,
    each with its own puzzle embedding (ARC), else 1."""
    if config.get('rollout_feedback'):
        raise ValueError("rollout_feedback is for control data (data/control/<system>); set it False for puzzles")
    splits = {split: load_split(data_dir, split) for split in SPLITS}
    meta = splits['train']['meta']
    kind = meta['augmentation']
    n_aug = config['arc_n_aug'] if kind == 'arc' else 1
    if kind == 'arc' and not 1 <= config['arc_eval_votes'] <= n_aug:
        raise ValueError(f"arc_eval_votes={config['arc_eval_votes']} must be in 1..arc_n_aug={n_aug} "
                         f"(one vote per augmentation)")
    return {'splits': splits, 'meta': meta, 'kind': kind, 'n_aug': n_aug, 'system': None}


def model_args(data, config):
    """The token format fixes vocabulary and length; bidirectional; one puzzle embedding row per
    (task, augmentation)."""
    meta = data['meta']
    args = {'vocab_size': meta['vocab_size'], 'block_size': meta['seq_len'], 'causal': False,
            'num_puzzle_ids': meta.get('num_puzzle_ids', 1) * data['n_aug']}
    if config.get('yz_init_from'):  # what the frozen LM reads
        args['token_text'] = TOKEN_TEXT[data['kind']]
    return args


def draw(data, generator, shape):
    """Random training rows, and the seed their augmentations are drawn from."""
    ix = torch.randint(len(data['splits']['train']['inputs']), shape, generator=generator)
    return ix, int(torch.randint(2 ** 62, (), generator=generator))


def get_batch(data, split, ix, aug_seed=None):
    """Rows ix, augmented with a generator seeded by aug_seed (None: as they are)."""
    b = batch_arrays(data['splits'][split], ix.numpy(), np.random.default_rng(aug_seed),
                     augment=aug_seed is not None, n_aug=data['n_aug'])
    puzzle_ids = b.get('emb_ids', np.zeros(len(ix), np.int64))
    return torch.from_numpy(b['inputs']), torch.from_numpy(b['labels']), torch.from_numpy(puzzle_ids)


def eval_rows(data, split, generator, config, rank, world_size):
    """eval_iters fixed batches of consecutive rows, spread over the ranks, no augmentation; eval_iters=0:
    every row once (the last batch may be shorter)."""
    n, B = len(data['splits'][split]['inputs']), config['batch_size']
    if config['eval_iters'] == 0:
        return list(torch.arange(n).split(B))[rank::world_size]
    return [(torch.arange(B) + (i * world_size + rank) * B) % n for i in range(config['eval_iters'])]


def losses(logits, q, X, Y, data, config):
    """Cross-entropy (softmax or stable-max) per puzzle, then the mean over puzzles (TRM); the q-head
    (one logit per puzzle) learns whether the whole answer is right: (loss, ACT BCE, q accuracy)."""
    mask = Y != IGNORE
    ce = cross_entropy(logits, Y, config['loss'])
    loss = (ce.sum(1) / mask.sum(1).clamp(min=1)).mean()
    if q is None:
        return loss, None, None
    solved = ((logits.argmax(-1) == Y) | ~mask).all(1)
    q = q.float()
    bce = F.binary_cross_entropy_with_logits(q, solved.float())
    return loss, bce, (halted(q) == solved).float().mean()


def next_input(X, logits, data, config):
    return X


def batch_metrics(logits, q, X, Y, data):
    """Exact (whole puzzle) and cell accuracy, and for Sudoku and mazes the share of answers that obey
    the rules (any valid answer counts, not only the label)."""
    pred, mask = logits.argmax(-1), Y != IGNORE
    right = (pred == Y) & mask
    out = {'exact': (right.sum(1) == mask.sum(1)).float().mean(), 'cell': right.sum() / mask.sum()}
    if data['kind'] == 'sudoku':
        out['valid'] = float(sudoku_valid(X.cpu().numpy(), pred.cpu().numpy()).mean())
    elif data['kind'] == 'maze':
        out['valid'] = float(np.mean([maze_path_ok(x, p) for x, p in zip(X.cpu().numpy(), pred.cpu().numpy())]))
    return out


def eval_outputs(logits):
    return None


@torch.no_grad()
def eval_split(model, data, split, X, Y, outputs, config, run):
    """ARC's score at every supervision step and, with a q-head, at the step where each augmented copy
    halts (model.halted; the (S+1)-th entry, which train.py logs as _halt), on the test split: each test
    pair is solved under arc_eval_votes augmentations, each answer mapped back by the inverse augmentation,
    cropped at EOS and voted on (arc_pair_hits); pass@k: the right grid is among the k most voted. Pairs are spread over the
    ranks, which all run the same number of batches (FSDP runs forwards in lockstep); the hits are
    summed over the ranks."""
    if data['kind'] != 'arc' or split != 'test':
        return {}
    test, K, S, n_aug = data['splits']['test'], config['arc_eval_votes'], run.n_sup, data['n_aug']
    n = min(config['arc_eval_pairs'] or len(test['inputs']), len(test['inputs']))
    slots = np.arange(run.rank, -(-n // run.world_size) * run.world_size, run.world_size)  # this rank's pairs, padded
    rows = slots % n
    ix = np.repeat(rows, K)
    aug_ids = np.tile(arc_vote_ids(K, n_aug), len(rows))
    preds = [[] for _ in range(S + 1)]  # the steps' answers, then each copy's at its halting step
    for b in range(0, len(ix), config['batch_size']):
        batch = batch_arrays(test, ix[b:b + config['batch_size']], None, aug_ids=aug_ids[b:b + config['batch_size']],
                             n_aug=n_aug)
        inputs, puzzle_ids = (torch.from_numpy(batch[k]).to(run.device) for k in ('inputs', 'emb_ids'))
        with run.ctx:
            for s, (logits, q) in enumerate(model.supervision_steps(inputs, S, puzzle_ids=puzzle_ids)):
                pred = logits.argmax(-1)
                preds[s].append(pred.cpu().numpy())
                if q is not None:  # a copy's answer is this step's until it halts
                    answer = pred if s == 0 else torch.where(stopped[:, None], answer, pred)
                    halts = halted(q, config['halt_threshold'])
                    stopped = halts if s == 0 else stopped | halts
            if q is not None:
                preds[S].append(answer.cpu().numpy())
    S = S + 1 if preds[S] else S
    hits = torch.zeros(S, n, 2, device=run.device)
    own = np.repeat(slots < n, K)  # padding repeats pairs of other ranks: not counted here
    for s in range(S):
        pairs, h = arc_pair_hits(np.concatenate(preds[s])[own], aug_ids[own], ix[own], test['labels'])
        hits[s, torch.from_numpy(pairs)] = torch.from_numpy(h).float().to(run.device)
    run.all_reduce(hits)
    hits = hits.cpu().numpy()
    out = {}
    for s in range(S):
        score = arc_score(hits[s], test['puzzle_ids'][:n])
        out.update({f'test_{k}_s{s + 1}': score[k] for k in ('pass@1', 'pass@2', 'task_pass@1', 'task_pass@2')})
    return out


def summary(metrics, split, S, config):
    per_step = lambda k: ' '.join(f"{metrics[f'test_{k}_s{s + 1}']:.3f}" for s in range(S))
    line = f"  test exact accuracy per step: {per_step('exact')}; cell {metrics[f'test_cell_s{S}']:.3f}"
    if f'test_valid_s{S}' in metrics:
        line += f", rules {metrics[f'test_valid_s{S}']:.3f}"
    if 'test_halt_step' in metrics:
        line += f"; at the halting step (mean {metrics['test_halt_step']:.2f}) exact {metrics['test_exact_halt']:.3f}"
    if f'test_pass@1_s{S}' in metrics:
        line += (f"\n  test ARC pass@1 per step: {per_step('pass@1')}; pass@2 {metrics[f'test_pass@2_s{S}']:.3f}, "
                 f"per task pass@1 {metrics[f'test_task_pass@1_s{S}']:.3f} / pass@2 "
                 f"{metrics[f'test_task_pass@2_s{S}']:.3f} ({config['arc_eval_votes']} votes per pair)")
        if 'test_pass@1_halt' in metrics:
            line += (f"; at the halting step pass@1 {metrics['test_pass@1_halt']:.3f}, per task "
                     f"{metrics['test_task_pass@1_halt']:.3f}")
    return line


def log_speed(tok_per_s, block_size, steps_per_iter):
    """Samples x supervision steps per second: the official TRM code's throughput unit."""
    return {'samples_steps_per_s': tok_per_s / block_size * steps_per_iter}
