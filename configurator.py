"""
nanoGPT-style configurator, with checks. In a script whose globals are its defaults (sample.py, bench.py):

    from configurator import from_command_line
    globals().update(from_command_line(globals()))

train.py's keys and defaults live in config/defaults.py (train_defaults()), so that bench.py, ablate.py and
the tests build a config exactly as train.py does.

    $ python train.py config/override_file.py --batch_size=32

Arguments without '--' are Python files executed over the current config;
'--key=value' arguments override single values (parsed as Python literals, plain
strings otherwise). A key the script does not know, or a value whose type does not
match the default's, raises ConfigError with one line naming the key.
"""
import ast
import difflib
import os
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
    see config/conservative_plain.py)."""
    scope = dict(config, __file__=path)
    with open(path) as f:
        exec(compile(f.read(), path, 'exec'), scope)
    return {k: v for k, v in scope.items() if not k.startswith('_') and isinstance(v, SIMPLE_TYPES)}


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



def from_command_line(defaults, *documented):
    """configure(defaults, sys.argv[1:]) for a script; a bad argument exits with its one-line error.
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
        return configure(defaults, sys.argv[1:])
    except ConfigError as e:
        sys.exit(f"error: {e}")
