"""Tests of common.py: the task of a data folder, what each task's data fixes in the model, device and
precision, the memory a training step needs, atomic writes."""
import errno
import json
import os
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from common import (available_memory, check_memory, gpt_args, resolve_device, resolve_dtype, save_json, save_npy,
                    task_module, task_of, train_memory, write_atomic)
from model import GPT, GPTConfig, HaltedKV


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
    assert resolve_dtype('float32', 'cpu') == 'float32'
    assert resolve_dtype('float16', 'mps') == 'float16'
    with pytest.raises(ValueError, match="float16' on a CPU is emulated"):  # ~60x slower than float32
        resolve_dtype('float16', 'cpu')
    assert resolve_dtype('', 'mps') == 'float32'
    native = torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported()
    assert resolve_dtype('', 'cpu') == ('bfloat16' if native else 'float32')


def test_missing_data_names_the_prepare_command_that_writes_it():
    from common import prepare_command
    assert prepare_command('shakespeare_char') == 'python data/shakespeare_char/prepare.py'
    assert prepare_command('control/pendulum') == 'python data/control/prepare.py'
    assert prepare_command('sudoku_easy36') == 'python data/sudoku/prepare.py --out_dir=data/sudoku_easy36'
    assert 'prepare.py' in prepare_command('nothing_like_it')


def test_a_device_the_machine_lacks_is_one_line():
    missing = f'cuda:{torch.cuda.device_count()}' if torch.cuda.is_available() else 'cuda'
    with pytest.raises(ValueError, match='CUDA GPU'):
        resolve_device(missing)
    assert resolve_device('cpu') == ('cpu', 'cpu')


def saved_bytes(model, B, dtype, halt_train=False):
    """What one real supervision step keeps for backward (tensors autograd saves, weights excluded) plus
    the logits' gradient, which backward holds beside them; halt_train: and the keys/values of every
    attention site of this step and the previous one (model.HaltedKV)."""
    weights = {t.untyped_storage()._cdata for t in [*model.parameters(), *model.buffers()]}
    storages = {}

    def pack(t):
        if t.untyped_storage()._cdata not in weights:
            storages[t.untyped_storage()._cdata] = t.untyped_storage().nbytes()
        return t
    idx = torch.zeros(B, model.config.block_size, dtype=torch.long)
    autocast = lambda: torch.autocast('cpu', torch.bfloat16, enabled=dtype != 'float32')
    prev = sites = None
    if halt_train:
        with torch.no_grad(), autocast():
            model(idx, cache=(prev := HaltedKV()))
        sites = HaltedKV(torch.ones_like(idx, dtype=torch.bool), prev)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), autocast():
        logits = model(idx, cache=sites)[0]
        F.cross_entropy(logits.float().flatten(0, 1), idx.flatten())
    for t in [t for kv in (prev.kv + sites.kv if halt_train else []) for t in kv]:
        storages[t.untyped_storage()._cdata] = t.untyped_storage().nbytes()
    return sum(storages.values()) + logits.numel() * 4


@pytest.mark.parametrize('kw', [{}, dict(n_kv_head=4, n_head=8), dict(mlp='gelu', expansion=8.0),
                                dict(n_layer=3, n_loops=2, T_recursion=2, n_sup=4), dict(recursion=False),
                                dict(causal=False, mixer='mlp_t'), dict(trm_faithful=True), dict(vocab_size=50304),
                                dict(n_layer=3, n_loops=2, T_recursion=2, n_sup=4, halt_train=True),
                                dict(n_layer=3, n_loops=2, T_recursion=2, separate_nets=True),
                                dict(n_layer=3, n_loops=2, T_recursion=2, memory_slots=64, memory_read_y=True)])
@pytest.mark.parametrize('dtype', ['float32', 'bfloat16'])
def test_train_memory_is_what_a_real_step_keeps(kw, dtype):
    c = dict(block_size=64, vocab_size=16, n_layer=2, n_head=4, n_kv_head=2, n_embd=128, n_loops=1, T_recursion=1,
             n_sup=1)
    kw = dict(kw)
    halt_train = kw.pop('halt_train', False)
    model = GPT(GPTConfig(**{**c, **kw}))
    real = saved_bytes(model, 4, dtype, halt_train) + 16 * sum(p.numel() for p in model.parameters())
    assert 0.8 < train_memory(model, 4, dtype, use_ema=False, halt_train=halt_train) / real < 1.25


def test_a_step_that_cannot_fit_is_refused_before_anything_is_allocated():
    with torch.device('meta'):  # 1M positions x 8: ~380 GiB of activations, on no memory at all
        model = GPT(GPTConfig(block_size=1_000_000, vocab_size=65, n_layer=2, n_head=4, n_kv_head=2, n_embd=128))
    assert available_memory('cpu', 'cpu') > 0
    with pytest.raises(ValueError, match=r'needs ~\d+\.\d GiB .* lower batch_size'):
        check_memory(model, 8, 'float32', True, 'cpu', 'cpu')
    small = GPT(GPTConfig(block_size=64, vocab_size=65, n_layer=1, n_head=2, n_kv_head=2, n_embd=32))
    check_memory(small, 8, 'float32', True, 'cpu', 'cpu')  # fits: no error


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / 'f.json'
    save_json(str(path), {'a': 1})

    def full_disk(tmp):
        with open(tmp, 'w') as f:
            f.write('{"a": 2')  # half written, then the disk is full
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    with pytest.raises(OSError, match='No space left on device.*previous file is as it was'):
        write_atomic(str(path), full_disk)
    assert json.loads(path.read_text()) == {'a': 1} and os.listdir(tmp_path) == ['f.json']
