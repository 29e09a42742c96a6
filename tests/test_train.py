import json
import math
import os
import pickle
import shutil
import subprocess
import sys

import pytest
import torch

import checkpoint
import lm

from conftest import (ROOT, TINY, make_arc_data, make_char_data, make_reasoning_data, make_sudoku_data, one_line_error,
                      run_all, run_train)


def read_metrics(out_dir):
    with open(os.path.join(out_dir, 'metrics.jsonl')) as f:
        return [json.loads(line) for line in f]


def load(path):
    return torch.load(path, map_location='cpu', weights_only=True)


def test_tiny_model_overfits_and_later_steps_are_better(run_dir):
    # weights growing with the step (base 8) make the later steps the ones that count; with uniform
    # weights a tiny LM learns to answer at step 1 and gains nothing after it
    run_train(run_dir, '--out_dir=out', '--n_sup=3', '--n_loops=1', '--T_recursion=1', '--max_iters=150',
              '--lr_decay_iters=150', '--eval_interval=150', '--learning_rate=1e-2', '--min_lr=1e-3',
              '--n_embd=64', '--n_head=4', '--n_kv_head=2', '--use_ema=False', '--supervision_weight_base=8.0')
    evals = [r for r in read_metrics(run_dir / 'out') if r['kind'] == 'eval']
    first, last = evals[0], evals[-1]
    assert last['iter'] == 150
    assert last['train_loss_s3'] < 0.5 * first['train_loss_s3'], (first, last)
    # deep supervision: the answer improves from step to step
    assert last['train_loss_s3'] < last['train_loss_s1'] - 0.03, last
    assert 0.0 <= last['train_act_acc_s3'] <= 1.0


@pytest.mark.parametrize('extra', [[], ['--grokfast_lamb=2.0']])  # GrokFast: its gradient EMA is checkpointed too
def test_resume_gives_identical_weights(run_dir, extra):
    common = ['--max_iters=8', '--lr_decay_iters=8', '--eval_interval=4', '--dropout=0.1', '--n_sup=2', *extra]
    run_train(run_dir, '--out_dir=straight', *common)
    run_train(run_dir, '--out_dir=split', *common, '--max_iters=4')
    run_train(run_dir, '--out_dir=split', *common, '--init_from=resume')
    a, b = load(run_dir / 'straight' / 'ckpt.pt'), load(run_dir / 'split' / 'ckpt.pt')
    assert a['iter_num'] == b['iter_num'] == 8
    for k in a['model']:
        assert torch.equal(a['model'][k], b['model'][k]), k
        assert torch.equal(a['ema']['model'][k], b['ema']['model'][k]), k
    for sa, sb in zip(a['optimizer']['state'].values(), b['optimizer']['state'].values()):
        assert torch.equal(sa['exp_avg'], sb['exp_avg'])
    assert torch.equal(a['rng']['data'], b['rng']['data'])
    if extra:
        assert a['grokfast'].keys() == b['grokfast'].keys() and a['grokfast']
        assert all(torch.equal(a['grokfast'][n], b['grokfast'][n]) for n in a['grokfast'])
    else:
        assert a['grokfast'] is None
    # the resumed run appended to the same metrics log, and its losses are the straight run's
    trains = [{k: v for k, v in r.items() if k.startswith('loss')} | {'iter': r['iter']}
              for r in read_metrics(run_dir / 'split') if r['kind'] == 'train']
    assert [r['iter'] for r in trains] == list(range(1, 9))
    assert trains == [{k: v for k, v in r.items() if k.startswith('loss')} | {'iter': r['iter']}
                      for r in read_metrics(run_dir / 'straight') if r['kind'] == 'train']


@pytest.mark.parametrize('switch', [['--separate_nets=True'], ['--memory_slots=4', '--memory_read_y=True']])
def test_separate_nets_and_memory_train_and_resume_exactly(run_dir, switch):
    common = [*switch, '--max_iters=6', '--lr_decay_iters=6', '--eval_interval=3', '--n_sup=2', '--learning_rate=1e-2']
    run_train(run_dir, '--out_dir=straight', *common)
    run_train(run_dir, '--out_dir=split', *common, '--max_iters=3')
    half = load(run_dir / 'split' / 'ckpt.pt')
    run_train(run_dir, '--out_dir=split', *common, '--init_from=resume')
    a, b = load(run_dir / 'straight' / 'ckpt.pt'), load(run_dir / 'split' / 'ckpt.pt')
    assert a['iter_num'] == b['iter_num'] == 6
    parts = ('blocks', 'blocks_y') if a['model_args']['separate_nets'] else ('blocks', 'memory')
    assert a['model_args']['memory_slots'] == (0 if 'blocks_y' in parts else 4)
    parts = {s: [k for k in a['model'] if k.startswith(s + '.')] for s in parts}
    assert all(parts.values())
    for k in a['model']:
        assert torch.equal(a['model'][k], b['model'][k]), k
        assert torch.equal(a['ema']['model'][k], b['ema']['model'][k]), k
    for k in sum(parts.values(), []):  # both stacks (or the blocks and the memory) train
        assert not torch.equal(half['model'][k], b['model'][k]), k
    losses = [r['loss_s2'] for r in read_metrics(run_dir / 'straight') if r['kind'] == 'train']
    assert losses[-1] < losses[0], losses


def test_separate_nets_without_recursion_or_from_official_trm_is_one_line(run_dir):
    torch.save({}, run_dir / 'official.pt')
    cases = {'no recursion': (['--separate_nets=True', '--recursion=False'], "set recursion=True"),
             'official TRM': (['--separate_nets=True', '--trm_faithful=True', '--init_from=trm:official.pt'],
                              "one net (L_level) for both updates")}
    for name, proc in run_all(run_dir, cases, prefix=TINY).items():
        assert cases[name][1] in one_line_error(proc), name


def test_checkpoint_without_a_newer_model_key_resumes_with_its_default(run_dir):
    # a run written before a model key existed ran as its default does: resume compares it so
    common = ['--max_iters=3', '--lr_decay_iters=3', '--eval_interval=2']
    run_train(run_dir, '--out_dir=old', *common, '--max_iters=2')
    path = run_dir / 'old' / 'ckpt.pt'
    ckpt = load(path)
    del ckpt['model_args']['separate_nets']
    torch.save(ckpt, path)
    run_train(run_dir, '--out_dir=old', *common, '--init_from=resume')
    assert load(path)['iter_num'] == 3
    proc = run_train(run_dir, '--out_dir=old', *common, '--init_from=resume', '--max_iters=4', '--separate_nets=True',
                     check=False)
    assert 'separate_nets=True (checkpoint: False)' in one_line_error(proc)


