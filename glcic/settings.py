"""Reads and checks the settings: config.py's values as written, then --KEY=value and config.json on
top, each mistake one line naming the key (and for config.py its line), so config.py stays a page."""
import ast
import difflib
import math
import os
import re
import textwrap
import traceback

# Every setting's type, in config.py's order: a value written in config.py, given as --KEY=value or
# read from config.json must have it (an int is accepted for a float). A new setting goes here too.
TYPES = dict(
    # data
    IMAGE_SIZE=int, LOCAL_SIZE=int, HOLE_MIN=int, HOLE_MAX=int, NUM_IMAGES=int, TRAIN_RATIO=float,
    VAL_IMAGES=int, FLIP=bool, SEED=int,
    # model
    WIDTH=int, MASK_CHANNEL=bool, ADVERSARIAL_G=bool, LOCAL_CENTRED=bool, REAL_OWN_HOLES=bool,
    D_FC_RELU=bool, D_FIRST=bool, BN_DECAY=float, BN_EPSILON=float, BN_RECALIBRATE_BATCHES=int,
    # training
    BATCH_SIZE=int, REPLICAS=int, ACCUM_STEPS=int, PRECISION=str, LEARNING_RATE=float, BETA1=float,
    ALPHA=float, MSE_SCALE=float, PRETRAIN_EPOCH=int, D_EPOCH=int, MAX_EPOCH=int, STOP_LOSS=float,
    STOP_EPOCHS=int, SAVE_MINUTES=float, KEEP_CHECKPOINTS=int, LOG_EVERY=int, WORKER_WAIT_SECONDS=float,
    SAMPLE_COUNT=int,
    # presets
    PRESET=str,
    # paths
    IMAGE_DIR=str, NPY_DIR=str, BACKUP_DIR=str, OUTPUT_DIR=str,
)
CONSTANTS = ('ARCHITECTURE_KEYS', 'PRESETS')  # config.py's names that are not settings
KINDS = {int: 'a whole number', float: 'a number', bool: 'True or False', str: 'text in quotes'}


class ConfigError(ValueError):
    """A setting is unknown, of the wrong type or out of range."""


def _config():
    import config  # here, not at the top: config.py imports this module at its end
    return config


def keys():
    """Names of all settings, in config.py's order."""
    return list(TYPES)


def as_dict():
    config = _config()
    return {key: getattr(config, key) for key in keys()}


def help_text(width=100):
    """Every setting with its default and meaning, read from config.py's own lines (for --help)."""
    config = _config()
    with open(config.__file__, encoding='utf-8') as f:
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
                        for name, values in config.PRESETS.items()]
    return '\n'.join(out)


def _unknown(name):
    close = difflib.get_close_matches(name.upper(), keys(), n=1)
    if close:
        return f'unknown setting {name}; did you mean {close[0]}?'
    return f'unknown setting {name}; valid keys: {", ".join(keys())}'


def _convert(key, text):
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        if TYPES[key] is str:
            return text  # bare strings such as paths need no quotes
        raise ConfigError(f'--{key}={text}: not a literal value (e.g. --{key}={getattr(_config(), key)!r})')
    try:
        return _typed(key, value)
    except ConfigError:  # say it as it was typed
        raise ConfigError(f'--{key}={text}: expected {TYPES[key].__name__}, '
                          f'got {type(value).__name__}') from None


def _typed(key, value):
    """value as key's type (an int is accepted for a float)."""
    expected = TYPES[key]
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if type(value) is not expected:
        raise ConfigError(f'{key}={value!r}: expected {expected.__name__}, got {type(value).__name__}')
    return value


def _fix(key, value):
    """What to write instead of value: 'write BATCH_SIZE = 16' when its text reads as one."""
    guess = value
    if isinstance(value, str):
        try:
            guess = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            pass
    if TYPES[key] is int and type(guess) is float and guess.is_integer():
        guess = int(guess)
    try:
        return f'write {key} = {_typed(key, guess)!r}'
    except ConfigError:
        return 'write a folder in quotes' if key.endswith('_DIR') else f'write {KINDS[TYPES[key]]}'


def set_values(values):
    """Set several keys at once (from overrides or a saved config.json), checked as on the command
    line; on an error nothing changes."""
    unknown = sorted(set(values) - set(keys()))
    if unknown:
        raise ConfigError(_unknown(unknown[0]))
    values = {key: _typed(key, value) for key, value in values.items()}
    config, before = _config(), as_dict()
    try:
        if 'PRESET' in values:
            vars(config).update(preset_values(values['PRESET']))
        vars(config).update(values)  # keys given next to PRESET win over it
        validate()
    except ConfigError:
        vars(config).update(before)
        raise


