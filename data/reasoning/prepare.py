"""
Generate character-level tasks where computation depth matters, in the nanoGPT data format.

    python data/reasoning/prepare.py                                # all three, into data/reasoning/<task>/
    python data/reasoning/prepare.py --task=addition --digits=6
    python data/reasoning/prepare.py --task=pointer --hops=3 --out_dir=data/pointer3
    python data/reasoning/prepare.py --task=modular --modulus=113 --train_fraction=0.3

Tasks (an example is prompt + answer + '\\n' in the token stream):
    addition   '15+7=' -> '22'; operands of 1..--digits digits, hard: --digits+1..+2 (length generalisation)
    pointer    'a=3;x=7;b=a;y=x;c=b;c?' -> '3'; a chain of 1..--hops hops among distractor chains,
               hard: --hops+1..2*--hops hops
    modular    '5+9=' -> str((5+9) % p); all p*p pairs split into train / val (never seen: grokking),
               hard: 'a+b+c=' (the operation chained once more, never trained)
Each example has a 'group' (digits, hops, terms: its depth) and per-answer-character 'token_groups'
(addition: 1 where the column takes a carry in), so evaluation can report accuracy by depth.

Writes train.bin / val.bin (uint16; train: the train examples reshuffled pass after pass up to
--min_tokens), train_mask.bin / val_mask.bin (uint8, 1 at answer tokens and their '\\n'), meta.pkl
(vocab_size, stoi, itos) and exact.json (the examples of each split, for exact-match evaluation).
Val and hard prompts never occur in train; with few distinct prompts (small --digits) val is drawn
from what train left, so it leans to the larger operands.
"""
import argparse
import os
import pickle
import random
import string
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from common import save_json, write_atomic  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
VOCAB = '\n+;=?0123456789abcdefghijklmnopqrstuvwxyz'  # one vocabulary for all tasks: models can move between them
STOI = {ch: i for i, ch in enumerate(VOCAB)}
ITOS = {i: ch for i, ch in enumerate(VOCAB)}
TASKS = ('addition', 'pointer', 'modular')
GROUP = {'addition': 'digits', 'pointer': 'hops', 'modular': 'terms'}
TOKEN_GROUPS = {'addition': {'0': 'no carry in', '1': 'carry in'}, 'pointer': {}, 'modular': {}}
N_TRAIN = {'addition': 100_000, 'pointer': 50_000}
N_EXACT_TRAIN = 1000  # train examples kept in exact.json: a fixed sample to measure memorisation


def example(prompt, answer, group, token_groups):
    return {'prompt': prompt, 'answer': answer, 'group': group, 'token_groups': token_groups}


