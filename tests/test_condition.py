"""Conditioned initial states (condition.py): y/z inits from a frozen LM, built here offline from scratch."""
import json
import os
import subprocess
import sys

import pytest
import torch

from conftest import ROOT, make_sudoku_data, run_train
from model import GPT, GPTConfig
from puzzles import TOKEN_TEXT

CHARS = sorted(set(''.join(TOKEN_TEXT.values()) + ' \n'))


def frozen_ckpt(path):
    """A tiny char-level nanoTRM language model (untrained: the conditioning only needs its shapes and
    input dependence), saved as train.py saves one."""
    args = dict(vocab_size=len(CHARS), block_size=96, n_layer=1, n_head=2, n_kv_head=2, n_embd=24, n_sup=2,
                n_loops=1, T_recursion=1)
    torch.manual_seed(1)
    m = GPT(GPTConfig(**args))
    meta = {'vocab_size': len(CHARS), 'stoi': {c: i for i, c in enumerate(CHARS)}, 'itos': dict(enumerate(CHARS))}
    torch.save({'model_args': args, 'model': m.state_dict(), 'task': 'lm', 'meta': meta, 'config': {}}, path)
    return f'ckpt:{path}'


def frozen_hf(folder):
    """A tiny GPT-2 with a one-character-per-token tokenizer, saved as a Hugging Face folder."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast
    tok = Tokenizer(models.WordLevel({c: i for i, c in enumerate(CHARS)}, unk_token=' '))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex('.'), behavior='isolated')
    PreTrainedTokenizerFast(tokenizer_object=tok).save_pretrained(folder)
    torch.manual_seed(2)
    GPT2LMHeadModel(GPT2Config(vocab_size=len(CHARS), n_positions=96, n_embd=16, n_layer=1, n_head=2)).save_pretrained(folder)
    return f'hf:{folder}'


def sudoku_config(spec, **kw):
    return GPTConfig(**{**dict(vocab_size=11, block_size=81, causal=False, n_layer=1, n_head=2, n_kv_head=2, n_embd=32,
                               n_loops=1, T_recursion=2, n_sup=2, yz_init_from=spec, token_text=TOKEN_TEXT['sudoku']), **kw})


@pytest.fixture(params=['ckpt', 'hf'])
def spec(request, tmp_path):
    return frozen_ckpt(tmp_path / 'lm.pt') if request.param == 'ckpt' else frozen_hf(tmp_path / 'hf')


@pytest.mark.parametrize('pool', ['mean', 'attention'])
def test_inits_follow_the_input_and_learn_through_the_no_grad_cycles(spec, pool):
    torch.manual_seed(0)
    model = GPT(sudoku_config(spec, yz_init_pool=pool))
    # the frozen model is not the model's: not trained, saved or counted
    names = [n for n, _ in model.named_parameters()]
    assert sorted(n for n in names if n.startswith('cond.')) == \
        (['cond.pool_query'] if pool == 'attention' else []) + ['cond.proj.bias', 'cond.proj.weight']
    assert [k for k in model.state_dict() if k.startswith('cond.')] == [n for n in names if n.startswith('cond.')]
    idx = torch.randint(1, 11, (3, 81))
    idx[2] = idx[0]
    y0, z0 = model.initial_state(idx, 81)
    assert y0.shape == z0.shape == (3, 81, 32)
    assert torch.equal(y0[2], y0[0]) and not torch.allclose(y0[1], y0[0])  # per example, from its text
    assert torch.equal(y0[0, 0], y0[0, 5])                                  # one vector per example
    with torch.no_grad():  # a zero projection gives the fixed inits back
        model.cond.proj.weight.zero_()
        y_fixed, z_fixed = model.initial_state(idx, 81)
    assert torch.equal(y_fixed, model.yz_init[0].expand(3, 81, -1)) and torch.equal(z_fixed, model.yz_init[1].expand(3, 81, -1))

    model = GPT(sudoku_config(spec, yz_init_pool=pool))
    labels = torch.randint(1, 11, (3, 81))
    logits, _, y, z = model(idx)
    torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten()).backward()
    grad = model.cond.proj.weight.grad
    assert grad is not None and grad.abs().sum() > 0 and torch.isfinite(grad).all()  # T_recursion=2: straight through
    with torch.no_grad():  # ... and the values are those of starting from the same states without a graph
        y0, z0 = model.initial_state(idx, 81)
        same, _, _, _ = model(idx, y0, z0)
    assert torch.equal(same, logits.detach())

    # restart: the chosen rows start over from their own inits, the others go on from their states
    with torch.no_grad():
        restart = torch.tensor([True, False, True])
        mixed, _, _, _ = model(idx, y, z, restart=restart)
        fresh, _, _, _ = model(idx)
        going, _, _, _ = model(idx, y, z)
    assert torch.equal(mixed[restart], fresh[restart]) and torch.equal(mixed[~restart], going[~restart])


def test_bad_specs_are_one_clear_line(tmp_path):
    for spec, words in ((f'ckpt:{tmp_path}/none.pt', 'not found'), ('gguf:x', "expected 'ckpt:PATH'")):
        with pytest.raises(ValueError, match=words):
            GPT(sudoku_config(spec))
    with pytest.raises(ValueError, match='text form'):
        GPT(sudoku_config(frozen_ckpt(tmp_path / 'lm.pt'), token_text=''))
    with pytest.raises(ValueError, match='recursion=True'):
        GPT(sudoku_config(frozen_ckpt(tmp_path / 'lm.pt'), recursion=False))
    spec = frozen_ckpt(tmp_path / 'short.pt')
    with pytest.raises(ValueError, match='block_size >= 900'):
        GPT(sudoku_config(spec, vocab_size=6, block_size=900, token_text=TOKEN_TEXT['maze']))


CONDITIONED = ['--dataset=sudoku_tiny', '--batch_size=8', '--n_layer=1', '--n_head=2', '--n_kv_head=2', '--n_embd=32',
               '--n_loops=1', '--T_recursion=2', '--n_sup=3', '--eval_iters=1', '--log_interval=1', '--warmup_iters=2',
               '--compile=False', '--max_iters=6', '--lr_decay_iters=6', '--eval_interval=3', '--learning_rate=1e-2']


def test_a_conditioned_puzzle_run_trains_and_resumes_exactly(tmp_path):
    # the trm schedule: rows restart from their conditioned inits as others go on (the batch schedule: below)
    make_sudoku_data(tmp_path)
    spec = frozen_ckpt(tmp_path / 'lm.pt')
    common = [*CONDITIONED, f'--yz_init_from={spec}', '--schedule=trm', '--yz_init_pool=attention']
    run_train(tmp_path, '--out_dir=straight', *common)
    run_train(tmp_path, '--out_dir=split', *common, '--max_iters=3')
    run_train(tmp_path, '--out_dir=split', *common, '--init_from=resume')
    load = lambda d: torch.load(tmp_path / d / 'ckpt.pt', map_location='cpu', weights_only=True)
    a, b = load('straight'), load('split')
    assert a['iter_num'] == b['iter_num'] == 6 and a['model_args']['token_text'] == TOKEN_TEXT['sudoku']
    assert {'cond.proj.weight', 'cond.pool_query'} <= a['model'].keys()
    assert not any(k.startswith('cond.') and k not in ('cond.proj.weight', 'cond.proj.bias', 'cond.pool_query')
                   for k in a['model'])  # the frozen model is reloaded from its path, not saved
    init = GPT(GPTConfig(**a['model_args'])).state_dict()  # (the same seed: train.py's first weights)
    assert not torch.equal(a['model']['cond.proj.weight'], init['cond.proj.weight'])  # it learned
    for k in a['model']:
        assert torch.equal(a['model'][k], b['model'][k]), k
    # eval.py reads the checkpoint back, frozen model and all
    out = subprocess.run([sys.executable, os.path.join(ROOT, 'eval.py'), '--out_dir=straight', '--device=cpu',
                          '--json_path=e.json'], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.load(open(tmp_path / 'e.json'))


def test_torchrun_with_conditioning_matches_one_process(tmp_path):
    # only the steps that restart a row reach the conditioning: DDP must not wait for its gradient in the others
    make_sudoku_data(tmp_path)
    common = [*CONDITIONED, f'--yz_init_from={frozen_ckpt(tmp_path / "lm.pt")}', '--schedule=batch',
              '--max_iters=3', '--lr_decay_iters=3', '--batch_size=2', '--gradient_accumulation_steps=4', '--use_ema=False']
    run_train(tmp_path, '--out_dir=one', *common)
    proc = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2',
                           os.path.join(ROOT, 'train.py'), '--out_dir=two', *common], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300, env=dict(os.environ, WANDB_MODE='disabled', OMP_NUM_THREADS='1'))
    assert proc.returncode == 0, proc.stderr[-3000:]
    a = torch.load(tmp_path / 'one' / 'ckpt.pt', map_location='cpu', weights_only=True)['model']
    b = torch.load(tmp_path / 'two' / 'ckpt.pt', map_location='cpu', weights_only=True)['model']
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=k)
