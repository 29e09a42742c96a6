"""
Prepare OpenWebText (~8M web documents, ~9B GPT-2 tokens) for GPT-2 BPE language modelling.

Writes train.bin / val.bin (np.uint16 token ids, EOT 50256 after every document) and meta.pkl
into this folder, nanoGPT's format. 0.0005 of the documents (~4k) are held out for val, as in
nanoGPT. Details and all options: data/gpt2_bin.py, or --help.

    python data/openwebtext/prepare.py                      # from the hub, cached, --num_proc map
    python data/openwebtext/prepare.py --streaming          # from the hub, nothing cached
    python data/openwebtext/prepare.py --files 'my/*.jsonl' # local files, offline
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import gpt2_bin  # noqa: E402

if __name__ == '__main__':
    gpt2_bin.main(__doc__, out_dir=HERE, dataset='Skylion007/openwebtext', val_size=0.0005)
