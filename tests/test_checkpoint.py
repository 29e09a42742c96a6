"""Tests of checkpoint.py: the official TRM name map, reading back what was written, old checkpoints."""
import os

import pytest
import torch

import checkpoint
from checkpoint import from_official_trm
from model import GPT, GPTConfig


def test_official_trm_names_map_and_mismatches_are_named():
    cfg = GPTConfig(block_size=9, vocab_size=11, n_layer=2, n_head=2, n_kv_head=2, n_embd=16, causal=False,
                    trm_faithful=True, puzzle_emb_ndim=16, n_loops=1, T_recursion=1, n_sup=2)
    m = GPT(cfg)
    sd = m.state_dict()
    rename = {'wte.weight': 'embed_tokens.embedding_weight', 'puzzle_emb.weight': 'puzzle_emb.weights'}
    official = {}
    for k, v in sd.items():
        if k == 'yz_init':
            official['_orig_mod.model.inner.H_init'], official['_orig_mod.model.inner.L_init'] = v[0], v[1]
            continue
        name = rename.get(k, k).replace('blocks.', 'L_level.layers.').replace('attn.c_attn', 'self_attn.qkv_proj')
        name = name.replace('attn.c_proj', 'self_attn.o_proj').replace('mlp.c_fc', 'mlp.gate_up_proj')
        official['_orig_mod.model.inner.' + name.replace('mlp.c_proj', 'mlp.down_proj')] = v.clone()
    mapped = from_official_trm(official, m)
    assert mapped.keys() == sd.keys() and all(torch.equal(mapped[k], sd[k]) for k in sd)
    assert m.q_head.out_features == 2  # halt and continue logits, as the official q-head
    bad = dict(official, **{'_orig_mod.model.inner.extra.weight': torch.zeros(1)})
    bad['_orig_mod.model.inner.lm_head.weight'] = torch.zeros(3, 16)
    with pytest.raises(ValueError, match=r'unmapped extra.weight.*lm_head.weight: official \(3, 16\)'):
        from_official_trm(bad, m)


def test_official_trm_has_no_second_stack_for_separate_nets():
    # the official trm.py updates both states with one L_level: a separate_nets model has no official weights
    m = GPT(GPTConfig(block_size=9, vocab_size=11, n_layer=1, n_head=2, n_kv_head=2, n_embd=16, causal=False,
                      trm_faithful=True, separate_nets=True))
    with pytest.raises(ValueError, match=r"one net \(L_level\) for both updates.*separate_nets=True"):
        from_official_trm({}, m)


def test_official_trm_has_no_memory():
    m = GPT(GPTConfig(block_size=9, vocab_size=11, n_layer=1, n_head=2, n_kv_head=2, n_embd=16, causal=False,
                      trm_faithful=True, memory_slots=4))
    with pytest.raises(ValueError, match=r"no memory: no weights for memory_slots > 0"):
        from_official_trm({}, m)


def test_separate_nets_checkpoint_reads_back_both_stacks(tmp_path):
    torch.manual_seed(0)
    args = {'block_size': 8, 'vocab_size': 11, 'n_layer': 2, 'n_head': 2, 'n_kv_head': 2, 'n_embd': 16,
            'separate_nets': True}
    m = GPT(GPTConfig(**args))
    path = str(tmp_path / 'ckpt.pt')
    assert checkpoint.save({'model': m.state_dict(), 'ema': None, 'model_args': args, 'config': {}, 'task': 'lm'}, path)
    loaded, _ = checkpoint.load_model(path)
    assert sum(k.startswith('blocks_y.') for k in loaded.state_dict()) == sum(k.startswith('blocks.') for k in m.state_dict())
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in m.state_dict().items())
    idx = torch.randint(0, 11, (1, 8))
    assert torch.equal(loaded(idx)[0], m.eval()(idx)[0])


def test_written_checkpoints_read_back_and_old_ones_get_their_task(tmp_path):
    torch.manual_seed(0)
    m = GPT(GPTConfig(block_size=8, vocab_size=11, n_layer=1, n_head=2, n_kv_head=2, n_embd=16))
    ckpt = {'model': m.state_dict(), 'ema': None, 'model_args': {'block_size': 8, 'vocab_size': 11, 'n_layer': 1,
            'n_head': 2, 'n_kv_head': 2, 'n_embd': 16}, 'config': {}}
    path = str(tmp_path / 'ckpt.pt')
    assert checkpoint.save(ckpt, path)  # no 'task': as written before checkpoints recorded it
    loaded, read = checkpoint.load_model(path)
    assert read['task'] == 'lm' and all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), m.state_dict().values()))
    ckpt['model_args'].update(causal=False)
    checkpoint.save(ckpt, path)
    assert checkpoint.read(path)['task'] == 'puzzle'


def test_non_finite_weights_are_not_written_and_bad_files_are_one_line(tmp_path):
    path = str(tmp_path / 'ckpt.pt')
    assert checkpoint.save({'model': {'w': torch.ones(2)}}, path)
    assert not checkpoint.save({'model': {'w': torch.tensor([1.0, float('nan')])}}, path)
    assert torch.equal(torch.load(path)['model']['w'], torch.ones(2))  # the previous one stays
    (tmp_path / 'bad.pt').write_bytes(b'not a checkpoint')
    with pytest.raises(ValueError, match='cannot read'):
        checkpoint.read(str(tmp_path / 'bad.pt'))
    with pytest.raises(FileNotFoundError, match='train first'):
        checkpoint.read(str(tmp_path / 'none.pt'))
    checkpoint.link_best(str(tmp_path))
    assert os.path.samefile(tmp_path / 'best.pt', path) or (tmp_path / 'best.pt').read_bytes() == open(path, 'rb').read()