def preset_values(name):
    """The values PRESET=name sets: its own, and the file's values of every other preset's keys."""
    config = _config()
    if name != '' and name not in config.PRESETS:
        raise ConfigError(f'PRESET={name!r}: valid presets are \'\' (the values in config.py), '
                          f'{", ".join(repr(p) for p in config.PRESETS)}')
    undo = {key: config._FILE_VALUES[key] for preset in config.PRESETS.values() for key in preset}
    own = {key: _typed(key, value) for key, value in config.PRESETS.get(name, {}).items()}
    return {**undo, **own}


def parse_overrides(argv):
    """Apply `--KEY=value` arguments; return the other arguments untouched."""
    rest, values = [], {}
    for arg in argv:
        name, eq, text = arg[2:].partition('=')
        if arg.startswith('--') and eq and name.isupper():
            if name not in keys():
                raise ConfigError(_unknown(name))
            values[name] = _convert(name, text)
        else:
            rest.append(arg)
    set_values(values)
    return rest


def validate():
    """Check ranges that would otherwise fail deep inside TensorFlow."""
    c = _config()

    def need(ok, key, why):
        if not ok:
            error = ConfigError(f'{key}={getattr(c, key)!r}: {why}')
            error.key = key  # for check_file, to name the key's line
            raise error
    for key in keys():
        if isinstance(getattr(c, key), float):  # inf passes every range check below
            need(math.isfinite(getattr(c, key)), key, 'must be a finite number')
    for key in ('IMAGE_DIR', 'NPY_DIR', 'BACKUP_DIR', 'OUTPUT_DIR'):
        need(getattr(c, key).strip() and '\0' not in getattr(c, key), key, 'must name a folder')
    need(c.IMAGE_SIZE >= 16 and c.IMAGE_SIZE % 4 == 0, 'IMAGE_SIZE', 'must be >= 16 and divisible by 4')
    need(16 <= c.LOCAL_SIZE <= c.IMAGE_SIZE, 'LOCAL_SIZE', f'must be between 16 and IMAGE_SIZE ({c.IMAGE_SIZE})')
    need(1 <= c.HOLE_MIN <= c.HOLE_MAX, 'HOLE_MIN', f'must be between 1 and HOLE_MAX ({c.HOLE_MAX})')
    need(c.HOLE_MAX <= c.LOCAL_SIZE, 'HOLE_MAX', f'must be <= LOCAL_SIZE ({c.LOCAL_SIZE})')
    need(c.WIDTH >= 1, 'WIDTH', 'must be >= 1 (1: the paper\'s widths)')
    need(c.BATCH_SIZE >= 1, 'BATCH_SIZE', 'must be >= 1')
    need(c.REPLICAS >= 0, 'REPLICAS', 'must be >= 0 (0: every visible GPU)')
    need(c.ACCUM_STEPS >= 1, 'ACCUM_STEPS', 'must be >= 1')
    need(c.PRECISION in ('float32', 'float16', 'bfloat16'), 'PRECISION', "must be 'float32', 'float16' or 'bfloat16'")
    need(c.NUM_IMAGES >= 2, 'NUM_IMAGES', 'must be >= 2')
    need(0 < c.TRAIN_RATIO < 1, 'TRAIN_RATIO', 'must be between 0 and 1')
    need(c.VAL_IMAGES >= 0, 'VAL_IMAGES', 'must be >= 0 (0: no validation split, phase 3 runs to MAX_EPOCH)')
    need(0 <= c.SEED < 2 ** 32, 'SEED', 'must be between 0 and 2**32 - 1 (numpy\'s seed range)')
    need(c.LEARNING_RATE > 0, 'LEARNING_RATE', 'must be > 0')
    need(0 <= c.BETA1 < 1, 'BETA1', 'must be in [0, 1)')
    need(c.ALPHA >= 0, 'ALPHA', 'must be >= 0')
    need(c.MSE_SCALE > 0, 'MSE_SCALE', 'must be > 0')
    need(0 < c.BN_DECAY < 1, 'BN_DECAY', 'must be between 0 and 1')
    need(c.BN_EPSILON > 0, 'BN_EPSILON', 'must be > 0')
    need(c.BN_RECALIBRATE_BATCHES >= 0, 'BN_RECALIBRATE_BATCHES', 'must be >= 0')
    need(c.STOP_LOSS >= 0, 'STOP_LOSS', 'must be >= 0 (0: no stop rule, phase 3 runs to MAX_EPOCH)')
    need(1 <= c.STOP_EPOCHS <= 32, 'STOP_EPOCHS', 'must be between 1 and 32')
    for key in ('PRETRAIN_EPOCH', 'D_EPOCH', 'MAX_EPOCH'):
        need(getattr(c, key) >= 0, key, 'must be >= 0')
    need(c.SAVE_MINUTES > 0, 'SAVE_MINUTES', 'must be > 0')
    need(c.KEEP_CHECKPOINTS >= 1, 'KEEP_CHECKPOINTS', 'must be >= 1')
    need(c.LOG_EVERY >= 1, 'LOG_EVERY', 'must be >= 1')
    need(c.WORKER_WAIT_SECONDS > 0, 'WORKER_WAIT_SECONDS', 'must be > 0')
    need(c.SAMPLE_COUNT >= 1, 'SAMPLE_COUNT', 'must be >= 1')