def test_checkpoint_is_clean_and_holds_raw_and_ema_weights(run_dir):
    proc = run_train(run_dir, '--out_dir=out', '--max_iters=3', '--eval_interval=3')
    # the log says where the run is, and where it ended
    assert 'iter 2/3: loss' in proc.stdout and ', elapsed ' in proc.stdout and ', ETA ' in proc.stdout
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith('done: iter 3 in ') and 'out/ckpt.pt' in last and 'python sample.py --out_dir=out' in last
    ckpt = load(run_dir / 'out' / 'ckpt.pt')  # weights_only=True: plain tensors and containers only
    assert not any(k.startswith('_orig_mod.') for k in ckpt['model'])
    assert set(ckpt['model']) == set(ckpt['ema']['model'])
    assert ckpt['ema']['step'] == 3
    assert not any(torch.equal(ckpt['model'][k], ckpt['ema']['model'][k])
                   for k in ckpt['model'] if k.endswith('c_fc.weight'))
    assert os.path.exists(run_dir / 'out' / 'best.pt')
    assert not os.path.exists(run_dir / 'out' / 'ckpt.pt.tmp')
    assert ckpt['meta']['itos'][0] == '\n'  # the vocabulary travels with the model


def test_compile_runs_on_cpu_and_saves_without_prefix(run_dir):
    proc = run_train(run_dir, '--out_dir=out', '--max_iters=2', '--eval_interval=2', '--compile=True',
                     '--T_recursion=2', '--n_loops=2')  # no-grad cycles inside the compiled step
    assert 'compiling the training step' in proc.stdout
    ckpt = load(run_dir / 'out' / 'ckpt.pt')
    assert not any(k.startswith('_orig_mod.') for k in ckpt['model'])


def test_plain_baseline_config_runs(run_dir):
    cfg = os.path.join(ROOT, 'config', 'shakespeare_char_plain.py')
    proc = run_train(run_dir, cfg, '--dataset=tiny', '--out_dir=out', '--max_iters=2', '--eval_interval=2',
                     '--block_size=32', '--batch_size=4', '--n_layer=1')
    assert 'per supervision step: s1 ' in proc.stdout and 's2' not in proc.stdout
    assert load(run_dir / 'out' / 'ckpt.pt')['model_args']['recursion'] is False


def test_halt_train_changes_nothing_until_a_token_halts_and_resumes_exactly(run_dir):
    # act_loss_weight 0: the q-head keeps its initial "not yet" (sigmoid(-5)), so no token ever halts and
    # training under halting is training without it; the eval's halting answer is then the last step's
    common = ['--n_sup=2', '--max_iters=6', '--lr_decay_iters=6', '--eval_interval=3', '--use_ema=False']
    run_train(run_dir, '--out_dir=plain', *common, '--act_loss_weight=0')
    run_train(run_dir, '--out_dir=halting', *common, '--act_loss_weight=0', '--halt_train=True')
    plain, halting = read_metrics(run_dir / 'plain'), read_metrics(run_dir / 'halting')
    for a, b in zip(plain, halting):
        assert {k: v for k, v in a.items() if k not in ('time', 'tok_per_s', 'rss_mb')} == \
               {k: v for k, v in b.items() if k not in ('time', 'tok_per_s', 'rss_mb')}
    for r in (r for r in halting if r['kind'] == 'eval'):
        assert r['val_halt_step'] == 2.0 and r['val_loss_halt'] == r['val_loss_s2'] and r['val_halt_hist'] == [0, 1]
    # evals halt at halt_threshold: 0 halts every token after step 1, whatever q says
    run_train(run_dir, '--out_dir=plain', *common, '--init_from=resume', '--eval_only=True', '--halt_threshold=0.0')
    r = read_metrics(run_dir / 'plain')[-1]
    assert r['val_halt_step'] == 1.0 and r['val_loss_halt'] == r['val_loss_s1'], r
    # a random q-head (set after one iteration, then left as it is) that says "halt" for half the tokens,
    # and a learning rate too small to change that: tokens halt while training, and resume is exact
    # (exploration draws from the checkpointed RNG)
    common = [*common, '--act_loss_weight=0', '--halt_train=True', '--halt_exploration_prob=0.5',
              '--learning_rate=1e-5', '--min_lr=1e-6']
    run_train(run_dir, '--out_dir=start', *common, '--max_iters=1')
    ckpt = load(run_dir / 'start' / 'ckpt.pt')
    model, _ = checkpoint.load_model(run_dir / 'start' / 'ckpt.pt', use_ema=False)
    val = lm.load(str(run_dir / 'data' / 'tiny'), {'block_size': 32})
    with torch.no_grad():  # q halts the val tokens above the median after step 1
        model.q_head.weight.normal_(0, 1.0, generator=torch.Generator().manual_seed(0))
        model.q_head.bias.zero_()
        q = next(model.supervision_steps(lm.get_batch(val, 'val', torch.arange(8) * 4)[0]))[1]
        model.q_head.bias.fill_(-q.median())
    ckpt['model'].update({f'q_head.{k}': v for k, v in model.q_head.state_dict().items()})
    for name in ('straight', 'split'):
        (run_dir / name).mkdir()
        torch.save(ckpt, run_dir / name / 'ckpt.pt')
    run_train(run_dir, '--out_dir=straight', *common, '--init_from=resume')
    run_train(run_dir, '--out_dir=split', *common, '--init_from=resume', '--max_iters=3')
    run_train(run_dir, '--out_dir=split', *common, '--init_from=resume')
    a, b = load(run_dir / 'straight' / 'ckpt.pt'), load(run_dir / 'split' / 'ckpt.pt')
    for k in a['model']:
        assert torch.equal(a['model'][k], b['model'][k]), k
    for r in (r for r in read_metrics(run_dir / 'straight') if r['kind'] == 'eval'):
        assert 1.0 < r['val_halt_step'] < 2.0 and math.isfinite(r['val_loss_halt']), r


