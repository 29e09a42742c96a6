"""GPT-2 BPE prepare scripts (data/openwebtext, fineweb_edu, tinystories) on small local files, offline."""
import json
import os
import pickle
import random
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tiktoken

from conftest import ROOT

sys.path.insert(0, os.path.join(ROOT, 'data'))
import gpt2_bin  # noqa: E402

EOT = 50256
# Each script runs once as a subprocess (the real command line); the other cases call gpt2_bin.main,
# which the three thin scripts share, in-process: the same code without ~3 s of imports per run.


def make_docs(n, seed=0, paragraphs=False):
    """n small documents with unicode, inner newlines and a literal '<|endoftext|>' that must stay text."""
    rng = random.Random(seed)
    words = ['the', 'cat', 'sat', 'on', 'mat', 'naïve', 'café', '日本語', 'emoji 🙂', '  spaced', 'tab\tbed',
             '<|endoftext|>', 'x' * 30, '42', 'end.']
    docs = []
    for _ in range(n):
        lines = [' '.join(rng.choice(words) for _ in range(rng.randint(1, 12))) for _ in range(rng.randint(1, 3))]
        docs.append('\n'.join(lines))  # no blank line inside: a paragraph-mode document stays whole
    return docs


def env(tmp_path):
    return dict(os.environ, TIKTOKEN_CACHE_DIR=os.environ.get('TIKTOKEN_CACHE_DIR', '/work/shared/tiktoken_cache'),
                HF_HUB_OFFLINE='1', HF_DATASETS_OFFLINE='1', HF_DATASETS_CACHE=str(tmp_path / 'hf_cache'),
                HF_HOME=str(tmp_path / 'hf_home'))


def prepare(tmp_path, name, *args, check=True):
    proc = subprocess.run([sys.executable, os.path.join(ROOT, 'data', name, 'prepare.py'), *args],
                          env=env(tmp_path), capture_output=True, text=True, timeout=120)
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def run_main(tmp_path, *args):
    """gpt2_bin.main in-process, as a prepare script would call it; returns its stdout."""
    gpt2_bin.main('test', out_dir=str(tmp_path / 'default_out'), dataset='nobody/nothing',
                  argv=[*args, '--cache_dir', str(tmp_path / 'hf_cache')])


def main_error(tmp_path, *args):
    """The one-line message main exits with."""
    with pytest.raises(SystemExit) as e:
        run_main(tmp_path, *args)
    msg = str(e.value.code)
    assert msg.startswith('error:') and '\n' not in msg, msg
    return msg


def read_docs(path):
    """Decode a .bin into its documents; every document must end with EOT."""
    ids = np.fromfile(path, dtype=np.uint16)
    assert len(ids) > 0 and ids[-1] == EOT
    enc = tiktoken.get_encoding('gpt2')
    cuts = np.flatnonzero(ids == EOT)
    starts = np.concatenate([[0], cuts[:-1] + 1])
    return [enc.decode(ids[a:b].tolist()) for a, b in zip(starts, cuts)]


def is_in_order(sub, docs):
    it = iter(docs)
    return all(any(d == x for x in it) for d in sub)


def check_split(out, docs, n_val=None):
    """train + val are the documents, each file in input order, nothing lost, nothing added."""
    train, val = read_docs(out / 'train.bin'), read_docs(out / 'val.bin')
    assert sorted(train + val) == sorted(docs)
    assert is_in_order(train, docs) and is_in_order(val, docs)
    if n_val is not None:
        assert len(val) == n_val
    with open(out / 'meta.pkl', 'rb') as f:
        assert pickle.load(f) == {'vocab_size': 50257, 'tokenizer': 'gpt2'}
    assert not [p for p in os.listdir(out) if p.endswith('.tmp') or p.startswith('prepare_state')]
    return train, val


def test_openwebtext_txt_one_file_per_doc_round_trip(tmp_path):
    docs = make_docs(12, seed=1)
    for i, d in enumerate(docs):  # names sort in document order
        (tmp_path / f'doc{i:02d}.txt').write_text(d, encoding='utf-8')
    out = tmp_path / 'out'
    prepare(tmp_path, 'openwebtext', '--files', str(tmp_path / 'doc*.txt'), '--out_dir', str(out),
            '--val_size', '3', '--num_proc', '2', '--batch_size', '4')
    train, val = check_split(out, docs, n_val=3)
    # same seed, same split: the held-out documents are reproducible
    run_main(tmp_path, '--files', str(tmp_path / 'doc*.txt'), '--out_dir', str(tmp_path / 'again'),
             '--val_size', '3', '--num_proc', '1')
    assert (out / 'val.bin').read_bytes() == (tmp_path / 'again' / 'val.bin').read_bytes()


