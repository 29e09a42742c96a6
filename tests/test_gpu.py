"""What the CPU suite checks, on a CUDA GPU: `python -m pytest -m gpu` on a GPU machine. Training steps of
the default model, the plain baseline, an mlp_t puzzle model under the trm schedule and a control model in
bf16 and fp16 (with the grad scaler), eager and compiled; the KV cache against recomputation; torchrun with
NCCL (DDP and FSDP); a checkpoint written on the GPU sampled on the CPU. Skipped where CUDA is absent."""
import json
import os
import subprocess
import sys

import pytest
import torch

from conftest import ROOT, TINY, make_sudoku_data, run_train

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(),
                                                  reason="no CUDA GPU: run these on one with `python -m pytest -m gpu`")]

PUZZLE = ['--dataset=sudoku_tiny', '--batch_size=16', '--n_layer=1', '--n_head=2', '--n_kv_head=2', '--n_embd=32',
          '--n_loops=1', '--T_recursion=2', '--n_sup=3', '--schedule=trm', '--mixer=mlp_t', '--eval_iters=1']
CONTROL = ['--dataset=control/di', '--batch_size=64', '--n_layer=1', '--n_head=2', '--n_kv_head=2', '--n_embd=32',
           '--n_loops=1', '--T_recursion=1', '--n_sup=2', '--learning_rate=1e-2', '--eval_iters=2']
MODELS = {'default LM': [], 'plain LM': ['--recursion=False'], 'mlp_t puzzle, trm schedule': PUZZLE,
          'control': CONTROL}
RUNS = [(m, 'bfloat16', False) for m in MODELS] + [(m, 'float16', False) for m in MODELS] + \
       [('default LM', 'bfloat16', True), ('mlp_t puzzle, trm schedule', 'bfloat16', True)]


def train_losses(out_dir):
    """The last supervision step's loss at every train log (the trm schedule logs its one step as 'loss')."""
    with open(os.path.join(out_dir, 'metrics.jsonl')) as f:
        rows = [r for r in map(json.loads, f) if r['kind'] == 'train']
    key = 'loss' if 'loss' in rows[0] else max((k for k in rows[0] if k.startswith('loss_s')), key=lambda k: int(k[6:]))
    return [r[key] for r in rows]


@pytest.mark.parametrize('model,dtype,compiled', RUNS)
def test_training_steps_on_cuda_are_finite_and_falling(run_dir, model, dtype, compiled):
    if dtype == 'bfloat16' and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no native bf16")
    if model == 'mlp_t puzzle, trm schedule':
        make_sudoku_data(run_dir)
    if model == 'control':
        subprocess.run([sys.executable, os.path.join(ROOT, 'data', 'control', 'prepare.py'), '--system=double_integrator',
                        f'--out_dir={run_dir / "data" / "control" / "di"}', '--n_train=512', '--n_val=64',
                        '--n_test=64'], check=True, capture_output=True, timeout=300)
    run_train(run_dir, *MODELS[model], '--out_dir=out', '--device=cuda', f'--dtype={dtype}', f'--compile={compiled}',
              '--max_iters=60', '--lr_decay_iters=60', '--eval_interval=60', '--log_interval=10', '--warmup_iters=5')
    seen = train_losses(run_dir / 'out')
    assert len(seen) == 6 and all(torch.isfinite(torch.tensor(seen))), seen
    assert seen[-1] < seen[0], seen


def last(out):
    """decode's (logits [B, L, V], steps [B, L]) of the last new token."""
    return out[0][:, -1], out[1][:, -1]


def test_kv_cache_equals_recomputation_on_cuda():
    from generate import KVCache, decode
    from model import GPT, GPTConfig
    torch.manual_seed(0)
    m = GPT(GPTConfig(block_size=16, vocab_size=37, n_layer=2, n_head=4, n_kv_head=2, n_embd=32, n_loops=2,
                      T_recursion=2, n_sup=3)).cuda().eval()
    seq = torch.randint(0, 37, (2, 14), device='cuda')
    cache = KVCache()
    with torch.no_grad():
        logits, _ = last(decode(m, seq[:, :5], cache, 0, 3))
        for t in range(5, seq.size(1) + 1):
            ref = list(m.supervision_steps(seq[:, :t], n_sup=3))[-1][0][:, -1]
            torch.testing.assert_close(logits, ref, rtol=1e-4, atol=1e-4)  # fp32 (TF32 matmuls)
            if t < seq.size(1):
                logits, _ = last(decode(m, seq[:, t:t + 1], cache, t, 3))


@pytest.mark.parametrize('fsdp', [False, True])
def test_torchrun_with_nccl_trains_and_its_checkpoint_samples_on_the_cpu(run_dir, fsdp):
    proc = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=1',
                           os.path.join(ROOT, 'train.py'), *TINY, '--out_dir=out', '--max_iters=20',
                           '--eval_interval=20', f'--fsdp={fsdp}'],
                          cwd=run_dir, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, WANDB_MODE='disabled'))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'device cuda:0' in proc.stdout
    ckpt = torch.load(run_dir / 'out' / 'ckpt.pt', map_location='cpu', weights_only=True)
    assert ckpt['iter_num'] == 20
    out = subprocess.run([sys.executable, os.path.join(ROOT, 'sample.py'), '--out_dir=out', '--device=cpu',
                          '--num_samples=1', '--max_new_tokens=20'], cwd=run_dir, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0 and 'tokens/s' in out.stdout, out.stderr[-2000:]