def addition_example(a, b):
    """'a+b=' -> str(a+b); token_groups[i] = 1 where answer character i's column takes a carry in."""
    answer = str(a + b)
    carry_in, carry = [], 0
    for col in range(len(answer)):  # least significant first, as the carries run
        carry_in.append(carry)
        carry = (a // 10 ** col % 10 + b // 10 ** col % 10 + carry) // 10
    return example(f'{a}+{b}=', answer, max(len(str(a)), len(str(b))), carry_in[::-1])


def draw_number(rng, lo, hi):
    """Digit count uniform in lo..hi, then uniform among the numbers of that many digits: short numbers
    are as common as long ones (uniform numbers would be almost all of the longest length)."""
    k = rng.randint(lo, hi)
    return rng.randint(0, 9) if k == 1 else rng.randint(10 ** (k - 1), 10 ** k - 1)


def pointer_example(rng, lo, hi, distractors):
    """A query chain of h in lo..hi hops and `distractors` chains of 1..hi hops, interleaved keeping
    each chain's order; the answer is the digit at the head of the query chain."""
    h = rng.randint(lo, hi)
    lengths = [h] + [rng.randint(1, hi) for _ in range(distractors)]
    assert sum(lengths) <= 26, "more variables than letters"
    letters = iter(rng.sample(string.ascii_lowercase, sum(lengths)))
    chains = []
    for n in lengths:
        names = [next(letters) for _ in range(n)]
        # every chain starts at its own random digit: the answer is not "the only digit in the prompt"
        chains.append([f'{names[0]}={rng.randint(0, 9)}'] + [f'{v}={u}' for u, v in zip(names, names[1:])])
    query, answer = chains[0][-1][0], chains[0][0][-1]
    order = [c for c, chain in enumerate(chains) for _ in chain]
    rng.shuffle(order)  # a random interleaving: each chain's statements still come in its own order
    pos = [0] * len(chains)
    stmts = []
    for c in order:
        stmts.append(chains[c][pos[c]])
        pos[c] += 1
    return example(';'.join(stmts) + f';{query}?', answer, h, [h])


def draw_splits(draw, n_train, n_val, n_hard, rng):
    """train: n_train draws (repeats allowed); val and hard: distinct prompts that are not in train.
    ValueError when too few such prompts exist."""
    train = [draw(rng, False) for _ in range(n_train)]
    seen = {e['prompt'] for e in train}
    out = {'train': train}
    for split, n, hard in (('val', n_val, False), ('hard', n_hard, True)):
        out[split], tries = [], 0
        while len(out[split]) < n:
            e, tries = draw(rng, hard), tries + 1
            if e['prompt'] not in seen:
                seen.add(e['prompt'])
                out[split].append(e)
            elif tries > 100 * n + 10_000:
                raise ValueError(f"only {len(out[split])} of {n} {split} prompts outside train found in {tries} "
                                 f"draws: too few distinct prompts; lower --n_train or --n_{split}, or widen the task")
    return out


def addition(n_train, n_val, n_hard, digits=4, seed=0):
    def draw(rng, hard):
        lo, hi = (digits + 1, digits + 2) if hard else (1, digits)
        return addition_example(draw_number(rng, lo, hi), draw_number(rng, lo, hi))
    return draw_splits(draw, n_train, n_val, n_hard, random.Random(f'addition:{seed}'))


def pointer(n_train, n_val, n_hard, hops=4, distractors=2, seed=0):
    def draw(rng, hard):
        return pointer_example(rng, *((hops + 1, 2 * hops) if hard else (1, hops)), distractors)
    return draw_splits(draw, n_train, n_val, n_hard, random.Random(f'pointer:{seed}'))


def modular(p=97, train_fraction=0.5, n_hard=2000, seed=0):
    """All p*p pairs, a seeded shuffle splits them: train_fraction of them train, the rest val.
    hard: n_hard distinct triples (never trained: train only has pairs)."""
    rng = random.Random(f'modular:{seed}')
    pairs = list(range(p * p))
    rng.shuffle(pairs)
    n = round(train_fraction * p * p)
    if not 0 < n < p * p:
        raise ValueError(f"--train_fraction={train_fraction} of {p * p} pairs leaves train or val empty; "
                         f"take a fraction further from 0 and 1 or a larger --modulus")
    if n_hard > p ** 3:
        raise ValueError(f"--n_hard={n_hard} is more than the {p ** 3} triples of --modulus={p}; lower --n_hard")

    def pair(i):
        a, b = divmod(i, p)
        return example(f'{a}+{b}=', str((a + b) % p), 2, [2] * len(str((a + b) % p)))

    def triple(i):
        a, b, c = i // (p * p), i // p % p, i % p
        answer = str((a + b + c) % p)
        return example(f'{a}+{b}+{c}=', answer, 3, [3] * len(answer))
    return {'train': [pair(i) for i in pairs[:n]], 'val': [pair(i) for i in sorted(pairs[n:])],
            'hard': [triple(i) for i in rng.sample(range(p ** 3), n_hard)]}


def encode(examples):
    """(tokens, mask, starts, lengths) of the examples concatenated in order; mask 1 at answer + '\\n'."""
    text = ''.join(e['prompt'] + e['answer'] + '\n' for e in examples)
    lut = np.zeros(256, dtype=np.uint16)
    lut[[ord(c) for c in VOCAB]] = np.arange(len(VOCAB))
    tokens = lut[np.frombuffer(text.encode('ascii'), dtype=np.uint8)]
    lengths = np.array([len(e['prompt']) + len(e['answer']) + 1 for e in examples])
    prompt_len = np.array([len(e['prompt']) for e in examples])
    starts = np.cumsum(lengths) - lengths
    offset = np.arange(len(tokens)) - np.repeat(starts, lengths)  # position within its example
    return tokens, (offset >= np.repeat(prompt_len, lengths)).astype(np.uint8), starts, lengths


def train_stream(examples, min_tokens, np_rng):
    """The train examples in a fresh random order each pass, passes until at least min_tokens."""
    tokens, mask, starts, lengths = encode(examples)
    passes = -(-min_tokens // len(tokens))
    perm = np.concatenate([np_rng.permutation(len(examples)) for _ in range(passes)])
    lens = lengths[perm]
    # gather: token j of the stream is token (j - start of its slot) of its example
    idx = np.arange(lens.sum()) - np.repeat(np.cumsum(lens) - lens, lens) + np.repeat(starts[perm], lens)
    return tokens[idx], mask[idx]


def generate(task, a):
    if task == 'addition':
        return addition(a.n_train or N_TRAIN[task], a.n_val, a.n_hard, a.digits, a.seed)
    if task == 'pointer':
        return pointer(a.n_train or N_TRAIN[task], a.n_val, a.n_hard, a.hops, a.distractors, a.seed)
    return modular(a.modulus, a.train_fraction, a.n_hard, a.seed)


def write(task, splits, out_dir, a):
    os.makedirs(out_dir, exist_ok=True)
    train, train_mask = train_stream(splits['train'], a.min_tokens, np.random.default_rng([a.seed, TASKS.index(task)]))
    val, val_mask = encode(splits['val'])[:2]
    for name, arr in (('train.bin', train), ('train_mask.bin', train_mask), ('val.bin', val),
                      ('val_mask.bin', val_mask)):
        write_atomic(os.path.join(out_dir, name), arr.tofile)

    def dump_meta(tmp):
        with open(tmp, 'wb') as f:
            pickle.dump({'vocab_size': len(VOCAB), 'stoi': STOI, 'itos': ITOS}, f)
    write_atomic(os.path.join(out_dir, 'meta.pkl'), dump_meta)
    args = dict(vars(a), task=task, out_dir=out_dir, n_train=len(splits['train']))
    save_json(os.path.join(out_dir, 'exact.json'),
              {'task': task, 'group': GROUP[task], 'token_groups': TOKEN_GROUPS[task], 'args': args,
               'splits': {'train': splits['train'][:N_EXACT_TRAIN], 'val': splits['val'], 'hard': splits['hard']}})
    return len(train), len(val)


def check_args(a):
    """The one-line error of the first bad argument, or None."""
    if a.task not in (None,) + TASKS:
        return f"--task={a.task} is not one of {', '.join(TASKS)} (or leave it out for all three)"
    if a.out_dir and not a.task:
        return "--out_dir needs one --task (without --task, each task writes data/reasoning/<task>/)"
    if a.digits < 1:
        return f"--digits={a.digits} must be at least 1"
    if a.hops < 1 or a.distractors < 0:
        return f"--hops={a.hops} must be at least 1 and --distractors={a.distractors} at least 0"
    if (a.distractors + 1) * 2 * a.hops > 26:
        return (f"--hops={a.hops} with --distractors={a.distractors} can need {(a.distractors + 1) * 2 * a.hops} "
                f"variables (hard split: {a.distractors + 1} chains of up to {2 * a.hops}), more than 26 letters; "
                f"lower --hops or --distractors")
    if not 0 < a.train_fraction < 1:
        return f"--train_fraction={a.train_fraction} must be strictly between 0 and 1"
    if not 2 <= a.modulus <= 1000:
        return f"--modulus={a.modulus} must be in 2..1000 (all p*p pairs are enumerated)"
    for k in ('n_train', 'n_val', 'n_hard', 'min_tokens'):
        if getattr(a, k) is not None and getattr(a, k) < 1:
            return f"--{k}={getattr(a, k)} must be a positive integer"
    return None


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0].strip())
    ap.add_argument('--task', default=None, help=f"{'|'.join(TASKS)} (default: all three)")
    ap.add_argument('--out_dir', default=None, help='only with --task (default: data/reasoning/<task>/)')
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--n_train', type=int, default=None,
                    help=f"train examples (default: {N_TRAIN['addition']} addition, {N_TRAIN['pointer']} pointer; "
                         f"modular: its train pairs)")
    ap.add_argument('--n_val', type=int, default=2000, help='val examples (modular: all held-out pairs)')
    ap.add_argument('--n_hard', type=int, default=2000)
    ap.add_argument('--min_tokens', type=int, default=1_000_000, help='train.bin repeats the train set to this')
    ap.add_argument('--digits', type=int, default=4, help='addition: operand digits 1..digits (hard: +1..+2)')
    ap.add_argument('--hops', type=int, default=4, help='pointer: hops 1..hops (hard: hops+1..2*hops)')
    ap.add_argument('--distractors', type=int, default=2, help='pointer: distractor chains per example')
    ap.add_argument('--modulus', type=int, default=97)
    ap.add_argument('--train_fraction', type=float, default=0.5, help='modular: fraction of the pairs trained')
    a = ap.parse_args(argv)
    err = check_args(a)
    if err:
        sys.exit(f"error: {err}")

    # every task is generated before anything is written: a split that cannot be filled writes nothing
    tasks, t0 = [a.task] if a.task else list(TASKS), {}
    generated = {}
    for task in tasks:
        t0[task] = time.time()
        try:
            generated[task] = generate(task, a)
        except ValueError as e:
            sys.exit(f"error: {task}: {e}")
        t0[task] = time.time() - t0[task]
    for task in tasks:
        t = time.time()
        splits = generated[task]
        n_train_tokens, n_val_tokens = write(task, splits, a.out_dir or os.path.join(HERE, task), a)
        print(f"{task}: train {len(splits['train']):,} val {len(splits['val']):,} hard {len(splits['hard']):,} "
              f"examples; train.bin {n_train_tokens:,} tokens, val.bin {n_val_tokens:,}; "
              f"{t0[task] + time.time() - t:.1f}s")


if __name__ == '__main__':
    main()