def test_txt_paragraphs_round_trip(tmp_path):
    docs = make_docs(20, seed=2)
    (tmp_path / 'a.txt').write_text('\n\n'.join(docs[:10]), encoding='utf-8')
    (tmp_path / 'b.txt').write_text('\n\n'.join(docs[10:]), encoding='utf-8')
    out = tmp_path / 'out'
    run_main(tmp_path, '--files', str(tmp_path / 'a.txt'), str(tmp_path / 'b.txt'),
             '--txt_doc', 'paragraph', '--out_dir', str(out), '--val_size', '0.25', '--num_proc', '1')
    check_split(out, docs, n_val=5)


def test_fineweb_edu_jsonl_streaming_round_trip(tmp_path):
    docs = make_docs(60, seed=3)
    with open(tmp_path / 'part.jsonl', 'w', encoding='utf-8') as f:
        for i, d in enumerate(docs):
            f.write(json.dumps({'id': i, 'text': d}) + '\n')
    out = tmp_path / 'out'
    prepare(tmp_path, 'fineweb_edu', '--files', str(tmp_path / '*.jsonl'), '--out_dir', str(out),
            '--streaming', '--val_size', '0.3', '--batch_size', '7', '--num_proc', '2')
    train, val = check_split(out, docs)
    assert 0 < len(val) < len(docs)  # a seeded hash picks roughly 30%


def test_tinystories_parquet_own_validation_split(tmp_path):
    docs = make_docs(30, seed=4)
    pq.write_table(pa.table({'text': docs[:25]}), tmp_path / 'train.parquet')
    pq.write_table(pa.table({'text': docs[25:]}), tmp_path / 'valid.parquet')
    out = tmp_path / 'out'
    prepare(tmp_path, 'tinystories', '--files', str(tmp_path / 'train.parquet'),
            '--val_files', str(tmp_path / 'valid.parquet'), '--out_dir', str(out), '--num_proc', '2')
    train, val = check_split(out, docs)
    assert train == docs[:25] and val == docs[25:]  # exact, in order, no documents moved between splits


def test_parquet_streaming_val_count(tmp_path):
    docs = make_docs(30, seed=5)
    pq.write_table(pa.table({'story': docs}), tmp_path / 'all.parquet')
    out = tmp_path / 'out'
    run_main(tmp_path, '--files', str(tmp_path / 'all.parquet'), '--text_column', 'story',
             '--streaming', '--val_size', '4', '--out_dir', str(out))
    train, val = check_split(out, docs, n_val=4)
    assert val == docs[:4]  # streaming with a count: the first N documents (documented)


@pytest.mark.parametrize('name,extra', [('openwebtext', []), ('fineweb_edu', []), ('tinystories', ['--streaming'])])
def test_hub_offline_one_line_error(tmp_path, name, extra):
    proc = prepare(tmp_path, name, '--out_dir', str(tmp_path / 'out'), *extra, check=False)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error:') and '--files' in lines[0], proc.stderr
    assert 'Traceback' not in proc.stderr
    assert not (tmp_path / 'out' / 'train.bin').exists()


@pytest.mark.parametrize('args,words', [
    (['--files', 'nowhere/*.txt'], 'no such file'),
    (['--files', 'DIR/a.txt', 'DIR/b.jsonl'], 'one kind'),
    (['--files', 'DIR/b.jsonl', '--text_column', 'body'], '--text_column'),
    (['--files', 'DIR/a.txt', '--val_size', '0.5'], 'too few'),
])
def test_bad_input_one_line_error(tmp_path, args, words):
    (tmp_path / 'a.txt').write_text('just one document')
    (tmp_path / 'b.jsonl').write_text('{"text": "hi"}\n')
    args = [a.replace('DIR', str(tmp_path)) for a in args]
    assert words in main_error(tmp_path, *args, '--out_dir', str(tmp_path / 'out'))
    assert not (tmp_path / 'out' / 'train.bin').exists()


def test_val_picker_exact_seeded_and_streaming():
    idx = np.arange(1000)
    a, b, c = (gpt2_bin.val_picker(1000, 0.01, seed)(idx) for seed in (1, 1, 2))
    assert a.sum() == 10 and (a == b).all() and not (a == c).all()
    assert gpt2_bin.val_picker(1000, 7, 0)(idx).sum() == 7
    frac = gpt2_bin.val_picker(None, 0.1, 0)(np.arange(100_000)).mean()  # streaming: a hash per index
    assert 0.09 < frac < 0.11
    with pytest.raises(ValueError, match='none to train on'):
        gpt2_bin.val_picker(5, 5, 0)