def test_reasoning_evals_score_exact_match_per_step_group_and_halting_and_scale_steps(run_dir):
    make_reasoning_data(run_dir, 'pointer')
    common = ['--dataset=reasoning/pointer', '--n_sup=2', '--max_iters=4', '--eval_interval=4', '--block_size=64']
    run_train(run_dir, '--out_dir=out', *common, '--eval_n_sup=3')
    r = read_metrics(run_dir / 'out')[-1]
    # exact match at every step evals run (3: one more than training's), at halting, per hop count
    for name in ('train', 'val', 'hard'):
        assert all(0 <= r[f'{name}_exact_s{s}'] <= 1 for s in (1, 2, 3)) and f'{name}_exact_halt' in r, r
    assert {k for k in r if k.startswith('val_exact_hops')} == {f'val_exact_hops{h}_{s}' for h in (1, 2)
                                                                for s in ('s1', 's2', 's3', 'halt')}
    assert 'hard_exact_hops3_s3' in r and 'hard_exact_hops4_halt' in r and 'val_exact_hops3_s1' not in r
    assert 1 <= r['val_halt_step_hops1'] <= 3 and 1 <= r['hard_halt_step_hops4'] <= 3  # per token group
    assert 'val_loss_s3' in r
    # the steps training ran score the same without the extra one
    run_train(run_dir, '--out_dir=out', *common, '--init_from=resume', '--eval_only=True')
    again = read_metrics(run_dir / 'out')[-1]
    assert 'val_loss_s3' not in again
    for k in ('val_loss_s1', 'val_loss_s2', 'val_exact_s2', 'hard_exact_s1', 'train_exact_s2'):
        assert again[k] == r[k], k


def test_random_n_sup_draws_the_steps_per_iteration_and_resumes_exactly(run_dir):
    common = ['--n_sup=2', '--random_n_sup=True', '--max_iters=12', '--lr_decay_iters=12', '--eval_interval=6']
    run_train(run_dir, '--out_dir=straight', *common)
    run_train(run_dir, '--out_dir=split', *common, '--max_iters=6')
    run_train(run_dir, '--out_dir=split', *common, '--init_from=resume')
    a, b = load(run_dir / 'straight' / 'ckpt.pt'), load(run_dir / 'split' / 'ckpt.pt')
    for k in a['model']:
        assert torch.equal(a['model'][k], b['model'][k]), k
    # each iteration ran 1..3 steps (2 * n_sup - 1), and logged the losses of those it ran
    ran = [sorted(k for k in r if k.startswith('loss_s')) for r in read_metrics(run_dir / 'straight') if r['kind'] == 'train']
    assert len(ran) == 12 and {len(keys) for keys in ran} == {1, 2, 3}, ran
    assert all(keys == [f'loss_s{s + 1}' for s in range(len(keys))] for keys in ran)


# ---------------------------------------------------------------- bad input: one line, nothing touched

CUDA = torch.cuda.is_available()
BAD_INPUT = {  # class of bad input: (train.py arguments after TINY, what its one line must say)
    'value out of range': (['--batch_size=0'], 'batch_size=0: must be >= 1'),
    'architecture': (['--n_layer=0'], 'n_layer=0: must be >= 1'),
    'unknown key': (['--n_layers=2'], "did you mean 'n_layer'"),
    'value of another type': (['--n_layer=2.5'], 'n_layer=2.5 has type float, expected int'),
    'config file that does not run': (['bad_config.py'], 'bad_config.py, line 2'),
    'device the machine lacks': ([f'--device=cuda:{torch.cuda.device_count()}' if CUDA else '--device=cuda'], 'CUDA GPU'),
    'dtype the device emulates': (['--device=cpu', '--dtype=float16'], "float16' on a CPU"),
    'step too big for memory': (['--batch_size=100000000'], 'GiB free'),
    'data too short for block_size': (['--block_size=100000'], 'too few for block_size=100000'),
    'data of odd length': (['--dataset=odd'], 'odd number of bytes'),
    'empty data': (['--dataset=empty'], 'has 0 tokens'),
    'char data without its vocabulary': (['--dataset=nometa'], 'no meta.pkl'),
    'missing data': (['--dataset=missing'], 'does not exist; prepare it first'),
    'out_dir that cannot be created': (['--out_dir=a_file/sub'], 'cannot create'),
    'out_dir that holds a run': (['--out_dir=run'], 'holds a run'),
    'resume without a checkpoint': (['--out_dir=none', '--init_from=resume'], "init_from='resume' but none/ckpt.pt"),
    'resume with nothing left to train': (['--out_dir=run', '--init_from=resume', '--max_iters=2'], 'nothing to train'),
    'resume with another architecture': (['--out_dir=run', '--init_from=resume', '--max_iters=4', '--block_size=16'],
                                         'block_size=16 (checkpoint: 32)'),
    'unreadable checkpoint': (['--out_dir=truncated', '--init_from=resume', '--max_iters=4'], 'cannot read truncated/ckpt.pt'),
    'halt_train without a per-token q-head': (['--halt_train=True', '--recursion=False'], 'halt_train=True halts tokens'),
    'random_n_sup with one step': (['--random_n_sup=True'], 'random_n_sup=True draws'),
    'answer mask of another length': (['--dataset=badmask'], 'train_mask.bin is missing or not one byte per token'),
    'full disk': (['--out_dir=full', '--init_from=resume', '--max_iters=3', '--eval_interval=3'], 'could not write'),
}


@pytest.fixture(scope='module')
def bad_input_runs(tmp_path_factory):
    """Every BAD_INPUT case, each its own train.py process (conftest.run_all), in a working
    directory holding a finished run in run/, bad data sets, a config with a syntax error, and copies of
    the run with a truncated checkpoint (truncated/) and on a full disk (full/: ckpt.pt.tmp leads to
    /dev/full, which fails every write with ENOSPC). Returns (cwd, {case: CompletedProcess},
    {path: bytes} of run/ and full/ before)."""
    cwd = tmp_path_factory.mktemp('bad_input')
    make_char_data(cwd)
    run_train(cwd, '--out_dir=run', '--max_iters=2', '--eval_interval=2')
    d = cwd / 'data'
    for name in ('odd', 'empty', 'nometa', 'badmask'):
        shutil.copytree(d / 'tiny', d / name)
    (d / 'badmask' / 'train_mask.bin').write_bytes(b'\1' * 10)
    with open(d / 'odd' / 'train.bin', 'ab') as f:
        f.write(b'\0')
    (d / 'empty' / 'train.bin').write_bytes(b'')
    (d / 'nometa' / 'meta.pkl').unlink()
    (cwd / 'bad_config.py').write_text("batch_size = 4\nn_layer = (\n")
    (cwd / 'a_file').write_text('not a folder')
    for name in ('truncated', 'full'):
        shutil.copytree(cwd / 'run', cwd / name)
    ckpt = cwd / 'truncated' / 'ckpt.pt'
    ckpt.write_bytes(ckpt.read_bytes()[:1000])
    os.symlink('/dev/full', cwd / 'full' / 'ckpt.pt.tmp')
    before = {p: p.read_bytes() for p in [*(cwd / 'run').iterdir(), *(cwd / 'full').iterdir()] if p.is_file()}
    done = run_all(cwd, BAD_INPUT, prefix=TINY)
    return cwd, done, before


