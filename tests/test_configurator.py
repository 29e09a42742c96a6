import pytest

from configurator import TRAIN_RULES, ConfigError, check, configure, train_defaults

DEFAULTS = {'batch_size': 12, 'learning_rate': 1e-3, 'compile': False, 'out_dir': 'out', 'device': '',
            'wandb_run_id': None, '_private': 1, 'np': pytest}  # the last two are not config keys


def test_file_then_overrides_in_order(tmp_path):
    cfg = tmp_path / 'cfg.py'
    cfg.write_text("batch_size = 64\nlearning_rate = 2 * 1e-3\nout_dir = 'out-' + str(batch_size)\n")
    got = configure(DEFAULTS, [str(cfg), '--batch_size=8', '--compile=True', '--device=cpu', '--learning_rate=1'])
    assert got == {'batch_size': 8, 'learning_rate': 1.0, 'compile': True, 'out_dir': 'out-64', 'device': 'cpu',
                   'wandb_run_id': None}
    assert isinstance(got['learning_rate'], float)


def test_string_values_stay_strings():
    assert configure(DEFAULTS, ['--out_dir=123'])['out_dir'] == '123'
    assert configure(DEFAULTS, ['--wandb_run_id=abc'])['wandb_run_id'] == 'abc'


@pytest.mark.parametrize('argv, needle', [
    (['--batch_sise=3'], "'batch_sise'"),
    (['--batch_size=3.5'], 'batch_size'),
    (['--batch_size=True'], 'batch_size'),
    (['--compile=1'], 'compile'),
    (['--batch_size'], '--key=value'),
    (['no/such/file.py'], 'not found'),
])
def test_bad_arguments_raise_one_line_naming_the_problem(argv, needle):
    with pytest.raises(ConfigError) as err:
        configure(DEFAULTS, argv)
    assert needle in str(err.value) and '\n' not in str(err.value)


def test_unknown_key_in_file(tmp_path):
    cfg = tmp_path / 'cfg.py'
    cfg.write_text("import math\nbatch_size = 4\nlearnig_rate = math.pi\n")
    with pytest.raises(ConfigError, match="unknown config key 'learnig_rate'"):
        configure(DEFAULTS, [str(cfg)])


def test_wrong_type_in_file(tmp_path):
    cfg = tmp_path / 'cfg.py'
    cfg.write_text("batch_size = '12'\n")
    with pytest.raises(ConfigError, match='batch_size'):
        configure(DEFAULTS, [str(cfg)])


def test_unknown_key_suggests_the_closest_known_ones_in_a_short_line():
    with pytest.raises(ConfigError) as e:
        configure(DEFAULTS, ['--batch_sise=3'])
    assert "did you mean 'batch_size'" in str(e.value) and len(str(e.value)) < 120
    with pytest.raises(ConfigError, match='config/defaults.py'):
        configure(DEFAULTS, ['--zzz=1'])


@pytest.mark.parametrize('script, key', [('train.py', 'n_sup = '), ('sample.py', 'temperature = '),
                                         ('solve.py', 'puzzle = '), ('bench.py', 'peak_n = ')])
def test_help_lists_the_keys_with_defaults_and_exits_0(tmp_path, script, key):
    import os
    import subprocess
    import sys
    from conftest import ROOT
    proc = subprocess.run([sys.executable, os.path.join(ROOT, script), '--help'], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0 and key in proc.stdout and f'usage: python {script}' in proc.stdout, proc.stderr
    assert not list(tmp_path.iterdir())  # nothing written


@pytest.mark.parametrize('key,value,needle', [
    ('max_iters', -3, 'max_iters=-3: must be >= 1 (to only evaluate'), ('eval_iters', -1, 'eval_iters=-1: must be >= 0'),
    ('dtype', 'int8', "dtype='int8': must be one of '', 'float32'"), ('device', 'gpu', "device='gpu': must be"),
    ('init_from', 'trm:', "init_from='trm:': must be"), ('beta2', 1.0, 'beta2=1.0: must be in [0, 1)'),
    ('learning_rate', 0.0, 'learning_rate=0.0: must be > 0'), ('batch_size', None, 'batch_size=None: must be >= 1'),
    ('grokfast_alpha', 1.0, 'grokfast_alpha=1.0: must be in [0, 1)'), ('grokfast_lamb', -1.0, 'grokfast_lamb=-1.0: must be >= 0'),
    ('early_stop_value', float('inf'), 'early_stop_value=inf: must be a finite number'),
    ('early_stop_mode', 'up', "early_stop_mode='up': must be one of '', 'max', 'min'"),
])
def test_train_rules_refuse_values_out_of_range_in_one_line(key, value, needle):
    config = train_defaults()
    check(config, TRAIN_RULES)  # the defaults pass
    with pytest.raises(ConfigError) as e:
        check({**config, key: value}, TRAIN_RULES)
    assert needle in str(e.value) and '\n' not in str(e.value)


def test_every_config_file_passes_the_rules():
    import glob
    import os
    from conftest import ROOT
    for path in glob.glob(os.path.join(ROOT, 'config', '*.py')):
        check(configure(train_defaults(), [path]), TRAIN_RULES)


def test_a_config_file_that_does_not_run_names_its_line(tmp_path):
    (tmp_path / 'bad.py').write_text("batch_size = 4\nn_layer = (\n")
    with pytest.raises(ConfigError, match=r"bad.py, line 2: '\(' was never closed"):
        configure(train_defaults(), [str(tmp_path / 'bad.py')])
    (tmp_path / 'name.py').write_text("batch_size = foo\n")
    with pytest.raises(ConfigError, match="name.py: NameError: name 'foo' is not defined"):
        configure(train_defaults(), [str(tmp_path / 'name.py')])
