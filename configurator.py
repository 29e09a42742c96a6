"""
nanoGPT-style configurator, with checks. In a script whose globals are its defaults (sample.py, bench.py):

    from configurator import from_command_line
    globals().update(from_command_line(globals()))

train.py's keys and defaults live in config/defaults.py (train_defaults()), so that bench.py, ablate.py and
the tests build a config exactly as train.py does.

    $ python train.py config/override_file.py --batch_size=32

Arguments without '--' are Python files executed over the current config;
'--key=value' arguments override single values (parsed as Python literals, plain
strings otherwise). A key the script does not know, a value whose type does not match
the default's, or one outside the range its script's RULES allow, raises ConfigError with one
line naming the key, the value and the fix.
"""
import ast
import difflib
import math
import os
import re
import sys

SIMPLE_TYPES = (bool, int, float, str, type(None))
DEFAULTS_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'config', 'defaults.py')  # train.py's keys


class ConfigError(ValueError):
    pass


def config_keys(namespace):
    """The configurable globals of a script: public names bound to simple values."""
    return [k for k, v in namespace.items() if not k.startswith('_') and isinstance(v, SIMPLE_TYPES)]


def closest(key, keys):
    """'; did you mean ...?' with the known keys nearest to a mistyped one (listing all would be ~100)."""
    near = difflib.get_close_matches(key, keys, n=3, cutoff=0.6)
    return f"; did you mean {' or '.join(map(repr, near))}?" if near else "; see config/defaults.py for the keys"


def check_type(key, value, default, where):
    if default is None or value is None:
        return value
    if isinstance(default, bool) or isinstance(value, bool):
        if isinstance(default, bool) and isinstance(value, bool):
            return value
    elif isinstance(default, float) and isinstance(value, (int, float)):
        return float(value)
    elif type(value) is type(default):
        return value
    raise ConfigError(f"{where}: {key}={value!r} has type {type(value).__name__}, "
                      f"expected {type(default).__name__} (default {default!r})")


def run_config_file(path, config):
    """The simple values a config file sets, executed over config (a config may build on another:
    see config/conservative_plain.py). A file that does not run is a ConfigError naming its line."""
    scope = dict(config, __file__=path)
    with open(path) as f:
        source = f.read()
    try:
        exec(compile(source, path, 'exec'), scope)
    except SyntaxError as e:
        raise ConfigError(f"{path}, line {e.lineno}: {e.msg}; config files are plain Python") from None
    except Exception as e:
        raise ConfigError(f"{path}: {type(e).__name__}: {e}") from None
    return {k: v for k, v in scope.items() if not k.startswith('_') and isinstance(v, SIMPLE_TYPES)}


# ----------------------------------------------------------------------------- ranges
# A rule is (test, what the value must be, the fix where that does not say it). Each script names its
# own: train.py's are TRAIN_RULES (config/defaults.py's keys; GPTConfig checks the model's); sample.py,
# solve.py and bench.py keep theirs beside their keys.

def at_least(lo, fix=''):
    return (lambda v: v >= lo), f">= {lo}", fix


def above(lo, fix=''):
    return (lambda v: v > lo), f"> {lo}", fix


def fraction(hi_open=False):
    """In [0, 1], or [0, 1) with hi_open."""
    return (lambda v: 0 <= v < 1 if hi_open else 0 <= v <= 1), "in [0, 1)" if hi_open else "in [0, 1]", ''


def one_of(*options):
    return (lambda v: v in options), "one of " + ", ".join(map(repr, options)), ''


def none_or(rule):
    test, must, fix = rule
    return (lambda v: v is None or test(v)), f"None or {must}", fix


