"""
Prepare TinyStories (~2.1M short stories written by GPT-3.5/4) for GPT-2 BPE language modelling.

The hub dataset has its own validation split (~22k stories), used as val.bin. Writes
train.bin / val.bin (np.uint16 token ids, EOT 50256 after every story) and meta.pkl into this
folder, nanoGPT's format. With local --files and no --val_files, 0.01 of the stories are held
out instead. Details and all options: data/gpt2_bin.py, or --help.

    python data/tinystories/prepare.py
    python data/tinystories/prepare.py --files 'train/*.parquet' --val_files 'valid/*.parquet'
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import gpt2_bin  # noqa: E402

if __name__ == '__main__':
    gpt2_bin.main(__doc__, out_dir=HERE, dataset='roneneldan/TinyStories', val_size=0.01)
