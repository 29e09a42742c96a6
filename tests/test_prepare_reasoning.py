import importlib.util
import json
import os
import pickle
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT

spec = importlib.util.spec_from_file_location('prep_reasoning', os.path.join(ROOT, 'data', 'reasoning', 'prepare.py'))
R = importlib.util.module_from_spec(spec)
spec.loader.exec_module(R)

TINY = ['--n_train=200', '--n_val=50', '--n_hard=50', '--min_tokens=10000', '--modulus=11']
BINS = ('train.bin', 'train_mask.bin', 'val.bin', 'val_mask.bin', 'meta.pkl')


def carries(a, b):
    """Independent: pad both to the answer's width, add column by column from the right."""
    n = len(str(a + b))
    x, y = str(a).zfill(n)[::-1], str(b).zfill(n)[::-1]
    out, c = [], 0
    for i in range(n):
        out.append(c)
        c = int(int(x[i]) + int(y[i]) + c >= 10)
    return out[::-1]


@pytest.mark.parametrize('a, b, answer, groups', [
    (15, 7, '22', [1, 0]), (99, 1, '100', [1, 1, 0]), (0, 0, '0', [0]), (123, 456, '579', [0, 0, 0]),
    (7, 15, '22', [1, 0]), (999, 999, '1998', [1, 1, 1, 0])])
def test_addition_example_hand_checked(a, b, answer, groups):
    e = R.addition_example(a, b)
    assert (e['prompt'], e['answer'], e['token_groups']) == (f'{a}+{b}=', answer, groups)
    assert e['group'] == max(len(str(a)), len(str(b)))


def test_addition_splits():
    s = R.addition(n_train=2000, n_val=200, n_hard=200, digits=3, seed=0)
    train = {e['prompt'] for e in s['train']}
    for split, lo, hi in (('train', 1, 3), ('val', 1, 3), ('hard', 4, 5)):
        for e in s[split]:
            a, b = map(int, e['prompt'][:-1].split('+'))
            assert e['answer'] == str(a + b) and e['token_groups'] == carries(a, b)
            assert all(lo <= len(str(x)) <= hi and str(x) == str(int(str(x))) for x in (a, b))
            assert e['group'] == max(len(str(a)), len(str(b)))
        if split != 'train':
            prompts = [e['prompt'] for e in s[split]]
            assert len(set(prompts)) == len(prompts) and not train & set(prompts)
    assert {e['group'] for e in s['train']} == {1, 2, 3} and {e['group'] for e in s['hard']} == {4, 5}


def interpret(prompt):
    """(answer, hops of the queried chain, assigned names) by running the statements in order."""
    *stmts, query = prompt.split(';')
    assert query.endswith('?')
    env, defs, names = {}, {}, []
    for st in stmts:
        name, rhs = st.split('=')
        exec(st, {}, env)  # a name used before it is assigned raises NameError
        defs[name] = rhs
        names.append(name)
    v, hops = query[:-1], 1
    while defs[v].isalpha():
        v, hops = defs[v], hops + 1
    return str(env[query[:-1]]), hops, names


def test_pointer_interpreted():
    s = R.pointer(n_train=300, n_val=100, n_hard=100, hops=3, distractors=2, seed=1)
    train = {e['prompt'] for e in s['train']}
    for split, lo, hi in (('train', 1, 3), ('val', 1, 3), ('hard', 4, 6)):
        for e in s[split]:
            answer, hops, names = interpret(e['prompt'])
            assert e['answer'] == answer and e['group'] == hops and e['token_groups'] == [hops]
            assert lo <= hops <= hi
            assert len(names) == len(set(names)) and all(len(n) == 1 and n.islower() for n in names)
            assert len(names) <= hops + 2 * hi
        if split != 'train':
            assert not train & {e['prompt'] for e in s[split]}
    # distractor values are random digits: the answer is not the only digit in the prompt
    assert sum(len({c for c in e['prompt'] if c.isdigit()}) > 1 for e in s['train']) > 200
    assert {e['group'] for e in s['hard']} == {4, 5, 6}


def test_modular_partition():
    p = 11
    s = R.modular(p=p, train_fraction=0.3, n_hard=100, seed=0)
    pairs = {split: [tuple(map(int, e['prompt'][:-1].split('+'))) for e in s[split]] for split in ('train', 'val')}
    assert len(pairs['train']) == round(0.3 * p * p)
    assert sorted(pairs['train'] + pairs['val']) == [(a, b) for a in range(p) for b in range(p)]
    for e in s['train'] + s['val'] + s['hard']:
        terms = list(map(int, e['prompt'][:-1].split('+')))
        assert e['answer'] == str(sum(terms) % p) and e['group'] == len(terms)
        assert e['token_groups'] == [len(terms)] * len(e['answer'])
    assert all(e['group'] == 3 for e in s['hard']) and len({e['prompt'] for e in s['hard']}) == 100


