"""Every setting of glcic. Edit here, or override any key on the command line:

    python train.py --BATCH_SIZE=8 --MASK_CHANNEL=False

Code reads `config.KEY` at use time, so an override applies everywhere.
"""
import ast
import math
import re
import textwrap

# --- data ---
IMAGE_SIZE = 128  # side of the square training images, px (divisible by 4)
LOCAL_SIZE = 64  # side of the local discriminator's patch around the hole, px
HOLE_MIN = 24  # smallest hole side, px
HOLE_MAX = 48  # largest hole side, px (<= LOCAL_SIZE)
NUM_IMAGES = 5000  # images to_npy.py picks from the source folder
TRAIN_RATIO = 0.95  # share of NUM_IMAGES for training; the rest is the test split
FLIP = True  # random horizontal flip of training batches (faces are symmetric)
SEED = 0  # seed for image picking, shuffling, holes and initial weights

# --- model ---
WIDTH = 1  # every layer's channels are divided by this, keeping at least 1 (the output keeps 3): 1 the paper's widths (Tables 1-2); 8 tiny models for tests
MASK_CHANNEL = True  # True: hole filled with the mean pixel + mask as a 4th input channel (paper); False: 3-channel x*(1-mask) (common TF1 code)
ADVERSARIAL_G = True  # True: generator gets the adversarial gradient in phase 3 (paper); False: mse only
LOCAL_CENTRED = True  # True: the local discriminator's patch is centred on the hole, clamped at the border (paper); False: anywhere that holds the hole
REAL_OWN_HOLES = True  # True: real images' local patches come from random holes of their own (paper, Algorithm 1); False: at the fakes' patches
D_FC_RELU = True  # True: ReLU after each discriminator branch's FC-1024 (without it FC-1024 -> concat -> FC-1 is one linear map); False: none
D_FIRST = True  # True: phase 3 updates D, then G against the updated D (paper; one more pass of D); False: both from one pass
BN_DECAY = 0.99  # moving-average decay of batch-norm statistics
BN_EPSILON = 1e-3  # batch-norm variance epsilon
BN_RECALIBRATE_BATCHES = 20  # batches used to re-estimate batch-norm statistics before each save (0: off)

# --- training ---
BATCH_SIZE = 16  # images per step; lower it if the GPU runs out of memory
REPLICAS = 0  # devices that split each batch (README: Several GPUs): 0 every visible GPU, 1 one device; N > 1 on a machine without GPU: N CPU devices
ACCUM_STEPS = 1  # batches whose mean gradient makes one update: BATCH_SIZE * ACCUM_STEPS images per step, batch norm sees BATCH_SIZE
PRECISION = 'float32'  # the networks' arithmetic in training: 'float32'; 'float16' (GPU tensor cores, with dynamic loss scaling); 'bfloat16' (Ampere and newer GPUs; on a CPU 1.8-2.1x float32 on AMD Zen 4, 0.5-0.6x on a Xeon without AMX, BENCHMARKS.md); weights and checkpoints stay float32
LEARNING_RATE = 1e-3  # Adam learning rate for both networks
BETA1 = 0.9  # Adam beta1
ALPHA = 1e-4  # weight of the adversarial loss against MSE_SCALE * mse; the paper's 4e-4 lost 1.5 dB more hole PSNR at equal minutes (QUALITY.md)
MSE_SCALE = 0.25  # 0.25: G's mse as on [0, 1] pixels (the paper's sigmoid output), so ALPHA is the paper's alpha; 1.0: on [-1, 1] (ALPHA then acts 4x weaker)
PRETRAIN_EPOCH = 100  # phase 1: epochs of completion network with mse only
D_EPOCH = 11  # phase 2: epochs of discriminator only (paper: Td/Tc = 10k/90k of phase 1)
MAX_EPOCH = 500  # hard cap on the total epochs over all phases
STOP_LOSS = 0.02  # phase 3 ends when d_loss has settled: the mean of its last STOP_EPOCHS epochs within this many nats of the STOP_EPOCHS before (train.stop_rule; QUALITY.md)
STOP_EPOCHS = 5  # epochs in each of the two windows of the stop rule (at most 32)
SAVE_MINUTES = 10.0  # also save backup/latest this often within an epoch, minutes
KEEP_CHECKPOINTS = 3  # older backup/latest checkpoints kept besides the newest
LOG_EVERY = 10  # steps between TensorBoard points and progress-bar updates
WORKER_WAIT_SECONDS = 600.0  # with TF_CONFIG: how long a worker waits for the others (at the start, then in each step) before it stops, s
SAMPLE_COUNT = 8  # fixed test images in each output/epoch_NNNN.png

