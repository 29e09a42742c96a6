"""
Prepare FineWeb-Edu (educational web pages) for GPT-2 BPE language modelling.

The default subset sample-10BT holds ~9.7M documents, ~10B GPT-2 tokens (~20 GB of .bin);
pick another with --subset (sample-100BT, sample-350BT, CC-MAIN-2024-10, ...). Writes
train.bin / val.bin (np.uint16 token ids, EOT 50256 after every document) and meta.pkl into
this folder, nanoGPT's format; 0.0005 of the documents are held out for val. Details and all
options: data/gpt2_bin.py, or --help.

    python data/fineweb_edu/prepare.py --streaming            # from the hub, nothing cached
    python data/fineweb_edu/prepare.py --num_proc=16          # from the hub, cached, parallel map
    python data/fineweb_edu/prepare.py --files 'shards/*.parquet'  # local files, offline
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import gpt2_bin  # noqa: E402

if __name__ == '__main__':
    gpt2_bin.main(__doc__, out_dir=HERE, dataset='HuggingFaceFW/fineweb-edu', subset='sample-10BT', val_size=0.0005)
