"""
What the scripts share: the task of a data folder, where and in which precision to run, the memory a
training step needs (and this process holds), durations for logs, and writing files so that a crash never
leaves half of one under the real name.
"""
import importlib
import json
import os
import shutil
import sys
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
    the script of data/<script>/ that writes all its sets (control, reasoning), or a script whose name
    starts the dataset's (an --out_dir)."""
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data')
    scripts = sorted(d for d in os.listdir(root) if os.path.exists(os.path.join(root, d, 'prepare.py')))
    head, _, rest = dataset.partition('/')
    if dataset in scripts:
        return f"python data/{dataset}/prepare.py"
    if rest and head in scripts:  # one script writes every data/<head>/<rest> (control, reasoning)
        return f"python data/{head}/prepare.py"
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
    """(device, device_type): '' picks cuda > mps > cpu; under torchrun each process takes its local GPU.
    A device this machine does not have is a ValueError saying what it has."""
    if not device:
        device = 'cuda' if torch.cuda.is_available() else 'mps' if torch.backends.mps.is_available() else 'cpu'
        if device == 'cuda' and 'LOCAL_RANK' in os.environ:
            device = f'cuda:{local_rank}'
    device_type = 'cuda' if 'cuda' in device else 'mps' if 'mps' in device else 'cpu'
    if device_type == 'cuda' and not torch.cuda.is_available():
        raise ValueError(f"device={device!r}, but this torch ({torch.__version__}) sees no CUDA GPU; use --device=cpu, "
                         f"or device='' to take what the machine has")
    if device_type == 'cuda' and ':' in device and int(device.split(':')[1]) >= torch.cuda.device_count():
        raise ValueError(f"device={device!r}, but this machine has {torch.cuda.device_count()} CUDA GPU(s), "
                         f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    if device_type == 'mps' and not torch.backends.mps.is_available():
        raise ValueError(f"device={device!r}, but MPS (Apple GPUs) is not available here; use --device=cpu")
    return device, device_type


def native_bf16(device_type):
    """Whether bfloat16 matmuls run natively: Ampere+ GPUs, CPUs with AMX or AVX512-BF16 (without them,
    bf16 is emulated and runs slower than fp32)."""
    if device_type == 'cuda':
        return torch.cuda.is_bf16_supported()
    return device_type == 'cpu' and (torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())


def resolve_dtype(dtype, device_type):
    """'' picks bfloat16 where the hardware does it natively, float16 on older GPUs (with a grad scaler),
    float32 otherwise. float16 on a CPU is a ValueError (emulated: ~60x slower than float32); bfloat16
    where it is emulated is allowed, with a one-line warning."""
    if not dtype:
        return 'bfloat16' if native_bf16(device_type) else 'float16' if device_type == 'cuda' else 'float32'
    if dtype == 'float16' and device_type == 'cpu':
        raise ValueError("dtype='float16' on a CPU is emulated (~60x slower than float32); use float32, or "
                         "dtype='' to take the fastest the machine has")
    if dtype == 'bfloat16' and device_type != 'mps' and not native_bf16(device_type):
        print(f"warning: this {device_type} has no native bfloat16; it runs emulated, slower than float32 "
              f"(dtype='' picks the fastest)")
    return dtype


PTDTYPE = {'float32': torch.float32, 'bfloat16': torch.bfloat16, 'float16': torch.float16}


def autocast(dtype, device_type):
    """The context every forward runs in: autocast to dtype, or nothing for float32."""
    return nullcontext() if dtype == 'float32' else torch.autocast(device_type=device_type, dtype=PTDTYPE[dtype])


def or_exit(f, *args, **kwargs):
    """f(*args, **kwargs), or exit with its one-line error: for what scripts cannot continue without."""
    try:
        return f(*args, **kwargs)
    except (ValueError, OSError) as e:
        sys.exit(f"error: {e}")


def runtime(device='', dtype='', local_rank=0):
    """(device, device_type, dtype, autocast context) from the device and dtype config keys ('' = auto)."""
    device, device_type = resolve_device(device, local_rank)
    dtype = resolve_dtype(dtype, device_type)
    return device, device_type, dtype, autocast(dtype, device_type)


def train_memory(model, batch_size, dtype, use_ema=True, halt_train=False, grokfast=False):
    """Bytes one training step of `model` (built on any device, 'meta' included) needs, estimated: fp32
    weights, gradients and AdamW's two moments (and the EMA's copy, GrokFast's gradient EMA), plus what
    autograd keeps of one supervision step. Per token, that is per net call with gradient (n_layer blocks x
    (n_loops + 1)): attention 4 n_embd + 1.5 qkv width (flash attention keeps no L x L scores), or mlp_t 4 n_embd + 4
    hidden_t n_embd / L; the MLP 4 n_embd + 4 hidden (SwiGLU; 2 hidden for GELU/SiLU); plus 8 n_embd for
    the embeddings and carried states and 3 fp32 copies of the logits; per memory read 4 n_embd + 3 n_head
    memory_slots; halt_train: the keys/values of every
    attention site of two steps (model.HaltedKV). Elements are 4 bytes in float32,
    ~2.4 under bf16/fp16 autocast (norms and softmax stay fp32). tests/test_common.py holds it to within
    25% of the tensors a real step saves."""
    cfg = model.config
    n_params = sum(p.numel() for p in model.parameters())
    state = n_params * (16 + 4 * use_ema + 4 * grokfast)
    D, L, hd = cfg.n_embd, cfg.seq_len, cfg.n_embd // cfg.n_head
    mlp = 4 * D + (4 if cfg.mlp == 'swiglu' else 2) * cfg.hidden_dim
    if cfg.mixer == 'mlp_t':
        mixer = 4 * D + (4 if cfg.mlp == 'swiglu' else 2) * model.blocks[0].mlp_t.c_proj.in_features * D / L
    else:
        mixer = 4 * D + 1.5 * (cfg.n_head + 2 * cfg.n_kv_head) * hd
    calls = cfg.n_layer * (cfg.n_loops + 1 if cfg.recursion else 1)
    per_token = calls * (mixer + mlp) + 8 * D
    if cfg.memory_slots:  # per read with gradient: its input, query and read, and the attention over the slots
        reads = cfg.n_loops + cfg.memory_read_y if cfg.recursion else 1
        per_token += reads * (4 * D + 3 * cfg.n_head * cfg.memory_slots)
    if halt_train:
        per_token += 2 * cfg.T_recursion * calls * 2 * cfg.n_kv_head * hd
    per_token = per_token * (4 if dtype == 'float32' else 2.4) + 12 * (cfg.n_outputs or cfg.vocab_size)
    return state + batch_size * L * per_token


def available_memory(device, device_type):
    """Bytes this process may still allocate on the device: free GPU memory, or on a CPU the kernel's
    MemAvailable (within a cgroup's limit), shared by torchrun's local processes. None where unknown."""
    if device_type == 'cuda':
        return torch.cuda.mem_get_info(torch.device(device))[0]
    if device_type != 'cpu':
        return None
    try:
        with open('/proc/meminfo') as f:
            free = next(int(line.split()[1]) * 1024 for line in f if line.startswith('MemAvailable'))
    except (OSError, StopIteration):
        return None
    try:  # a container's limit (cgroup v2)
        with open('/sys/fs/cgroup/memory.max') as f, open('/sys/fs/cgroup/memory.current') as g:
            limit = f.read().strip()
            if limit != 'max':
                free = min(free, int(limit) - int(g.read()))
    except (OSError, ValueError):
        pass
    return free // int(os.environ.get('LOCAL_WORLD_SIZE', 1))


def check_memory(model, batch_size, dtype, use_ema, device, device_type, halt_train=False, grokfast=False):
    """ValueError with one line when train_memory exceeds what the device has free."""
    need = train_memory(model, batch_size, dtype, use_ema, halt_train, grokfast)
    have = available_memory(device, device_type)
    if have is not None and need > have:
        cfg = model.config
        raise ValueError(f"one training step needs ~{need / 2 ** 30:.1f} GiB (batch_size {batch_size} x "
                         f"{cfg.seq_len} positions, {cfg.n_layer} x {cfg.n_embd} net), more than the "
                         f"{have / 2 ** 30:.1f} GiB free on {device}; lower batch_size (raising "
                         f"gradient_accumulation_steps keeps the batch) or block_size, or the model's size")


def rss_mb():
    """This process's resident memory in MiB (Linux: current; elsewhere: the peak)."""
    try:
        with open('/proc/self/statm') as f:
            return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2 ** 20
    except OSError:
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (2 ** 20 if sys.platform == 'darwin' else 2 ** 10)


def duration(seconds):
    """'1h02m', '4m05s' or '12s'."""
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s" if m else f"{s}s"


def write_atomic(path, write):
    """write(tmp_path) then rename over path: a crash mid-write leaves the previous file (or none). A write
    that fails (a full disk, a lost mount) removes the temporary file and raises OSError with one line."""
    tmp = path + '.tmp'
    try:
        write(tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:  # torch.save reports a failed write as a RuntimeError
        if os.path.lexists(tmp):
            os.remove(tmp)
        reason = e.strerror if isinstance(e, OSError) and e.strerror else 'the write failed'
        free = shutil.disk_usage(os.path.dirname(os.path.abspath(path))).free / 2 ** 20
        raise OSError(f"could not write {path}: {reason} ({free:,.0f} MiB free on its disk); the previous file "
                      f"is as it was") from None


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