# --- presets ---
PRESET = ''  # '': the values above (the paper's schedule, for a GPU); 'cpu': PRESETS['cpu'] (QUALITY.md)
PRESETS = {
    # 2 hours on a 2-core CPU: smaller steps, phase 1 for the 2 hours (it beat phase 3 there), then 2 and 3.
    'cpu': dict(BATCH_SIZE=8, PRETRAIN_EPOCH=5, D_EPOCH=1),
}

# --- paths ---
IMAGE_DIR = 'data/images'  # to_npy.py reads photos from here (recursively)
NPY_DIR = 'data/npy'  # x_train.npy, x_test.npy and meta.json
BACKUP_DIR = 'backup'  # checkpoints and the run's config.json
OUTPUT_DIR = 'output'  # sample grids, loss.csv, loss.png, logs/, test/

# Settings that shape the graph: a checkpoint only restores into the same values.
ARCHITECTURE_KEYS = ('IMAGE_SIZE', 'LOCAL_SIZE', 'MASK_CHANNEL', 'WIDTH')


def keys():
    """Names of all settings, in file order."""
    return [k for k in globals()
            if k.isupper() and not k.startswith('_') and k not in ('ARCHITECTURE_KEYS', 'PRESETS')]


def as_dict():
    return {k: globals()[k] for k in keys()}


def help_text(width=100):
    """Every setting with its default and meaning, read from this file's own lines (for --help)."""
    with open(__file__, encoding='utf-8') as f:
        lines = f.read().splitlines()
    groups = [re.fullmatch(r'# --- (.+) ---', line) for line in lines]
    settings = [re.fullmatch(r'([A-Z][A-Z0-9_]*) = (.+?)  # (.+)', line) for line in lines]
    column = 4 + max(len(f'--{m[1]}={m[2]}') for m in settings if m) + 2  # indent, --KEY=value, gap
    out = ['settings (--KEY=value; default as in config.py):']
    for group, setting in zip(groups, settings):
        if group:
            out.append(f'  {group[1]}:')
        elif setting and setting[1] in keys():
            key = f'    --{setting[1]}={setting[2]}'.ljust(column)
            out += textwrap.wrap(setting[3], width, initial_indent=key, subsequent_indent=' ' * column)
            if setting[1] == 'PRESET':
                out += [' ' * column + f'{name!r} sets ' + ' '.join(f'{k}={v!r}' for k, v in values.items())
                        for name, values in PRESETS.items()]
    return '\n'.join(out)


class ConfigError(ValueError):
    """A setting is unknown, of the wrong type or out of range."""


def _convert(key, text):
    default = globals()[key]
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        if isinstance(default, str):
            return text  # bare strings such as paths need no quotes
        raise ConfigError(f'--{key}={text}: not a literal value (e.g. --{key}={default!r})')
    try:
        return _typed(key, value)
    except ConfigError:  # say it as it was typed
        raise ConfigError(f'--{key}={text}: expected {type(default).__name__}, '
                          f'got {type(value).__name__}') from None


def _typed(key, value):
    """value as the type of key's value in config.py (an int is accepted for a float)."""
    default = globals()[key]
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if type(value) is not type(default):
        raise ConfigError(f'{key}={value!r}: expected {type(default).__name__}, got {type(value).__name__}')
    return value


def set_values(values):
    """Set several keys at once (from overrides or a saved config.json), checked as on the command
    line; on an error nothing changes."""
    unknown = sorted(set(values) - set(keys()))
    if unknown:
        raise ConfigError(f'unknown setting {unknown[0]}; valid keys: {", ".join(keys())}')
    values = {key: _typed(key, value) for key, value in values.items()}
    before = as_dict()
    try:
        if 'PRESET' in values:
            globals().update(preset_values(values['PRESET']))
        globals().update(values)  # keys given next to PRESET win over it
        validate()
    except ConfigError:
        globals().update(before)
        raise


def preset_values(name):
    """The values PRESET=name sets: its own, and the file's values of every other preset's keys."""
    if name != '' and name not in PRESETS:
        raise ConfigError(f'PRESET={name!r}: valid presets are \'\' (the values in config.py), '
                          f'{", ".join(repr(p) for p in PRESETS)}')
    undo = {key: _FILE_VALUES[key] for preset in PRESETS.values() for key in preset}
    return {**undo, **PRESETS.get(name, {})}


