"""
Shared by the GPT-2 BPE prepare scripts (openwebtext, fineweb_edu, tinystories).

A corpus of documents -- a Hugging Face hub dataset, or local --files (.txt, .jsonl/.json,
.parquet) loaded through `datasets` so it works offline -- is tokenized with tiktoken's GPT-2
BPE, an end-of-text token (50256) after every document, and written as nanoGPT's
train.bin / val.bin (flat np.uint16 token ids) plus meta.pkl {'vocab_size': 50257, 'tokenizer': 'gpt2'}.

* Documents. Hub and .jsonl/.parquet: one row of the text column = one document. .txt:
  --txt_doc file (default: one file = one document), paragraph (split on blank lines, i.e. on
  "\\n\\n", empty pieces dropped) or line (without its newline). Empty documents are skipped
  (no lone EOT).
* Val split. A 'validation' split of the source (TinyStories has one; --val_files gives one
  locally) is used as is. Otherwise --val_size documents are held out: a fraction (< 1) or a
  count (>= 1). Without streaming they are drawn at random with --seed (exact count); with
  --streaming a fraction picks each document by a seeded hash of its index and a count takes
  the first N documents. Both files keep the source's document order.
* Memory is bounded: documents are tokenized and appended in batches (--batch_size docs).
  Without --streaming the tokens go through datasets' on-disk cache with a --num_proc map;
  with --streaming nothing is downloaded ahead and tiktoken uses --num_proc threads.
* Restartable: tokens go to train.bin.tmp / val.bin.tmp, and prepare_state.json records how
  far they are valid after each batch. A rerun with the same arguments resumes from there
  (--restart starts clean); the real names appear only by os.replace once both are complete.
"""
import argparse
import glob
import json
import os
import pickle
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root
from common import save_json, write_atomic  # noqa: E402

EOT = 50256
EXTENSIONS = {'.txt': 'text', '.jsonl': 'json', '.json': 'json', '.parquet': 'parquet'}


