"""
The public puzzle sets the TRM paper trains on (Sudoku-Extreme, Maze-Hard) as their CSV files: train.csv and
test.csv with columns source, question, answer, rating. Read here for data/sudoku/prepare.py and
data/maze/prepare.py, which check the strings and turn them into their generator's tokens.

A hub dataset and a local folder holding the two files go through the same datasets.load_dataset call, so a
folder (e.g. the two files downloaded on another machine) works offline.
"""
import os

import numpy as np


def source_error(a, noun):
    """The one-line error of --source/--n_train/--subsample/--n_test that do not go together, or None.
    noun: what the script makes ('puzzles', 'mazes')."""
    if a.source != 'generated':
        if a.n_train is not None:
            return f"error: --n_train sizes a generated set; from a CSV source, --subsample=N picks N train {noun}"
        if (a.subsample is not None and a.subsample < 1) or (a.n_test is not None and a.n_test < 1):
            return "error: --subsample and --n_test must be positive integers"
    elif a.subsample is not None:
        return (f"error: --subsample picks from a CSV source's train (--source=hf or a folder); the generator "
                f"makes --n_train {noun}")
    return None


def provenance(a, hub_name, data):
    """meta.json's record of where a CSV-sourced set came from: source, the draw, the rows in the source."""
    return {'source': hub_name if a.source == 'hf' else os.path.abspath(a.source), 'subsample': a.subsample,
            'n_test': a.n_test, 'seed': a.seed, 'rows_in_source': {split: d['total'] for split, d in data.items()}}


def read_splits(source, hub_name, columns, subsample=None, n_test=None, seed=0):
    """{'train': {'rows': row numbers in the file, 'total': rows in the file, column: [str]}, 'test': ...}.
    source: 'hf' (the hub dataset hub_name) or a folder holding train.csv and test.csv. subsample / n_test:
    that many rows of train / test, drawn at random with seed (None: all), in file order. Every column is
    read as text. ValueError with one line on a missing file, column or row."""
    if source != 'hf':
        missing = [f for f in ('train.csv', 'test.csv') if not os.path.isfile(os.path.join(source, f))]
        if missing:
            raise ValueError(f"--source={source}: no {' or '.join(missing)} there; pass a folder holding train.csv "
                             f"and test.csv (columns {', '.join(columns)}), --source=hf or --source=generated")
    import datasets
    import huggingface_hub
    # progress bars and warnings (a line per retried request) on stderr would bury the one-line errors
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    huggingface_hub.utils.logging.set_verbosity_error()
    out = {}
    for k, (split, cap) in enumerate((('train', subsample), ('test', n_test))):
        try:  # a split at a time: one load of both would fail on their differing columns with a cryptic cast error
            # converters=str: an 81-digit Sudoku answer would otherwise be parsed as a (huge) integer;
            # na_filter=False: no string becomes NaN
            d = datasets.load_dataset(hub_name if source == 'hf' else source, data_files={split: f'{split}.csv'},
                                      split=split, converters={c: str for c in columns}, na_filter=False)
        except Exception as e:  # offline, a network error, a malformed file: one line, not a traceback
            msg = ' '.join(str(e).split())[:300]
            if source == 'hf':
                raise ValueError(f"could not load {hub_name!r} from the Hugging Face hub ({type(e).__name__}: "
                                 f"{msg}); offline? put its train.csv and test.csv in a folder and pass "
                                 f"--source=FOLDER") from None
            raise ValueError(f"could not read {os.path.join(source, split)}.csv ({type(e).__name__}: {msg})") from None
        missing = [c for c in columns if c not in d.column_names]
        if missing or len(d) == 0:
            what = f"no column {', '.join(map(repr, missing))} (columns: {d.column_names})" if missing else "no rows"
            raise ValueError(f"{split}.csv has {what}; the public layout is a header source,question,answer,rating "
                             f"and one puzzle per row")
        total, rows = len(d), np.arange(len(d))
        if cap is not None and cap < total:  # seeded, and a stream per split
            rows = np.sort(np.random.default_rng([seed, k]).choice(total, cap, replace=False))
            d = d.select(rows)
        out[split] = {'rows': rows, 'total': total, **d.select_columns(columns).to_dict()}
    return out