@pytest.mark.parametrize('case', BAD_INPUT)
def test_bad_input_is_one_line_and_leaves_every_file_as_it_was(bad_input_runs, case):
    cwd, done, before = bad_input_runs
    proc, expected = done[case], BAD_INPUT[case][1]
    line = one_line_error(proc)
    assert line.startswith('error: ') and expected in line, line
    for path, content in before.items():  # the finished run (and the full disk's old checkpoint) byte for byte
        if path.name != 'metrics.jsonl' or path.parent.name == 'run':
            assert path.read_bytes() == content, path
    assert not (cwd / 'full' / 'ckpt.pt.tmp').exists()  # the partial write is gone


def test_a_fresh_run_replaces_a_run_only_with_overwrite(run_dir):
    run_train(run_dir, '--out_dir=out', '--max_iters=2', '--eval_interval=2')
    assert 'holds a run' in one_line_error(run_train(run_dir, '--out_dir=out', '--max_iters=1', check=False))
    run_train(run_dir, '--out_dir=out', '--max_iters=1', '--eval_interval=1', '--overwrite=True')
    assert [r['iter'] for r in read_metrics(run_dir / 'out') if r['kind'] == 'eval'] == [0, 1]  # the new run's only
    assert load(run_dir / 'out' / 'ckpt.pt')['iter_num'] == 1


def test_wandb_offline_run_is_written(run_dir, monkeypatch):
    monkeypatch.setenv('WANDB_MODE', 'offline')
    monkeypatch.setenv('WANDB_DIR', str(run_dir))
    run_train(run_dir, '--out_dir=out', '--max_iters=2', '--eval_interval=2', '--wandb_log=True')
    runs = list((run_dir / 'wandb').glob('offline-run-*'))
    assert len(runs) == 1 and list(runs[0].glob('*.wandb'))
    assert load(run_dir / 'out' / 'ckpt.pt')['wandb_run_id'] in runs[0].name


def test_sigterm_checkpoints_and_resume_matches_an_uninterrupted_run(run_dir):
    import signal
    import subprocess
    import sys
    from conftest import TINY
    common = ['--max_iters=300', '--lr_decay_iters=300', '--eval_interval=1000', '--dropout=0.1']
    run_train(run_dir, '--out_dir=straight', *common)
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, 'train.py'), *TINY, '--out_dir=split', *common],
                            cwd=run_dir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, WANDB_MODE='disabled', PYTHONUNBUFFERED='1'))
    for line in proc.stdout:  # wait until training is under way
        if line.startswith('iter 20/'):
            proc.send_signal(signal.SIGTERM)
            break
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert 'SIGTERM' in out and 'stopped at iter' in out
    k = load(run_dir / 'split' / 'ckpt.pt')['iter_num']
    assert 20 <= k < 300
    run_train(run_dir, '--out_dir=split', *common, '--init_from=resume')
    a, b = load(run_dir / 'straight' / 'ckpt.pt'), load(run_dir / 'split' / 'ckpt.pt')
    assert b['iter_num'] == 300
    assert all(torch.equal(a['model'][n], b['model'][n]) for n in a['model'])


def test_nonfinite_steps_are_skipped_and_stop_without_touching_the_checkpoint(run_dir):
    run_train(run_dir, '--out_dir=out', '--max_iters=4', '--eval_interval=4')
    before = (run_dir / 'out' / 'ckpt.pt').read_bytes()
    proc = run_train(run_dir, '--out_dir=out', '--init_from=resume', '--max_iters=100', '--eval_interval=1000',
                     '--learning_rate=1e30', '--warmup_iters=0', '--max_nonfinite_steps=3', check=False)
    assert 'step skipped (1 in a row)' in proc.stdout
    assert 'non-finite' in one_line_error(proc)
    assert (run_dir / 'out' / 'ckpt.pt').read_bytes() == before
    assert load(run_dir / 'out' / 'nonfinite.pt')['iter_num'] > 4


def torchrun(run_dir, *args):
    import subprocess
    import sys
    from conftest import TINY
    return subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2',
                           os.path.join(ROOT, 'train.py'), *TINY, *args],
                          cwd=run_dir, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, WANDB_MODE='disabled', OMP_NUM_THREADS='1'))