# --- config.py itself ---

def where(path, line=None):
    """'config.py line 34': the file as typed from the current folder (absolute if outside it)."""
    try:
        shown = os.path.relpath(path)
    except ValueError:  # another drive on Windows
        shown = path
    shown = path if shown.startswith(os.pardir) else shown
    return f'{shown} line {line}' if line else shown


def _assigned(path):
    """{name: line} of the last top-level assignment of each public name in the file at path."""
    try:
        with open(path, encoding='utf-8') as f:
            tree = ast.parse(f.read(), path)
    except (OSError, SyntaxError, ValueError):
        return {}
    lines = {}
    for node in tree.body:
        targets = (node.targets if isinstance(node, ast.Assign)
                   else [node.target] if isinstance(node, (ast.AnnAssign, ast.AugAssign)) else [])
        for name in (n for target in targets for n in ast.walk(target)):
            if isinstance(name, ast.Name) and isinstance(name.ctx, ast.Store) and not name.id.startswith('_'):
                lines[name.id] = node.lineno
    return lines


def check_file():
    """Check config.py's values as written, as the command line's are checked; raise ConfigError
    naming config.py's line. Runs at the end of config.py."""
    config = _config()
    path = config.__file__
    lines = _assigned(path)

    def at(name, message):
        return ConfigError(f'{where(path, lines.get(name))}: {message}')
    public = {*lines, *(name for name in vars(config) if name.isupper() and not name.startswith('_'))}
    unknown = sorted(public - {*TYPES, *CONSTANTS}, key=lambda name: lines.get(name, 0))
    if unknown:
        raise at(unknown[0], _unknown(unknown[0]))
    for key in keys():
        if not hasattr(config, key):
            raise at(key, f'{key} is missing; add the line {key} = <{KINDS[TYPES[key]]}>')
    for key in sorted(keys(), key=lambda key: lines.get(key, 0)):  # the first mistake in the file
        value = getattr(config, key)
        try:
            setattr(config, key, _typed(key, value))
        except ConfigError as error:
            raise at(key, f'{error}; {_fix(key, value)}') from None
    presets = config.PRESETS
    if not isinstance(presets, dict) or not all(isinstance(p, dict) for p in presets.values()):
        raise at('PRESETS', "PRESETS must read {'name': dict(KEY=value, ...), ...}")
    for name, values in presets.items():
        for key, value in values.items():
            try:
                if key not in TYPES:
                    raise ConfigError(_unknown(key))
                _typed(key, value)
            except ConfigError as error:
                raise at('PRESETS', f'PRESETS[{name!r}]: {error}') from None
    config._FILE_VALUES = as_dict()  # as written: what --PRESET= goes back to
    if config.PRESET:
        # Every key is written here, and a value written here is the value used: a preset here
        # would either beat them or do nothing, so it stays on the command line.
        try:
            values = preset_values(config.PRESET)
        except ConfigError as error:
            raise at('PRESET', str(error)) from None
        raise at('PRESET', f'PRESET={config.PRESET!r}: a preset is for the command line (--PRESET={config.PRESET}, '
                           f'where keys given beside it win); in config.py write its values instead: '
                           + ', '.join(f'{key} = {values[key]!r}' for key in presets[config.PRESET]))
    try:
        validate()
    except ConfigError as error:
        raise at(getattr(error, 'key', 'PRESET'), str(error)) from None


def import_error(error, path):
    """One line for an exception raised while the config.py at path ran, or None if the mistake
    is not in that file."""
    def same(file):
        try:
            return os.path.samefile(file, path)
        except (OSError, TypeError):
            return False
    if isinstance(error, ConfigError):
        return str(error)
    if isinstance(error, SyntaxError) and same(error.filename):
        return f'{_line(path, error.lineno, error.text)}: {error.msg}; correct that line'
    frames = traceback.extract_tb(error.__traceback__)
    if not frames or not same(frames[-1].filename):
        return None
    said = str(error) or type(error).__name__
    if isinstance(error, NameError) and error.name:
        said += f"; text goes in quotes: '{error.name}'"
    return f'{_line(path, frames[-1].lineno, frames[-1].line)}: {said}'


def _line(path, number, text):
    """'config.py line 38 (PRECISION = float16)': where, and the code there without its comment."""
    code = re.split(r'\s+#', (text or '').strip())[0]
    return where(path, number) + (f' ({code})' if code else '')