def test_crash_midway_then_rerun_resumes_exactly(tmp_path, capsys):
    docs = make_docs(50, seed=6)
    good, bad = tmp_path / 'a.jsonl', tmp_path / 'b.jsonl'
    good.write_text(''.join(json.dumps({'text': d}) + '\n' for d in docs[:30]), encoding='utf-8')
    bad.write_text('{"text": "broken\n', encoding='utf-8')  # the stream dies here, after a.jsonl's batches
    out = tmp_path / 'out'
    args = ['--files', str(tmp_path / '*.jsonl'), '--out_dir', str(out), '--streaming', '--val_size', '0.2',
            '--batch_size', '4']
    main_error(tmp_path, *args)
    assert not (out / 'train.bin').exists() and not (out / 'val.bin').exists()  # never a half file under the real name
    state = json.loads((out / 'prepare_state.json').read_text())
    assert state['docs'] > 0
    with open(out / 'train.bin.tmp', 'ab') as f:  # a kill between writing tokens and recording them
        f.write(b'\x01\x02' * 1000)

    bad.write_text(''.join(json.dumps({'text': d}) + '\n' for d in docs[30:]), encoding='utf-8')
    run_main(tmp_path, *args)
    assert 'resuming' in capsys.readouterr().out
    check_split(out, docs)
    run_main(tmp_path, *args[:3], str(tmp_path / 'clean'), *args[4:])  # the same split from scratch
    for s in ('train.bin', 'val.bin'):
        assert (out / s).read_bytes() == (tmp_path / 'clean' / s).read_bytes()


def test_stale_tmp_files_start_clean(tmp_path, capsys):
    docs = make_docs(10, seed=7)
    (tmp_path / 'x.txt').write_text('\n\n'.join(docs), encoding='utf-8')
    out = tmp_path / 'out'
    out.mkdir()
    (out / 'train.bin.tmp').write_bytes(b'\xff' * 999)  # half-written, odd length, no state file
    (out / 'val.bin.tmp').write_bytes(b'\xff' * 10)
    (out / 'train.bin').write_bytes(b'old')  # an earlier complete run is replaced whole
    args = ['--files', str(tmp_path / 'x.txt'), '--txt_doc', 'paragraph', '--out_dir', str(out), '--val_size', '2']
    run_main(tmp_path, *args)
    check_split(out, docs, n_val=2)
    # a state file from other arguments is not resumed
    (out / 'train.bin.tmp').write_bytes(b'\xff' * 64)
    (out / 'val.bin.tmp').write_bytes(b'\xff' * 64)
    (out / 'prepare_state.json').write_text(json.dumps(
        {'key': 'other run', 'part': 0, 'docs': 5, 'tokens': {'train': 16, 'val': 16}}))
    capsys.readouterr()
    run_main(tmp_path, *args)
    assert 'resuming' not in capsys.readouterr().out
    check_split(out, docs, n_val=2)


def test_dataset_folder_takes_the_hub_path_and_its_validation_split(tmp_path):
    # load_dataset(name) accepts a local folder laid out like a hub repo: the same code path as the hub, offline
    docs = make_docs(16, seed=8)
    repo = tmp_path / 'repo' / 'data'
    repo.mkdir(parents=True)
    pq.write_table(pa.table({'text': docs[:12]}), repo / 'train-00000-of-00001.parquet')
    pq.write_table(pa.table({'text': docs[12:]}), repo / 'validation-00000-of-00001.parquet')
    out = tmp_path / 'out'
    run_main(tmp_path, '--dataset', str(tmp_path / 'repo'), '--out_dir', str(out), '--num_proc', '1')
    train, val = check_split(out, docs)
    assert train == docs[:12] and val == docs[12:]


def test_script_dataset_names_the_ways_out(tmp_path):
    repo = tmp_path / 'owt'
    repo.mkdir()
    (repo / 'owt.py').write_text('# a legacy loading script\n')
    msg = main_error(tmp_path, '--dataset', str(repo), '--out_dir', str(tmp_path / 'out'))
    assert '--revision refs/convert/parquet' in msg and '--files' in msg


def test_txt_lines_round_trip(tmp_path):
    docs = [line for d in make_docs(8, seed=9) for line in d.split('\n')]
    (tmp_path / 'lines.txt').write_text('\n'.join(docs[:5]) + '\n\n' + '\n'.join(docs[5:]) + '\n', encoding='utf-8')
    out = tmp_path / 'out'
    run_main(tmp_path, '--files', str(tmp_path / 'lines.txt'), '--txt_doc', 'line', '--streaming',
             '--val_size', '2', '--out_dir', str(out))
    train, val = check_split(out, docs, n_val=2)  # the empty line is no document
    assert val == docs[:2] and train == docs[2:]