def check_folder(d, task, min_tokens=10000):
    with open(os.path.join(d, 'meta.pkl'), 'rb') as f:
        meta = pickle.load(f)
    assert meta['vocab_size'] == len(meta['itos']) == len(R.VOCAB)
    with open(os.path.join(d, 'exact.json')) as f:
        exact = json.load(f)
    assert exact['task'] == task and exact['group'] == R.GROUP[task] and exact['args']['task'] == task
    ex = exact['splits']
    train = {e['prompt'] for e in ex['train']}
    assert not train & {e['prompt'] for e in ex['val'] + ex['hard']}
    for split in ('train', 'val'):
        ids = np.fromfile(os.path.join(d, f'{split}.bin'), dtype=np.uint16)
        mask = np.fromfile(os.path.join(d, f'{split}_mask.bin'), dtype=np.uint8)
        assert len(ids) == len(mask)
        text = ''.join(meta['itos'][int(i)] for i in ids)
        assert text.endswith('\n')
        lines = text[:-1].split('\n')
        if split == 'val':
            assert lines == [e['prompt'] + e['answer'] for e in ex['val']]
        else:  # every pass is a reshuffle of the whole train set (all of it is in exact.json at this size)
            assert len(ids) >= min_tokens
            n = len(ex['train'])
            assert len(lines) % n == 0 and len(lines) > n
            want = sorted(e['prompt'] + e['answer'] for e in ex['train'])
            passes = [lines[i:i + n] for i in range(0, len(lines), n)]
            assert all(sorted(chunk) == want for chunk in passes) and passes[0] != passes[1]
        expect = []  # a prompt ends at its last '=' (sums) or '?' (pointer); the rest of the line is the answer
        for line in lines:
            k = max(line.rfind('='), line.rfind('?')) + 1
            expect += [0] * k + [1] * (len(line) - k + 1)
        assert np.array_equal(mask, expect)


def test_script_round_trip(tmp_path):
    # a copy under tmp_path (with common.py beside it, as in the repo) writes all three tasks there
    os.makedirs(tmp_path / 'data' / 'reasoning')
    shutil.copy(os.path.join(ROOT, 'common.py'), tmp_path)
    shutil.copy(os.path.join(ROOT, 'data', 'reasoning', 'prepare.py'), tmp_path / 'data' / 'reasoning')
    proc = subprocess.run([sys.executable, str(tmp_path / 'data' / 'reasoning' / 'prepare.py')] + TINY,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert [line.split(':')[0] for line in proc.stdout.splitlines()] == list(R.TASKS)
    for task in R.TASKS:
        check_folder(tmp_path / 'data' / 'reasoning' / task, task)


def test_same_seed_same_files(tmp_path):
    def files(task, seed, name):
        d = tmp_path / name
        R.main([f'--task={task}', f'--out_dir={d}', f'--seed={seed}'] + TINY)
        with open(d / 'exact.json') as f:
            splits = json.load(f)['splits']
        return [(d / b).read_bytes() for b in BINS], splits
    for task in R.TASKS:
        a, b, c = files(task, 0, f'{task}a'), files(task, 0, f'{task}b'), files(task, 1, f'{task}c')
        assert a == b
        assert a[0][0] != c[0][0] and a[1] != c[1]


@pytest.mark.parametrize('args, says', [
    (['--task=addition', '--digits=0'], '--digits'), (['--task=modular', '--train_fraction=1'], '--train_fraction'),
    (['--task=modular', '--train_fraction=0'], '--train_fraction'),
    (['--task=pointer', '--hops=5', '--distractors=2'], 'letters'), (['--task=sum'], '--task'),
    (['--task=addition', '--n_val=0'], '--n_val'), ([], '--task'),  # --out_dir without --task
    (['--task=addition', '--digits=1', '--n_train=5000', '--n_val=50'], 'val prompts')])
def test_bad_arguments_write_nothing(tmp_path, args, says):
    # sys.exit(message): the process prints the one line to stderr and exits with status 1
    out = tmp_path / 'out'
    with pytest.raises(SystemExit) as e:
        R.main(args + [f'--out_dir={out}'])
    msg = e.value.code
    assert isinstance(msg, str) and msg.startswith('error:') and '\n' not in msg and says in msg
    assert not out.exists()