@pytest.mark.parametrize('fsdp', [False, True])
def test_torchrun_two_ranks_match_one_rank_with_twice_the_accumulation(run_dir, fsdp):
    common = ['--max_iters=3', '--lr_decay_iters=3', '--eval_interval=3', '--batch_size=2', '--n_sup=2',
              '--gradient_accumulation_steps=4', f'--use_ema={fsdp}']
    run_train(run_dir, '--out_dir=one', *common)
    proc = torchrun(run_dir, '--out_dir=two', f'--fsdp={fsdp}', *common)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert '2 x 2 micro-batches' in proc.stdout
    a, b = load(run_dir / 'one' / 'ckpt.pt'), load(run_dir / 'two' / 'ckpt.pt')
    assert a['iter_num'] == b['iter_num'] == 3
    for part in ['model'] + (['ema'] if fsdp else []):  # FSDP saves full tensors, gathered from the shards
        sa, sb = (a[part], b[part]) if part == 'model' else (a[part]['model'], b[part]['model'])
        assert sa.keys() == sb.keys()
        for k in sa:
            torch.testing.assert_close(sa[k], sb[k], rtol=1e-4, atol=1e-5)
    evals = [r for r in read_metrics(run_dir / 'two') if r['kind'] == 'eval']
    assert len(evals) == 2  # one writer: rank 0
    if fsdp:  # the sharded run's checkpoint resumes in a single process, and sample.py reads it
        run_train(run_dir, '--out_dir=two', '--init_from=resume', '--max_iters=4', '--lr_decay_iters=3',
                  '--eval_interval=4', '--batch_size=2', '--n_sup=2', '--gradient_accumulation_steps=4')
        assert load(run_dir / 'two' / 'ckpt.pt')['iter_num'] == 4
        import subprocess
        import sys
        out = subprocess.run([sys.executable, os.path.join(ROOT, 'sample.py'), '--out_dir=two', '--num_samples=1',
                              '--max_new_tokens=5', '--device=cpu'], cwd=run_dir, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr[-2000:]


def test_fsdp_with_separate_nets_and_memory_matches_ddp(run_dir):
    # the same ranks and summation order with the blocks of both stacks sharded and without (the memory in the
    # root unit): the same weights
    common = ['--separate_nets=True', '--memory_slots=4', '--memory_read_y=True', '--max_iters=3', '--lr_decay_iters=3',
              '--eval_interval=3', '--batch_size=2', '--n_sup=2', '--gradient_accumulation_steps=2', '--use_ema=False']
    for out_dir, fsdp in (('ddp', False), ('fsdp', True)):
        proc = torchrun(run_dir, f'--out_dir={out_dir}', f'--fsdp={fsdp}', *common)
        assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = load(run_dir / 'ddp' / 'ckpt.pt')['model'], load(run_dir / 'fsdp' / 'ckpt.pt')['model']
    assert a.keys() == b.keys() and any(k.startswith('blocks_y.') for k in a) and 'memory.keys' in a
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)


@pytest.mark.parametrize('fsdp', [False, True])
def test_grokfast_and_early_stop_under_torchrun_match_one_process(run_dir, fsdp):
    # GrokFast filters gradients already averaged over the ranks (DDP) or their shards (FSDP): 2 processes follow
    # 1; the early stop is decided by rank 0 for both ranks, at the eval where the target is reached
    common = ['--lr_decay_iters=3', '--eval_interval=3', '--batch_size=2', '--n_sup=2', '--gradient_accumulation_steps=4',
              '--use_ema=False', '--grokfast_lamb=2.0']
    run_train(run_dir, '--out_dir=one', *common, '--max_iters=3')
    first, last = [r['val_loss_s2'] for r in read_metrics(run_dir / 'one') if r['kind'] == 'eval']
    target = (first + last) / 2  # reached at iter 3, not at 0 (2 processes evaluate other batches: ~1% apart)
    proc = torchrun(run_dir, '--out_dir=two', f'--fsdp={fsdp}', *common, '--max_iters=6',
                    '--early_stop_metric=val_loss_s2', f'--early_stop_value={target}')
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count('early stop at iter 3: val_loss_s2') == 1, (first, last, proc.stdout[-2000:])
    a, b = load(run_dir / 'one' / 'ckpt.pt'), load(run_dir / 'two' / 'ckpt.pt')
    assert a['iter_num'] == b['iter_num'] == 3
    for part in ('model', 'grokfast'):  # FSDP saves full tensors, gathered from the shards
        assert a[part].keys() == b[part].keys() and a[part]
        for k in a[part]:
            torch.testing.assert_close(a[part][k], b[part][k], rtol=1e-4, atol=1e-5)
    if fsdp:  # the filter's state moves between process counts: FSDP -> 1 process, and 1 process -> FSDP
        shutil.copytree(run_dir / 'one', run_dir / 'one_fsdp')
        more = [*common, '--max_iters=4', '--init_from=resume']
        run_train(run_dir, '--out_dir=two', *more)
        proc = torchrun(run_dir, '--out_dir=one_fsdp', '--fsdp=True', *more)
        assert proc.returncode == 0, proc.stderr[-3000:]
        a, b = load(run_dir / 'two' / 'ckpt.pt'), load(run_dir / 'one_fsdp' / 'ckpt.pt')
        assert a['iter_num'] == b['iter_num'] == 4
        for part in ('model', 'grokfast'):
            for k in a[part]:
                torch.testing.assert_close(a[part][k], b[part][k], rtol=1e-4, atol=1e-5)


def test_grokfast_filters_the_accumulated_gradient_once_per_step(run_dir):
    # 2 micro-batches of 2 rows and 1 of 4 give the same gradient, so the same filtered one (filtering each
    # micro-batch's share would not); alpha 0.5: the EMA moves enough in 3 steps to tell
    common = ['--max_iters=3', '--lr_decay_iters=3', '--eval_interval=3', '--use_ema=False', '--dtype=float32',
              '--grokfast_lamb=2.0', '--grokfast_alpha=0.5']
    run_train(run_dir, '--out_dir=two', *common, '--batch_size=2', '--gradient_accumulation_steps=2')
    run_train(run_dir, '--out_dir=one', *common, '--batch_size=4')
    a, b = load(run_dir / 'two' / 'ckpt.pt'), load(run_dir / 'one' / 'ckpt.pt')
    for part in ('model', 'grokfast'):
        assert a[part].keys() == b[part].keys() and a[part]
        for k in a[part]:
            torch.testing.assert_close(a[part][k], b[part][k], rtol=1e-4, atol=1e-5)


def test_fsdp_needs_torchrun(run_dir):
    proc = run_train(run_dir, '--fsdp=True', check=False)
    assert proc.returncode != 0 and 'torchrun' in proc.stderr.strip().splitlines()[-1]


def test_default_accumulation_runs_under_torchrun_and_says_the_effective_batch(run_dir):
    proc = torchrun(run_dir, '--out_dir=two', '--max_iters=1', '--eval_iters=1')  # gradient_accumulation_steps=1
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'is 1 each: every step takes 2 micro-batches, not 1' in proc.stdout
    assert '2 x 1 micro-batches of 4 x 32' in proc.stdout


def test_sigkill_at_random_moments_never_leaves_a_broken_checkpoint(run_dir):
    import random
    import subprocess
    import sys
    import time
    from conftest import TINY
    rng = random.Random(0)
    args = [sys.executable, os.path.join(ROOT, 'train.py'), *TINY, '--out_dir=out', '--eval_interval=1',
            '--max_iters=100000', '--eval_iters=1']
    path = run_dir / 'out' / 'ckpt.pt'
    loaded = 0
    for attempt in range(6):  # bounded: a checkpoint is written every iteration, killed at random moments
        resume = ['--init_from=resume'] if path.exists() else []
        proc = subprocess.Popen(args + resume, cwd=run_dir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env=dict(os.environ, WANDB_MODE='disabled'))
        time.sleep(3.0 + rng.random() * 2.0)
        proc.kill()
        proc.wait()
        if path.exists():
            ckpt = load(path)  # must always load
            assert ckpt['iter_num'] >= 1
            loaded += 1
    assert loaded >= 4


