"""Tests of common.py: the task of a data folder, what each task's data fixes in the model, precision."""
import json
import pickle

import numpy as np
import torch

from common import gpt_args, resolve_dtype, save_json, save_npy, task_module, task_of
from model import GPT, GPTConfig


def model_args(data_dir, config):
    """As train.py builds them: the config's model keys, then what the task's data fixes."""
    task = task_module(task_of(data_dir))
    return task_of(data_dir), gpt_args(config, task, task.load(data_dir, config))


def test_each_data_format_decides_the_task_and_what_the_model_gets(tmp_path):
    metas = {'ctl': {'horizon': 15, 'n_features': 5, 'n_control': 1, 'name': 'double_integrator'},
             'arc': {'vocab_size': 12, 'seq_len': 900, 'augmentation': 'arc', 'num_puzzle_ids': 3,
                     'counts': {'train': 1, 'test': 1}},
             'chars': {'vocab_size': 65}, 'bpe': {'vocab_size': 50257, 'tokenizer': 'gpt2'}, 'none': None}
    for name, meta in metas.items():
        d = tmp_path / name
        d.mkdir()
        if name in ('ctl', 'arc'):
            save_json(str(d / 'meta.json'), meta)
        elif meta is not None:
            with open(d / 'meta.pkl', 'wb') as f:
                pickle.dump(meta, f)
        if name == 'ctl':
            for split in ('train', 'val', 'test'):
                for key, shape in (('features', (2, 15, 5)), ('targets', (2, 15, 1)), ('x0', (2, 2)),
                                   ('target', (2, 2)), ('opt_cost', (2,))):
                    save_npy(str(d / f'{split}_{key}.npy'), np.zeros(shape, np.float32))
        elif name == 'arc':
            for split in ('train', 'test'):
                save_npy(str(d / f'{split}_inputs.npy'), np.zeros((1, 900), np.uint8))
                save_npy(str(d / f'{split}_labels.npy'), np.zeros((1, 900), np.int16))
        else:
            for split in ('train', 'val'):
                np.zeros(100, np.uint16).tofile(d / f'{split}.bin')
    cfg = dict(n_layer=1, block_size=64, arc_n_aug=8, arc_eval_votes=8, learning_rate=1e-3)  # a non-model key is left out
    task, args = model_args(str(tmp_path / 'ctl'), cfg)
    assert task == 'control' and (args['block_size'], args['n_features'], args['n_outputs'], args['causal']) == (15, 5, 1, False)
    task, args = model_args(str(tmp_path / 'arc'), cfg)
    assert task == 'puzzle' and (args['vocab_size'], args['block_size'], args['num_puzzle_ids']) == (12, 900, 24)
    assert 'learning_rate' not in args and args['n_layer'] == 1
    assert model_args(str(tmp_path / 'chars'), cfg) == ('lm', dict(n_layer=1, block_size=64, vocab_size=65, causal=True))
    assert model_args(str(tmp_path / 'bpe'), cfg)[1]['vocab_size'] == 50304
    assert model_args(str(tmp_path / 'none'), cfg)[1]['vocab_size'] == 50304  # no meta: GPT-2
    GPT(GPTConfig(**model_args(str(tmp_path / 'ctl'), cfg)[1]))  # the arguments build a model


def test_dtype_is_kept_when_given_and_float32_where_nothing_faster_is_native():
    assert resolve_dtype('float16', 'cpu') == 'float16'
    assert resolve_dtype('', 'mps') == 'float32'
    native = torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported()
    assert resolve_dtype('', 'cpu') == ('bfloat16' if native else 'float32')


def test_missing_data_names_the_prepare_command_that_writes_it():
    from common import prepare_command
    assert prepare_command('shakespeare_char') == 'python data/shakespeare_char/prepare.py'
    assert prepare_command('control/pendulum') == 'python data/control/prepare.py --system=pendulum'
    assert prepare_command('sudoku_easy36') == 'python data/sudoku/prepare.py --out_dir=data/sudoku_easy36'
    assert 'prepare.py' in prepare_command('nothing_like_it')
