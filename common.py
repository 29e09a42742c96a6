"""
What the scripts share: the task of a data folder, where and in which precision to run, and writing
files so that a crash never leaves half of one under the real name.
"""
import importlib
import json
import os
from contextlib import nullcontext

import numpy as np
import torch

# a task is a module with the same small surface (see train.py): the one registry of tasks
TASK_MODULES = {'lm': 'lm', 'puzzle': 'puzzles', 'control': 'control'}


def task_of(data_dir):
    """The task of a prepared data folder: 'control' (a meta.json with a horizon), 'puzzle' (another
    meta.json), else 'lm' (nanoGPT's train.bin / val.bin)."""
    meta_path = os.path.join(data_dir, 'meta.json')
    if not os.path.exists(meta_path):
        return 'lm'
    with open(meta_path) as f:
        return 'control' if 'horizon' in json.load(f) else 'puzzle'


def prepare_command(dataset):
    """The command that writes data/<dataset>, for the error when it is missing: its own prepare script,
    a system of data/<script>/ (control), or a script whose name starts the dataset's (an --out_dir)."""
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data')
    scripts = sorted(d for d in os.listdir(root) if os.path.exists(os.path.join(root, d, 'prepare.py')))
    head, _, rest = dataset.partition('/')
    if dataset in scripts:
        return f"python data/{dataset}/prepare.py"
    if rest and head in scripts:
        return f"python data/{head}/prepare.py --system={rest}"
    for script in scripts:
        if dataset.startswith(script):
            return f"python data/{script}/prepare.py --out_dir=data/{dataset}"
    return f"a data/<name>/prepare.py script ({', '.join(scripts)})"


def task_module(task):
    return importlib.import_module(TASK_MODULES[task])


def gpt_args(config, task, data):
    """GPTConfig arguments of a train.py config: its model keys, then what the task's data fixes in the
    model (vocabulary, lengths, widths)."""
    from model import GPTConfig
    args = {k: config[k] for k in GPTConfig.keys() if k in config}
    args.update(task.model_args(data, config))
    return args


def supervision_weights(base, n_sup):
    """The weight of each supervision step's loss: w_s ~ base ** ((s-1)/(n_sup-1)), summing to 1 (1 = uniform)."""
    weights = [base ** (s / max(n_sup - 1, 1)) for s in range(n_sup)]
    return [w / sum(weights) for w in weights]


def resolve_device(device='', local_rank=0):
    """(device, device_type): '' picks cuda > mps > cpu; under torchrun each process takes its local GPU."""
    if not device:
        device = 'cuda' if torch.cuda.is_available() else 'mps' if torch.backends.mps.is_available() else 'cpu'
        if device == 'cuda' and 'LOCAL_RANK' in os.environ:
            device = f'cuda:{local_rank}'
    device_type = 'cuda' if 'cuda' in device else 'mps' if 'mps' in device else 'cpu'
    return device, device_type


def resolve_dtype(dtype, device_type):
    """'' picks bfloat16 where the hardware does it natively (Ampere+ GPUs; CPUs with AMX or AVX512-BF16),
    float16 on older GPUs (with a grad scaler), float32 otherwise. Without AMX/AVX512-BF16, bf16
    matmuls are emulated and run slower than fp32."""
    if dtype:
        return dtype
    if device_type == 'cuda':
        return 'bfloat16' if torch.cuda.is_bf16_supported() else 'float16'
    if device_type == 'cpu' and (torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported()):
        return 'bfloat16'
    return 'float32'


PTDTYPE = {'float32': torch.float32, 'bfloat16': torch.bfloat16, 'float16': torch.float16}


def autocast(dtype, device_type):
    """The context every forward runs in: autocast to dtype, or nothing for float32."""
    return nullcontext() if dtype == 'float32' else torch.autocast(device_type=device_type, dtype=PTDTYPE[dtype])


def runtime(device='', dtype='', local_rank=0):
    """(device, device_type, dtype, autocast context) from the device and dtype config keys ('' = auto)."""
    device, device_type = resolve_device(device, local_rank)
    dtype = resolve_dtype(dtype, device_type)
    return device, device_type, dtype, autocast(dtype, device_type)


def write_atomic(path, write):
    """write(tmp_path) then rename over path: a crash mid-write leaves the previous file (or none)."""
    tmp = path + '.tmp'
    write(tmp)
    os.replace(tmp, path)


def save_npy(path, arr):
    def write(tmp):
        with open(tmp, 'wb') as f:
            np.save(f, arr)
    write_atomic(path, write)


def save_json(path, obj, **kw):
    def write(tmp):
        with open(tmp, 'w') as f:
            json.dump(obj, f, **kw)
    write_atomic(path, write)