PUZZLE = ['--dataset=sudoku_tiny', '--batch_size=16', '--n_layer=1', '--n_head=2', '--n_kv_head=2', '--n_embd=32',
          '--n_loops=1', '--T_recursion=2', '--n_sup=3', '--eval_iters=1', '--log_interval=1', '--warmup_iters=2',
          '--compile=False', '--max_iters=6', '--lr_decay_iters=6', '--eval_interval=6']


@pytest.mark.parametrize('args', [['--schedule=trm', '--mixer=mlp_t', '--loss=stablemax'],
                                  ['--schedule=batch', '--trm_faithful=True', '--puzzle_emb_ndim=32']])
def test_puzzle_training_reports_every_supervision_step(run_dir, args):
    import subprocess
    import sys
    make_sudoku_data(run_dir)
    proc = subprocess.run([sys.executable, os.path.join(ROOT, 'train.py'), *PUZZLE, '--out_dir=p', *args,
                           '--wandb_log=True'],  # offline: the eval rows, halting histogram (a list) included
                          cwd=run_dir, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, WANDB_MODE='offline', WANDB_DIR=str(run_dir)))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert list((run_dir / 'wandb').glob('offline-run-*/*.wandb'))
    evals = [r for r in read_metrics(run_dir / 'p') if r['kind'] == 'eval']
    assert [r['iter'] for r in evals] == [0, 6]
    for r in evals:  # eval runs exactly n_sup steps, and reports each
        assert {k for k in r if k.startswith('test_exact_s')} == {'test_exact_s1', 'test_exact_s2', 'test_exact_s3'}
        assert all(0 <= r[f'test_{m}_s{s}'] <= 1 for m in ('exact', 'cell', 'valid') for s in (1, 2, 3))
        assert 1 <= r['test_halt_step'] <= 3
        hist = r['test_halt_hist']  # share of puzzles halting at each step; its mean is the mean halting step
        assert len(hist) == 3 and abs(sum(hist) - 1) < 1e-6
        assert abs(sum((s + 1) * p for s, p in enumerate(hist)) - r['test_halt_step']) < 1e-5
    assert evals[1]['test_loss_s3'] < evals[0]['test_loss_s3']
    trains = [r for r in read_metrics(run_dir / 'p') if r['kind'] == 'train']
    assert len(trains) == 6 and all(math.isfinite(r.get('loss', r.get('loss_s3', float('nan')))) for r in trains)


def test_arc_eval_reports_pass_at_k_after_voting_at_every_step(run_dir):
    make_arc_data(run_dir)
    proc = run_train(run_dir, '--dataset=arc_tiny', '--out_dir=a', '--n_sup=2', '--n_loops=1', '--T_recursion=1',
                     '--batch_size=8', '--eval_only=True', '--eval_iters=1', '--arc_n_aug=16', '--arc_eval_votes=4',
                     '--puzzle_emb_ndim=32')
    assert 'test ARC pass@1 per step' in proc.stdout
    [r] = [r for r in read_metrics(run_dir / 'a') if r['kind'] == 'eval']
    for s in (1, 2):  # an untrained model: the numbers are 0, but every step reports them
        assert 0 <= r[f'test_pass@1_s{s}'] <= r[f'test_pass@2_s{s}'] <= 1
        assert 0 <= r[f'test_task_pass@1_s{s}'] <= r[f'test_task_pass@2_s{s}'] <= 1
    # and at the halting step: an untrained q-head never says "halt" (sigmoid(-5)), so that is step 2's answer
    assert 'at the halting step pass@1' in proc.stdout and r['test_halt_step'] == 2.0
    for k in ('pass@1', 'pass@2', 'task_pass@1', 'task_pass@2'):
        assert r[f'test_{k}_halt'] == r[f'test_{k}_s2']
    # halt_threshold 0 (sigmoid(q) > 0 always): every copy halts after step 1, so that is its answer
    run_train(run_dir, '--dataset=arc_tiny', '--out_dir=b', '--n_sup=2', '--n_loops=1', '--T_recursion=1',
              '--batch_size=8', '--eval_only=True', '--eval_iters=1', '--arc_n_aug=16', '--arc_eval_votes=4',
              '--puzzle_emb_ndim=32', '--halt_threshold=0.0')
    [r] = [r for r in read_metrics(run_dir / 'b') if r['kind'] == 'eval']
    assert r['test_halt_step'] == 1.0
    for k in ('pass@1', 'pass@2', 'task_pass@1', 'task_pass@2', 'exact', 'cell'):
        assert r[f'test_{k}_halt'] == r[f'test_{k}_s1']


def test_tiny_model_learns_a_tiny_sudoku_set(sudoku_run):
    evals = [r for r in read_metrics(sudoku_run / 'sudoku') if r['kind'] == 'eval']
    first, last = evals[0], evals[-1]
    assert first['test_exact_s2'] < 0.05  # untrained: no puzzle solved
    chance = 1 / 9  # the givens copied, the blank guessed
    assert last['test_exact_s2'] > 4 * chance, last  # measured: 0.73 (held-out puzzles)
    assert last['test_valid_s2'] >= last['test_exact_s2']  # an exact answer obeys the rules


def test_trm_schedule_with_one_supervision_step_trains(run_dir):
    # every row is done after its one step: no exploration draw of a minimum of 2..n_sup steps
    make_sudoku_data(run_dir)
    run_train(run_dir, *PUZZLE, '--out_dir=p', '--schedule=trm', '--mixer=mlp_t', '--n_sup=1')
    evals = [r for r in read_metrics(run_dir / 'p') if r['kind'] == 'eval']
    assert [r['iter'] for r in evals] == [0, 6] and 'test_exact_s1' in evals[1] and 'test_exact_s2' not in evals[1]
    for r in evals:  # one step: every puzzle halts at it, so the halted answer is step 1's
        assert r['test_halt_step'] == 1.0
        for k in ('exact', 'cell', 'valid', 'loss'):
            assert r[f'test_{k}_halt'] == r[f'test_{k}_s1']