DEVICE = ((lambda v: re.fullmatch(r'(cpu|mps|cuda(:\d+)?)?', v) is not None), "'', 'cpu', 'cuda', 'cuda:N' or 'mps'", '')
DTYPE = one_of('', 'float32', 'bfloat16', 'float16')
TRAIN_RULES = {
    'eval_interval': at_least(1), 'log_interval': at_least(1),
    'eval_iters': at_least(0, "batches per eval; 0 = the whole split"),
    'init_from': ((lambda v: v in ('scratch', 'resume') or (v.startswith('trm:') and len(v) > 4)),
                  "'scratch', 'resume' or 'trm:PATH'", ''),
    'batch_size': at_least(1), 'block_size': at_least(1), 'gradient_accumulation_steps': at_least(1),
    'supervision_weight_base': above(0), 'improvement_reward_scale': at_least(0), 'act_loss_weight': at_least(0),
    'loss': one_of('softmax', 'stablemax'), 'schedule': one_of('', 'batch', 'trm'),
    'halt_exploration_prob': fraction(), 'halt_threshold': fraction(), 'eval_n_sup': at_least(0, "0 = n_sup"), 'puzzle_emb_lr': at_least(0), 'puzzle_emb_weight_decay': at_least(0),
    'arc_n_aug': at_least(1), 'arc_eval_votes': at_least(1), 'arc_eval_pairs': at_least(0),
    'rollout_loss_weight': at_least(0), 'act_cost_tol': at_least(0),
    'learning_rate': above(0), 'weight_decay': at_least(0), 'grad_clip': at_least(0, "0 = no clipping"),
    'max_iters': at_least(1, "to only evaluate a checkpoint, use --init_from=resume --eval_only=True"),
    'max_seconds': at_least(0, "0 = no time budget"),
    'beta1': fraction(hi_open=True), 'beta2': fraction(hi_open=True),
    'warmup_iters': at_least(0), 'lr_decay_iters': at_least(1), 'min_lr': at_least(0),
    'ema_decay': fraction(), 'max_nonfinite_steps': at_least(1), 'device': DEVICE, 'dtype': DTYPE,
    'grokfast_alpha': fraction(hi_open=True), 'grokfast_lamb': at_least(0, "0 = off; the paper's: 2.0"),
    'early_stop_value': ((lambda v: math.isfinite(v)), "a finite number", ''),
    'early_stop_mode': one_of('', 'max', 'min'),
}


def check(config, rules):
    """ConfigError with one line for the first value outside its rule."""
    for key, (test, must, fix) in rules.items():
        if key not in config:
            continue
        try:
            ok = test(config[key])
        except TypeError:  # None where a number is expected
            ok = False
        if not ok:
            raise ConfigError(f"{key}={config[key]!r}: must be {must}" + (f" ({fix})" if fix else ''))


def train_defaults():
    """train.py's config keys and their defaults: config/defaults.py (bench.py, ablate.py and the tests
    build configs exactly as train.py does)."""
    return run_config_file(DEFAULTS_FILE, {})


def configure(namespace, argv):
    """Return {key: value} for every config key, after applying argv in order."""
    keys = config_keys(namespace)
    config = {k: namespace[k] for k in keys}
    for arg in argv:
        if not arg.startswith('--'):
            if not os.path.isfile(arg):
                raise ConfigError(f"config file {arg!r} not found (expected e.g. config/shakespeare_char.py)")
            for key, value in run_config_file(arg, config).items():
                if key not in config:
                    raise ConfigError(f"{arg}: unknown config key {key!r}{closest(key, keys)}")
                config[key] = check_type(key, value, namespace[key], arg)
        else:
            key, sep, text = arg[2:].partition('=')
            if not sep:
                raise ConfigError(f"argument {arg!r} must look like --key=value")
            if key not in config:
                raise ConfigError(f"unknown config key {key!r} in {arg!r}{closest(key, keys)}")
            try:
                value = ast.literal_eval(text)
            except (SyntaxError, ValueError):
                value = text  # a bare string, e.g. --device=cpu
            if isinstance(namespace[key], str) and not isinstance(value, str):
                value = text  # --out_dir=123 stays a string
            config[key] = check_type(key, value, namespace[key], arg)
    return config


def from_command_line(defaults, *documented, rules=()):
    """configure(defaults, sys.argv[1:]) for a script, checked against its `rules`; a bad
    argument exits with its one-line error.
    --help (or -h) prints the config blocks of the `documented` files (the lines between their first
    two '# ----' rules, or a whole config file): every key with its default and comment, then exits 0."""
    if {'--help', '-h'} & set(sys.argv[1:]):
        for path in documented:
            with open(path) as f:
                lines = f.read().splitlines()
            rules = [i for i, line in enumerate(lines) if line.startswith('# ----')]
            print('\n'.join(lines[rules[0] + 1:rules[1]] if len(rules) >= 2 else lines))
        print(f"usage: python {os.path.basename(sys.argv[0])} [config/file.py ...] [--key=value ...]")
        sys.exit(0)
    try:
        config = configure(defaults, sys.argv[1:])
        check(config, dict(rules))
        return config
    except ConfigError as e:
        sys.exit(f"error: {e}")
