"""The presets in config/: their sizes, one real training step each, and their baselines."""
import os

import pytest
import torch
import torch.nn.functional as F

from conftest import ROOT
from configurator import configure, train_defaults
from model import GPT, GPTConfig

# the presets' sizes: n_layer, n_embd, n_head, n_kv_head, n_loops, T_recursion, n_sup, block_size
SIZES = {'conservative': (12, 768, 12, 4, 3, 2, 8, 1024), 'balanced': (16, 1024, 16, 4, 4, 2, 8, 1024),
          'aggressive': (20, 1024, 16, 4, 4, 2, 12, 1024), 'cloud': (24, 1536, 16, 4, 4, 2, 12, 2048)}
KEYS = ('n_layer', 'n_embd', 'n_head', 'n_kv_head', 'n_loops', 'T_recursion', 'n_sup', 'block_size')


def preset(name, *overrides):
    """The config train.py would run for `python train.py config/<name>.py <overrides>`."""
    return configure(train_defaults(),
                     [os.path.join(ROOT, 'config', f'{name}.py'), *overrides])


def build(config, device=None):
    args = {k: config[k] for k in GPTConfig.keys() if k in config}
    with torch.device(device or 'cpu'):
        return GPT(GPTConfig(**dict(args, vocab_size=50304, causal=True)))


@pytest.mark.parametrize('name', SIZES)
def test_preset_has_design_sizes_and_trains_one_step(name):
    cfg = preset(name)
    assert tuple(cfg[k] for k in KEYS) == SIZES[name]
    assert cfg['dataset'] == 'openwebtext' and cfg['dtype'] == 'bfloat16' and cfg['compile']
    assert cfg['n_head'] % cfg['n_kv_head'] == 0 and cfg['n_embd'] % cfg['n_head'] == 0
    torch.manual_seed(0)
    # one step of the preset's blocks, widths and recursion; 2 of its layers and 16 positions keep it to seconds
    model = build(dict(cfg, n_layer=2, block_size=16))
    X, Y = torch.randint(0, 50257, (2, 1, 16))
    logits, q, y, z = model(X)  # one supervision step: the no-grad cycle, then the cycle with a graph
    loss = F.cross_entropy(logits.flatten(0, 1), Y.flatten())
    loss.backward()
    assert abs(loss.item() - torch.log(torch.tensor(50304.0)).item()) < 1.5  # near uniform at init
    for p in model.blocks.parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
    # the next supervision step starts from the detached states and stays finite
    logits2, _, _, _ = model(X, y, z)
    assert torch.isfinite(logits2).all()


@pytest.mark.parametrize('name', SIZES)
def test_plain_baseline_has_the_same_blocks(name):
    rec, plain = build(preset(name), 'meta'), build(preset(f'{name}_plain'), 'meta')
    assert not plain.config.recursion and plain.config.norm_position == 'pre'
    shapes = lambda m: [p.shape for p in m.blocks.parameters()]
    assert shapes(rec) == shapes(plain)


@pytest.mark.parametrize('name', SIZES)
def test_isoflop_baseline_spends_the_recursions_flops(name):
    rec, iso = preset(name), preset(f'{name}_isoflop')
    assert not iso['recursion'] and iso['n_embd'] == rec['n_embd'] and iso['n_layer'] > rec['n_layer']
    # FLOPs are affine in depth: read the iso-FLOP net's count off 1-, 2- and 3-layer copies (a 2000-layer
    # net takes a while to build, even on the meta device)
    f1, f2, f3 = (build(dict(iso, n_layer=n), 'meta').flops_per_token() for n in (1, 2, 3))
    assert f3 - f2 == f2 - f1
    iso_flops = f1 + (iso['n_layer'] - 1) * (f2 - f1)
    assert abs(iso_flops / build(rec, 'meta').flops_per_token() - 1) < 0.01


def test_readme_table_has_the_real_parameter_counts():
    import re
    readme = open(os.path.join(ROOT, 'README.md')).read()
    for name in SIZES:
        m = build(preset(name), 'meta')
        row = re.search(rf'^\| {name} \| ([\d.]+)M \| ([\d.]+)M \|', readme, re.M)
        assert row, f"no README row for {name}"
        assert float(row.group(1)) == round(m.get_num_params() / 1e6, 1)
        assert float(row.group(2)) == round(m.wte.weight.numel() / 1e6, 1)


# TinyRecursiveControl's small / medium / large: ~0.2M / ~0.8M / ~2M parameters
CONTROL_SIZES = {'control_small': 0.2e6, 'control': 0.8e6, 'control_large': 2e6}


def build_control(config, device=None, **overrides):
    """The control model train.py builds for the double integrator (5 features in, 1 control out, horizon 15)."""
    args = {k: config[k] for k in GPTConfig.keys() if k in config}
    with torch.device(device or 'cpu'):
        return GPT(GPTConfig(**dict(args, vocab_size=0, block_size=15, n_features=5, n_outputs=1, causal=False,
                                    **overrides)))


@pytest.mark.parametrize('name', CONTROL_SIZES)
def test_control_presets_have_trc_sizes(name):
    cfg = preset(name)
    assert cfg['dataset'] == 'control/double_integrator' and cfg['recursion']
    n = build_control(cfg, 'meta').get_num_params(non_embedding=False)
    assert 0.75 < n / CONTROL_SIZES[name] < 1.3, n


@pytest.mark.parametrize('switch', [dict(mlp='silu'), dict(mlp='swiglu', expansion=2.0), dict(norm='layernorm'),
                                    dict(norm_position='pre'), dict(learnable_inits=True, T_recursion=1)])
def test_control_trm_switches_train_and_stay_bounded(switch):
    # the switches TinyRecursiveControl ablates, each on the small preset with control I/O: one training
    # step reaches every block weight, and states stay bounded over many supervision steps
    torch.manual_seed(0)
    model = build_control(preset('control_small'), **switch)
    X, Y = torch.randn(4, 15, 5), torch.randn(4, 15, 1)
    u, q, y, z = model(X)
    assert u.shape == (4, 15, 1) and q is None  # the control presets run without a q-head (config/control.py)
    F.mse_loss(u, Y).backward()
    for name, p in model.named_parameters():
        if name.startswith('blocks.') or name == 'yz_init':
            assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    with torch.no_grad():
        for _ in range(16):
            u, q, y, z = model(X, y, z)
    assert torch.isfinite(u).all() and y.abs().max() < 100 and z.abs().max() < 100


def test_reasoning_preset_trains_and_scores_exact_match_past_its_steps(tmp_path):
    import json
    from conftest import make_reasoning_data, run_train
    make_reasoning_data(tmp_path, 'pointer')
    c = preset('reasoning')
    assert (c['dataset'], c['n_sup'], c['eval_n_sup'], c['use_ema']) == ('reasoning/pointer', 2, 4, False)
    run_train(tmp_path, os.path.join(ROOT, 'config', 'reasoning.py'), '--max_iters=2', '--eval_interval=2',
              '--eval_iters=1', '--out_dir=o')
    with open(tmp_path / 'o' / 'metrics.jsonl') as f:
        last = json.loads(f.readlines()[-1])
    assert all(0 <= last[f'{split}_exact_s{s}'] <= 1 for split in ('val', 'hard') for s in (1, 2, 3, 4)), last