def test_puzzle_recursion_off_trains_under_the_trm_schedule_setting(run_dir):
    # the plain baseline of a puzzle preset (schedule='trm'): one step, nothing to carry, so it trains per batch
    import subprocess
    import sys
    make_sudoku_data(run_dir)
    proc = subprocess.run([sys.executable, os.path.join(ROOT, 'train.py'), *PUZZLE, '--out_dir=p', '--schedule=trm',
                           '--mixer=mlp_t', '--recursion=False'], cwd=run_dir, capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, WANDB_MODE='disabled'))
    assert proc.returncode == 0, proc.stderr[-3000:]
    evals = [r for r in read_metrics(run_dir / 'p') if r['kind'] == 'eval']
    assert [r['iter'] for r in evals] == [0, 6] and 'test_exact_s1' in evals[1] and 'test_exact_s2' not in evals[1]


def test_memmap_reads_do_not_grow_rss(tmp_path):
    # a sparse 4 GiB train.bin (2^31 tokens, no disk used): a memmap kept open across batches would keep
    # every page it touched resident (+840 MiB after 300 batches of 64 here); train.py re-opens it per batch
    d = tmp_path / 'data' / 'big'
    d.mkdir(parents=True)
    for split, size in (('train', 4 * 2 ** 30), ('val', 2 ** 20)):
        with open(d / f'{split}.bin', 'wb') as f:
            f.truncate(size)
    with open(d / 'meta.pkl', 'wb') as f:
        pickle.dump({'vocab_size': 8}, f)
    run_train(tmp_path, '--dataset=big', '--out_dir=out', '--batch_size=64', '--block_size=32', '--n_embd=16',
              '--max_iters=200', '--eval_interval=1000', '--eval_iters=1', '--log_interval=25', '--use_ema=False')
    rss = [r['rss_mb'] for r in read_metrics(tmp_path / 'out') if r['kind'] == 'train']
    assert len(rss) == 8
    assert rss[-1] - rss[1] < 50, rss


def test_control_training_learns_the_double_integrator(control_run):
    # control_run (conftest): 300 iterations of a 1-layer, 32-wide recursive model, n_sup 2, seconds of CPU
    import numpy as np
    import control
    evals = [r for r in read_metrics(control_run / 'out') if r['kind'] == 'eval']
    assert [r['iter'] for r in evals] == [0, 150, 300]
    for r in evals:  # every metric of every split at every supervision step
        for split in ('train', 'val', 'test'):
            for s in (1, 2):
                for k in ('loss', 'control_mse', 'final_err', 'cost_ratio', 'cost_ratio_p95', 'success', 'act_acc'):
                    assert math.isfinite(r[f'{split}_{k}_s{s}']), (split, k, s)
                assert r[f'{split}_cost_ratio_p95_s{s}'] >= 1.0 - 1e-6 and r[f'{split}_cost_ratio_s{s}'] >= 1.0 - 1e-6
            assert r[f'{split}_opt_success'] == 1.0 and 1 <= r[f'{split}_halt_step'] <= 2
    val = control.load_split(str(control_run / 'data' / 'control' / 'di'), 'val')
    zero = control.metrics(val['system'], val['x0'], val['target'], np.zeros_like(val['targets']), val['targets'])
    first, last = evals[0], evals[-1]
    assert last['val_cost_ratio_s2'] < 0.1 * zero['cost_ratio'] < first['val_cost_ratio_s2']
    assert last['val_success_s2'] > 0.05 and last['val_final_err_s2'] < 0.5 * first['val_final_err_s2']
    # the recursion refines: the second supervision step beats the first (on the median cost ratio: the mean of
    # 256 rows follows a few outliers, and whether step 2 wins on it flips with the float summation order)
    for k in ('cost_ratio_median', 'control_mse'):
        assert last[f'val_{k}_s2'] < last[f'val_{k}_s1'], k
    ckpt = load(control_run / 'out' / 'ckpt.pt')
    assert ckpt['system']['name'] == 'double_integrator' and ckpt['model_args']['n_outputs'] == 1