def parse_overrides(argv):
    """Apply `--KEY=value` arguments; return the other arguments untouched."""
    rest, values = [], {}
    for arg in argv:
        name, eq, text = arg[2:].partition('=')
        if arg.startswith('--') and eq and name.isupper():
            if name not in keys():
                raise ConfigError(f'unknown setting {name}; valid keys: {", ".join(keys())}')
            values[name] = _convert(name, text)
        else:
            rest.append(arg)
    set_values(values)
    return rest


def validate():
    """Check ranges that would otherwise fail deep inside TensorFlow."""
    def need(ok, key, why):
        if not ok:
            raise ConfigError(f'{key}={globals()[key]!r}: {why}')
    for key in keys():
        if isinstance(globals()[key], float):  # inf passes every range check below
            need(math.isfinite(globals()[key]), key, 'must be a finite number')
    for key in ('IMAGE_DIR', 'NPY_DIR', 'BACKUP_DIR', 'OUTPUT_DIR'):
        need(globals()[key].strip() and '\0' not in globals()[key], key, 'must name a folder')
    need(IMAGE_SIZE >= 16 and IMAGE_SIZE % 4 == 0, 'IMAGE_SIZE', 'must be >= 16 and divisible by 4')
    need(16 <= LOCAL_SIZE <= IMAGE_SIZE, 'LOCAL_SIZE', f'must be between 16 and IMAGE_SIZE ({IMAGE_SIZE})')
    need(1 <= HOLE_MIN <= HOLE_MAX, 'HOLE_MIN', f'must be between 1 and HOLE_MAX ({HOLE_MAX})')
    need(HOLE_MAX <= LOCAL_SIZE, 'HOLE_MAX', f'must be <= LOCAL_SIZE ({LOCAL_SIZE})')
    need(WIDTH >= 1, 'WIDTH', 'must be >= 1 (1: the paper\'s widths)')
    need(BATCH_SIZE >= 1, 'BATCH_SIZE', 'must be >= 1')
    need(REPLICAS >= 0, 'REPLICAS', 'must be >= 0 (0: every visible GPU)')
    need(ACCUM_STEPS >= 1, 'ACCUM_STEPS', 'must be >= 1')
    need(PRECISION in ('float32', 'float16', 'bfloat16'), 'PRECISION', "must be 'float32', 'float16' or 'bfloat16'")
    need(NUM_IMAGES >= 2, 'NUM_IMAGES', 'must be >= 2')
    need(0 < TRAIN_RATIO < 1, 'TRAIN_RATIO', 'must be between 0 and 1')
    need(0 <= SEED < 2 ** 32, 'SEED', 'must be between 0 and 2**32 - 1 (numpy\'s seed range)')
    need(LEARNING_RATE > 0, 'LEARNING_RATE', 'must be > 0')
    need(0 <= BETA1 < 1, 'BETA1', 'must be in [0, 1)')
    need(ALPHA >= 0, 'ALPHA', 'must be >= 0')
    need(MSE_SCALE > 0, 'MSE_SCALE', 'must be > 0')
    need(0 < BN_DECAY < 1, 'BN_DECAY', 'must be between 0 and 1')
    need(BN_EPSILON > 0, 'BN_EPSILON', 'must be > 0')
    need(BN_RECALIBRATE_BATCHES >= 0, 'BN_RECALIBRATE_BATCHES', 'must be >= 0')
    need(STOP_LOSS >= 0, 'STOP_LOSS', 'must be >= 0 (0: phase 3 never settles, it runs to MAX_EPOCH)')
    need(1 <= STOP_EPOCHS <= 32, 'STOP_EPOCHS', 'must be between 1 and 32')
    for key in ('PRETRAIN_EPOCH', 'D_EPOCH', 'MAX_EPOCH'):
        need(globals()[key] >= 0, key, 'must be >= 0')
    need(SAVE_MINUTES > 0, 'SAVE_MINUTES', 'must be > 0')
    need(KEEP_CHECKPOINTS >= 1, 'KEEP_CHECKPOINTS', 'must be >= 1')
    need(LOG_EVERY >= 1, 'LOG_EVERY', 'must be >= 1')
    need(WORKER_WAIT_SECONDS > 0, 'WORKER_WAIT_SECONDS', 'must be > 0')
    need(SAMPLE_COUNT >= 1, 'SAMPLE_COUNT', 'must be >= 1')


_FILE_VALUES = as_dict()  # as written above, before a PRESET set in this file applies
globals().update(preset_values(PRESET))