def parse_args(description, out_dir, dataset, subset=None, val_size=0.0005, argv=None):
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--dataset', default=dataset, help='hub dataset name (default: %(default)s)')
    p.add_argument('--subset', default=subset, help='hub config name (default: %(default)s)')
    p.add_argument('--revision', default=None, help='hub branch, tag or commit (e.g. refs/convert/parquet)')
    p.add_argument('--files', nargs='+', help='local files or globs instead of the hub: *.txt, *.jsonl, *.parquet')
    p.add_argument('--val_files', nargs='+', help='local files for the validation split (with --files)')
    p.add_argument('--txt_doc', choices=['file', 'paragraph', 'line'], default='file',
                   help='what one document of a .txt file is (default: %(default)s)')
    p.add_argument('--text_column', default='text')
    p.add_argument('--val_size', type=float, default=val_size,
                   help='held-out documents when the source has no validation split: fraction < 1 or count >= 1')
    p.add_argument('--seed', type=int, default=1337)
    p.add_argument('--streaming', action='store_true', help='stream the source instead of caching it on disk')
    p.add_argument('--num_proc', type=int, default=max(1, min(8, (os.cpu_count() or 2) // 2)))
    p.add_argument('--batch_size', type=int, default=1000, help='documents per tokenize/write batch')
    p.add_argument('--cache_dir', default=None, help="datasets' cache folder (default: HF_DATASETS_CACHE)")
    p.add_argument('--out_dir', default=out_dir)
    p.add_argument('--restart', action='store_true', help='ignore a half-written run and start clean')
    args = p.parse_args(argv)
    if args.val_files and not args.files:
        p.error('--val_files needs --files')
    if args.val_size < 0 or (args.val_size >= 1 and args.val_size != int(args.val_size)):
        p.error(f'--val_size must be a fraction in [0, 1) or a whole number of documents, got {args.val_size}')
    if args.num_proc < 1 or args.batch_size < 1:
        p.error('--num_proc and --batch_size must be >= 1')
    return args


def expand(patterns, flag):
    """Globs -> sorted file list of one kind; ValueError naming the flag if empty or mixed."""
    files = []
    for pat in patterns:
        hits = sorted(glob.glob(pat)) if glob.has_magic(pat) else ([pat] if os.path.isfile(pat) else [])
        if not hits:
            raise ValueError(f"{flag} {pat}: no such file")
        files += hits
    kinds = {EXTENSIONS.get(os.path.splitext(f)[1].lower()) for f in files}
    if None in kinds or len(kinds) != 1:
        raise ValueError(f"{flag}: files must all be one kind of .txt, .jsonl/.json or .parquet, got "
                         f"{sorted({os.path.splitext(f)[1] or f for f in files})}")
    return files, kinds.pop()


def load_source(args):
    """{'train': dataset, maybe 'validation': dataset}; Dataset, or IterableDataset if --streaming."""
    import datasets
    kw = dict(streaming=args.streaming, cache_dir=args.cache_dir)
    if not args.streaming:
        kw['num_proc'] = args.num_proc
    if args.files:
        files, kind = expand(args.files, '--files')
        data_files = {'train': files}
        if args.val_files:
            val_files, val_kind = expand(args.val_files, '--val_files')
            if val_kind != kind:
                raise ValueError('--val_files must be the same kind of file as --files')
            data_files['validation'] = val_files
        if kind == 'text':
            kw['sample_by'] = {'file': 'document'}.get(args.txt_doc, args.txt_doc)  # line: without its '\n'
        if not args.streaming:
            kw['num_proc'] = min(args.num_proc, len(files))  # loading parallelises over files only
        ds = datasets.load_dataset(kind, data_files=data_files, **kw)
    else:
        try:
            ds = datasets.load_dataset(args.dataset, name=args.subset, revision=args.revision, **kw)
        except Exception as e:  # offline, unknown name, network error: one line, not a traceback
            msg = ' '.join(str(e).split())[:300]
            if 'scripts are no longer supported' in msg:  # datasets>=4 runs no loading scripts
                sys.exit(f"error: {args.dataset!r} on the hub still needs a loading script, which datasets>=4 no "
                         f"longer runs; try --revision refs/convert/parquet (the hub's parquet export, possibly "
                         f"partial for a large dataset), pip install 'datasets<4', or local files with --files")
            sys.exit(f"error: could not load {args.dataset!r} from the Hugging Face hub ({type(e).__name__}: {msg}); "
                     f"offline? pass local files instead: --files 'path/*.txt' (or *.jsonl, *.parquet)")
    if 'train' not in ds:
        raise ValueError(f"{args.dataset or args.files} has no 'train' split (splits: {list(ds)})")
    names = ds['train'].column_names
    if names is not None and args.text_column not in names:
        raise ValueError(f"no column {args.text_column!r} in the data (columns: {names}); pick one with --text_column")
    return {k: ds[k] for k in ('train', 'validation') if k in ds}


def _unit_hash(idx, seed):
    """Deterministic uniform [0, 1) per document index (splitmix64), for streaming val picks."""
    # splitmix64 of the (idx+1)-th step of a seed-dependent state; uint64 arrays wrap around silently
    start = np.uint64(seed * 0xD1B54A32D192ED03 % 2**64)  # Python ints: no numpy scalar overflow warning
    x = start + (idx.astype(np.uint64) + np.uint64(1)) * np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    x = x ^ (x >> np.uint64(31))
    return (x >> np.uint64(11)).astype(np.float64) / 2.0**53


def val_picker(n_docs, val_size, seed):
    """A function: array of document indices -> bool mask, True = held out for val."""
    if n_docs is not None:  # known length: exactly k documents, drawn at random
        k = int(val_size) if val_size >= 1 else int(round(val_size * n_docs))
        if val_size > 0 and n_docs >= 2:
            k = max(k, 1)
        if k >= n_docs:
            raise ValueError(f"--val_size {val_size} holds out {k} of {n_docs} documents, leaving none to train on")
        mask = np.zeros(n_docs, dtype=bool)
        mask[np.random.default_rng(seed).choice(n_docs, size=k, replace=False)] = True
        return lambda idx: mask[idx]
    if val_size >= 1:  # streaming, unknown length: the first N documents
        return lambda idx: idx < int(val_size)
    return lambda idx: _unit_hash(idx, seed) < val_size


def tokenize(texts, num_threads=1):
    """Documents -> list of uint16 arrays, each ending with EOT; empty documents -> empty arrays."""
    import tiktoken
    enc = tiktoken.get_encoding('gpt2')
    ids = enc.encode_ordinary_batch(texts, num_threads=num_threads)
    return [np.array(t + [EOT], dtype=np.uint16) if text else np.zeros(0, np.uint16) for t, text in zip(ids, texts)]


def _map_tokenize(batch, text_column):
    return {'ids': tokenize(batch[text_column])}


def tokenize_cached(ds, args):
    """Without streaming: the whole dataset tokenized by a --num_proc map into datasets' disk cache
    (a rerun with the same input reuses it). Streaming datasets are tokenized batch by batch instead."""
    if args.streaming:
        return ds
    import datasets
    return ds.map(_map_tokenize, batched=True, batch_size=args.batch_size, num_proc=args.num_proc,
                  remove_columns=ds.column_names, fn_kwargs={'text_column': args.text_column},
                  features=datasets.Features({'ids': datasets.Sequence(datasets.Value('uint16'))}),
                  desc='tokenizing')


def batches(ds, args, start):
    """Yield (document indices, list of token arrays) for documents start.. of ds, in order.
    ds is a stream of text, or (no streaming) the output of tokenize_cached."""
    if args.streaming:
        i = start
        for batch in ds.skip(start).iter(batch_size=args.batch_size):
            if args.text_column not in batch:
                raise ValueError(f"no column {args.text_column!r} in the data (columns: {list(batch)}); "
                                 f"pick one with --text_column")
            toks = tokenize(batch[args.text_column], num_threads=args.num_proc)
            yield np.arange(i, i + len(toks)), toks
            i += len(toks)
        return
    tok = ds.with_format('arrow')
    for i in range(start, len(tok), args.batch_size):
        col = tok[i:i + args.batch_size]['ids'].combine_chunks()
        offsets = col.offsets.to_numpy()
        flat = col.values.to_numpy(zero_copy_only=False)
        yield np.arange(i, i + len(col)), [flat[a:b] for a, b in zip(offsets[:-1], offsets[1:])]


def num_docs(ds):
    """Number of documents, or None for a stream whose size the hub does not tell."""
    try:
        return len(ds)
    except TypeError:
        splits = getattr(ds.info, 'splits', None)
        return splits[ds.split].num_examples if splits and ds.split in splits else None


def load_state(path, key, tmp_paths):
    """The saved progress if it belongs to this run and the .tmp files hold at least that much."""
    try:
        with open(path) as f:
            state = json.load(f)
        if state['key'] == key and all(os.path.getsize(tmp_paths[s]) >= 2 * state['tokens'][s] for s in tmp_paths):
            return state
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def write_bins(sources, args, key):
    """Tokenize sources ({'train': ds, maybe 'validation': ds}) into out_dir/train.bin and val.bin."""
    from tqdm import tqdm
    os.makedirs(args.out_dir, exist_ok=True)
    final = {s: os.path.join(args.out_dir, f'{s}.bin') for s in ('train', 'val')}
    tmp = {s: p + '.tmp' for s, p in final.items()}
    state_path = os.path.join(args.out_dir, 'prepare_state.json')
    state = None if args.restart else load_state(state_path, key, tmp)
    if state is not None:
        print(f"resuming: {state['tokens']['train']:,} train and {state['tokens']['val']:,} val tokens already written")
    else:
        state = {'key': key, 'part': 0, 'docs': 0, 'tokens': {'train': 0, 'val': 0}}
        for p in tmp.values():
            open(p, 'wb').close()
    files = {}
    for s in tmp:  # cut anything written after the last recorded batch
        files[s] = open(tmp[s], 'r+b')
        files[s].truncate(2 * state['tokens'][s])
        files[s].seek(0, os.SEEK_END)

    parts = [('train', sources['train'])] + ([('val', sources['validation'])] if 'validation' in sources else [])
    for k, (split, ds) in enumerate(parts):
        if k < state['part']:
            continue
        n = num_docs(ds)
        if len(parts) == 2:  # the source's own split decides
            is_val = lambda idx, v=(split == 'val'): np.full(len(idx), v)
        else:
            is_val = val_picker(None if args.streaming else n, args.val_size, args.seed)
        start = state['docs'] if k == state['part'] else 0
        ds = tokenize_cached(ds, args)
        bar = tqdm(total=n, initial=start, unit='doc', desc=f'{split} docs' if len(parts) == 2 else 'docs')
        for idx, toks in batches(ds, args, start):
            mask = is_val(idx)
            for s, pick in (('train', ~mask), ('val', mask)):
                chunk = [t for t, m in zip(toks, pick) if m]
                if chunk:
                    arr = np.concatenate(chunk)
                    files[s].write(arr.tobytes())
                    state['tokens'][s] += len(arr)
            for f in files.values():
                f.flush()  # data reaches the OS before the state that vouches for it
            state.update(part=k, docs=int(idx[-1]) + 1 if len(idx) else state['docs'])
            save_json(state_path, state)
            bar.update(len(idx))
            bar.set_postfix(train_tok=f"{state['tokens']['train']:,}", val_tok=f"{state['tokens']['val']:,}")
        bar.close()
        state.update(part=k + 1, docs=0)
        save_json(state_path, state)
    for f in files.values():
        os.fsync(f.fileno())
        f.close()
    for s in ('train', 'val'):
        if state['tokens'][s] == 0:
            raise ValueError(f"no {s} tokens: the input has too few non-empty documents for a train/val split; "
                             f"add documents or change --val_size / --val_files")
    for s in tmp:
        os.replace(tmp[s], final[s])
    os.remove(state_path)
    return state['tokens']


def main(description, out_dir, dataset, subset=None, val_size=0.0005, argv=None):
    """Parse the command line and write train.bin / val.bin / meta.pkl; errors exit with one line."""
    args = parse_args(description, out_dir, dataset, subset, val_size, argv)
    import datasets
    import tiktoken
    import huggingface_hub
    # their warnings (e.g. a retry line per failed request) would bury our one-line errors
    datasets.logging.set_verbosity_error()
    huggingface_hub.utils.logging.set_verbosity_error()
    try:
        vocab_size = tiktoken.get_encoding('gpt2').n_vocab
    except Exception as e:  # its files are downloaded on first use
        sys.exit(f"error: could not load tiktoken's GPT-2 BPE ({type(e).__name__}); offline? set TIKTOKEN_CACHE_DIR to "
                 f"a folder holding its cached files (copied from a machine where tiktoken.get_encoding('gpt2') ran)")
    assert vocab_size < 2**16, 'GPT-2 token ids must fit np.uint16'
    # what the tokens depend on: a rerun with other values must not resume this run's .tmp files
    local = [[os.path.abspath(p) for p in args.files or []], [os.path.abspath(p) for p in args.val_files or []]]
    hub = [args.dataset, args.subset, args.revision] if not args.files else None
    key = json.dumps([local, hub, args.txt_doc, args.text_column, args.val_size, args.seed, args.streaming])
    try:
        tokens = write_bins(load_source(args), args, key)
    except ValueError as e:
        sys.exit(f"error: {' '.join(str(e).split())}")
    except OSError as e:  # network gone mid-stream, disk full, ...: the state file lets a rerun resume
        sys.exit(f"error: {type(e).__name__}: {' '.join(str(e).split())[:300]}; "
                 f"rerun the same command to resume where it stopped")

    def dump_meta(tmp):
        with open(tmp, 'wb') as f:
            pickle.dump({'vocab_size': vocab_size, 'tokenizer': 'gpt2'}, f)
    write_atomic(os.path.join(args.out_dir, 'meta.pkl'), dump_meta)
    print(f"wrote {args.out_dir}: train.bin {tokens['train']:,} tokens, val.bin {tokens['val']:,} tokens, meta.pkl")