def test_control_split_without_examples_is_one_clear_error(tmp_path):
    import subprocess
    import sys
    proc = subprocess.run([sys.executable, os.path.join(ROOT, 'data', 'control', 'prepare.py'), '--system=double_integrator',
                           f'--out_dir={tmp_path / "data" / "di"}', '--n_train=8', '--n_val=0', '--n_test=2'],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    proc = run_train(tmp_path, '--dataset=di', '--out_dir=out', check=False)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode != 0 and len(lines) == 1 and 'no val examples' in lines[0] and '--n_val=' in lines[0]


def test_control_trains_with_the_trm_schedule_and_rollout_loss(control_run):
    # one optimizer step per supervision step, (y, z) carried, halted rows refilled (no puzzle ids for control);
    # the loss adds the differentiable rollout cost
    from conftest import CONTROL
    run_train(control_run, *CONTROL, '--schedule=trm', '--out_dir=trm', '--max_iters=20', '--eval_interval=20',
              '--eval_iters=1', '--rollout_loss_weight=0.1')
    rows = read_metrics(control_run / 'trm')
    assert [r['iter'] for r in rows if r['kind'] == 'eval'] == [0, 20]
    assert all(math.isfinite(r['loss']) for r in rows if r['kind'] == 'train')
    assert rows[-1]['val_cost_ratio_s2'] < rows[0]['val_cost_ratio_s2']
    for r in (r for r in rows if r['kind'] == 'eval'):  # the answer at the halting step, scored as the steps are
        assert 1 <= r['val_halt_step'] <= 2 and 0 <= r['val_success_halt'] <= 1 and r['val_cost_ratio_halt'] > 0.99
        if r['val_halt_hist'][0] == 1.0:  # all halted at step 1: its answers
            assert r['val_cost_ratio_halt'] == r['val_cost_ratio_s1']


def test_control_trains_with_rollout_feedback_under_both_schedules(control_run):
    # the feedback columns widen the inputs (2n+1 + 1+m+3n); both schedules train and evaluate with them, and
    # solve.py rolls the checkpoint out feeding each step the previous one's rollout
    from conftest import CONTROL
    import control
    for schedule in ('batch', 'trm'):
        run_train(control_run, *CONTROL, f'--schedule={schedule}', f'--out_dir=fb_{schedule}', '--max_iters=30',
                  '--eval_interval=30', '--eval_iters=1', '--rollout_feedback=True')
        rows = read_metrics(control_run / f'fb_{schedule}')
        assert all(math.isfinite(r['loss']) for r in rows if r['kind'] == 'train')
        assert rows[-1]['val_cost_ratio_s2'] < rows[0]['val_cost_ratio_s2']
        ckpt = load(control_run / f'fb_{schedule}' / 'ckpt.pt')
        assert ckpt['model_args']['n_features'] == 5 + control.feedback_dims(control.make_system('double_integrator'))
    proc = subprocess.run([sys.executable, os.path.join(ROOT, 'solve.py'), '--out_dir=fb_trm', '--num_samples=2',
                           '--plot=fb.png'], cwd=control_run, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.split('mean cost ratio per supervision step: ')[1].splitlines()[0].split()) == 2
    # eval.py reads the checkpoint back with the feedback: the run's last numbers
    proc = subprocess.run([sys.executable, os.path.join(ROOT, 'eval.py'), '--out_dir=fb_trm', '--dtype=float32',
                           f'--json_path={control_run / "fb.json"}'], cwd=control_run, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    with open(control_run / 'fb.json') as f:
        got = json.load(f)['runs'][0]['metrics']
    last = [r for r in rows if r['kind'] == 'eval'][-1]
    for k in ('val_cost_ratio_s1', 'val_cost_ratio_s2', 'val_control_mse_s2', 'val_success_s2'):
        assert got[k] == pytest.approx(last[k], rel=1e-6), k


def test_rollout_feedback_is_refused_outside_control(run_dir):
    proc = run_train(run_dir, '--out_dir=fb', '--rollout_feedback=True', check=False)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode != 0 and len(lines) == 1 and 'rollout_feedback is for control data' in lines[0]


def test_max_seconds_stops_with_a_final_eval(run_dir):
    run_train(run_dir, '--out_dir=out', '--max_iters=1000000', '--eval_interval=1000000', '--max_seconds=2',
              '--warmup_iters=0')
    rows = read_metrics(run_dir / 'out')
    evals = [r for r in rows if r['kind'] == 'eval']
    assert evals[0]['iter'] == 0 and 0 < evals[-1]['iter'] < 1000000 and len(evals) == 2
    assert evals[-1]['time'] >= 2 and os.path.exists(run_dir / 'out' / 'ckpt.pt')
    lrs = [r['lr'] for r in rows if r['kind'] == 'train']  # the cosine spans the budget (3e-3 down to 3e-4)
    assert lrs == sorted(lrs, reverse=True) and 3e-4 <= lrs[-1] < 3e-3


def test_early_stop_at_a_target_checkpoints_and_stops(run_dir):
    common = ['--max_iters=24', '--lr_decay_iters=24', '--eval_interval=4', '--early_stop_metric=val_loss_s1']
    # a target never reached: the run goes to max_iters
    proc = run_train(run_dir, '--out_dir=full', *common, '--early_stop_value=0.0')
    rows = read_metrics(run_dir / 'full')
    evals = [r for r in rows if r['kind'] == 'eval']
    assert evals[-1]['iter'] == 24 and 'early stop' not in proc.stdout and {r['kind'] for r in rows} == {'eval', 'train'}
    # a target reached mid-run (the loss of the eval at iter 12): the first eval at or below it stops the run
    target = evals[3]['val_loss_s1']
    stop = next(r['iter'] for r in evals if r['val_loss_s1'] <= target)
    assert 0 < stop <= 12
    proc = run_train(run_dir, '--out_dir=early', *common, f'--early_stop_value={target!r}')
    assert f'early stop at iter {stop}: val_loss_s1 ' in proc.stdout and 'early/ckpt.pt saved' in proc.stdout
    rows = read_metrics(run_dir / 'early')
    assert max(r['iter'] for r in rows) == stop and rows[-2]['kind'] == 'eval'
    assert {k: v for k, v in rows[-1].items() if k != 'time'} == {
        'iter': stop, 'kind': 'early_stop', 'metric': 'val_loss_s1', 'value': rows[-2]['val_loss_s1'],
        'target': target, 'mode': 'min'}
    ckpt = run_dir / 'early' / 'ckpt.pt'
    assert load(ckpt)['iter_num'] == stop
    # resumed with its target, it evaluates at once and stops again, untrained
    before = ckpt.read_bytes()
    proc = run_train(run_dir, '--out_dir=early', *common, f'--early_stop_value={target!r}', '--init_from=resume')
    assert f'early stop at iter {stop}: ' in proc.stdout and 'nothing trained' in proc.stdout
    assert ckpt.read_bytes() == before and read_metrics(run_dir / 'early')[-1] | {'time': 0} == rows[-1] | {'time': 0}
    # a name the evals do not log: one line naming close ones, before anything is logged or saved
    log = (run_dir / 'early' / 'metrics.jsonl').read_bytes()
    proc = run_train(run_dir, '--out_dir=early', *common, '--early_stop_metric=val_los_s1', '--init_from=resume',
                     '--early_stop_value=3.0', check=False)
    line = one_line_error(proc)
    assert "early_stop_metric='val_los_s1'" in line and 'val_loss_s1' in line
    assert ckpt.read_bytes() == before and (run_dir / 'early' / 'metrics.jsonl').read_bytes() == log
    # not a loss: stops at >= (an accuracy of at least 0 is reached by the untrained model: nothing to save)
    proc = run_train(run_dir, '--out_dir=acc', *common, '--early_stop_metric=val_act_acc_s1')
    assert 'early stop at iter 0: val_act_acc_s1 ' in proc.stdout and ' >= 0, the target; nothing trained' in proc.stdout
    assert not (run_dir / 'acc' / 'ckpt.pt').exists()


def test_metrics_are_as_recorded(tmp_path):
    """Five short float32 runs (LM, Sudoku under the trm schedule, ARC with voting, control under both
    schedules) reproduce the metrics.jsonl values recorded in tests/recorded_runs.json: what a refactor of
    train.py, the model or a task module must not change. Recorded and reproduced bit for bit on one
    machine; the tolerance leaves room for another CPU's matmul kernels."""
    from recorded_runs import RECORD, differences, run_all
    got = run_all(str(tmp_path))
    with open(RECORD) as f:
        diff = differences(json.load(f), got, rel=1e-3)
    assert not diff, '\n'.join(diff[:20])
