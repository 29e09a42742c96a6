"""
nanoGPT-style configurator, with checks. In a script whose globals are its defaults:

    from configurator import configure
    globals().update(configure(globals(), sys.argv[1:]))

    $ python train.py config/override_file.py --batch_size=32

Arguments without '--' are Python files executed over the current config;
'--key=value' arguments override single values (parsed as Python literals, plain
strings otherwise). A key the script does not know, or a value whose type does not
match the default's, raises ConfigError with one line naming the key.
"""
import ast
import os

SIMPLE_TYPES = (bool, int, float, str, type(None))


class ConfigError(ValueError):
    pass


def config_keys(namespace):
    """The configurable globals of a script: public names bound to simple values."""
    return [k for k, v in namespace.items() if not k.startswith('_') and isinstance(v, SIMPLE_TYPES)]


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


def script_defaults(path):
    """The defaults of a script like train.py without running it: the literal top-level assignments
    before its configure() call. Lets bench.py and tests read presets exactly as train.py would."""
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    defaults = {}
    for node in tree.body:
        if 'configure(' in ast.unparse(node):
            break
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                defaults[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                pass
    return defaults


def configure(namespace, argv):
    """Return {key: value} for every config key, after applying argv in order."""
    keys = config_keys(namespace)
    config = {k: namespace[k] for k in keys}
    for arg in argv:
        if not arg.startswith('--'):
            if not os.path.isfile(arg):
                raise ConfigError(f"config file {arg!r} not found (expected e.g. config/shakespeare_char.py)")
            scope = dict(config, __file__=arg)  # a config may build on another: see config/conservative_plain.py
            with open(arg) as f:
                exec(compile(f.read(), arg, 'exec'), scope)
            for key, value in scope.items():
                if key.startswith('_') or not isinstance(value, SIMPLE_TYPES) or key == '__builtins__':
                    continue
                if key not in config:
                    raise ConfigError(f"{arg}: unknown config key {key!r} (known keys: {', '.join(sorted(keys))})")
                config[key] = check_type(key, value, namespace[key], arg)
        else:
            key, sep, text = arg[2:].partition('=')
            if not sep:
                raise ConfigError(f"argument {arg!r} must look like --key=value")
            if key not in config:
                raise ConfigError(f"unknown config key {key!r} in {arg!r} (known keys: {', '.join(sorted(keys))})")
            try:
                value = ast.literal_eval(text)
            except (SyntaxError, ValueError):
                value = text  # a bare string, e.g. --device=cpu
            if isinstance(namespace[key], str) and not isinstance(value, str):
                value = text  # --out_dir=123 stays a string
            config[key] = check_type(key, value, namespace[key], arg)
    return config
