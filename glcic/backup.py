"""Everything in BACKUP_DIR: checkpoints, the run's config.json and the lock.

Checkpoints are `latest-<step>` (the Saver keeps the newest KEEP_CHECKPOINTS + 1)
and `pretrained` (end of phase 1: hard links to the `latest` save it equals).
TensorFlow writes each one under a temporary name and only then points the
`checkpoint` file at it, so a crash mid-save leaves the previous save in charge.
"""
import ast
import datetime
import glob
import itertools
import json
import os
import re
import shutil
import tempfile
import uuid

import filelock
import tensorflow as tf

import config
import network
from glcic import atomic, shipped
from glcic.errors import UserError, tf_reason

tf1 = tf.compat.v1
LATEST, PRETRAINED = 'latest', 'pretrained'
BEST = 'best'  # phase 3's most realistic epoch on the validation faces (train.py's stop rule)
OWNER = 'run.json'  # in OUTPUT_DIR: the BACKUP_DIR and the id of the run whose files these are
RUN_ID = 'run_id'  # in config.json and run.json: a random id each new run gets, kept by a move or a copy
RUN_OUTPUTS = ('loss.csv', 'loss.png', 'logs', OWNER)  # with epoch_NNNN.png: a run's files in OUTPUT_DIR
NEWER_KEYS = {'WIDTH': 1}  # settings newer than some config.json files: the value those runs had


def _path(name):
    return os.path.join(config.BACKUP_DIR, name)


def make_folder(key):
    """Create the folder setting `key` names (BACKUP_DIR, OUTPUT_DIR) if need be and check that
    files can be made in it (a nameless one, which leaves nothing behind); UserError if not."""
    folder = getattr(config, key)
    try:
        os.makedirs(folder, exist_ok=True)
    except FileExistsError:
        raise UserError(f'{key}={folder} is a file, not a folder: set --{key} to a folder')
    except OSError as error:
        raise UserError(f'cannot create {key}={folder} ({error.strerror}): set --{key} to a folder you can write')
    try:
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as error:
        raise UserError(f'cannot write in {folder}/ ({error.strerror}): fix its permissions or set --{key} '
                        f'to a folder you can write')


def lock():
    """Take BACKUP_DIR's lock for this process; the OS drops it when the process dies.

    flock on Linux and macOS, LockFileEx on Windows (through filelock). Windows also keeps the
    locked first byte from being read, so the holder's pid is written after it.
    """
    make_folder('BACKUP_DIR')
    try:
        handle = open(_path('train.lock'), 'a+')  # not 'w': that would erase the holder's pid
    except OSError as error:
        raise UserError(f'cannot write in {config.BACKUP_DIR}/ ({error.strerror}: {_path("train.lock")}): '
                        f'fix its permissions or set --BACKUP_DIR to a folder you can write')
    if not filelock.lock_descriptor(handle.fileno(), blocking=False):
        try:
            handle.seek(1)
            holder = handle.read().strip()
        except OSError:
            holder = ''
        handle.close()
        raise UserError(f'another train.py ({holder or "unknown pid"}) is using '
                        f'{config.BACKUP_DIR}/; wait for it, stop it, or set BACKUP_DIR elsewhere')
    handle.seek(0)
    handle.truncate()
    handle.write(f' pid {os.getpid()}')
    handle.flush()
    return handle


def _new_previous(folder, stamp):
    """Create folder/previous-<stamp>/ (a new one) and return it."""
    target = os.path.join(folder, f'previous-{stamp}')
    for suffix in itertools.count(2):  # two --fresh in one second get previous-<stamp>-2
        try:
            os.makedirs(target)
            return target
        except FileExistsError:
            target = os.path.join(folder, f'previous-{stamp}-{suffix}')


def _move_into_previous(folder, names, stamp):
    """Move names of folder into folder/previous-<stamp>/ (a new one); returns it, or None if no names."""
    if not names:
        return None
    target = _new_previous(folder, stamp)
    for name in names:
        os.replace(os.path.join(folder, name), os.path.join(target, name))
    return target


def move_aside():
    """--fresh: move the previous run's files into BACKUP_DIR/previous-<time>/ (nothing is deleted)."""
    names = [n for n in os.listdir(config.BACKUP_DIR)
             if n not in ('.gitkeep', 'train.lock') and not n.startswith('previous-')]
    return _move_into_previous(config.BACKUP_DIR, names, datetime.datetime.now().strftime('%Y%m%d-%H%M%S'))


def move_outputs_aside(previous):
    """--fresh: move the previous run's loss.csv, loss.png, logs/ and epoch_*.png into
    OUTPUT_DIR/previous-<time>/, the time of its checkpoints' folder `previous` if there is one
    (else now); nothing is deleted, test.py's results stay. Returns the folder or None."""
    stamp = (os.path.basename(previous)[len('previous-'):] if previous
             else datetime.datetime.now().strftime('%Y%m%d-%H%M%S'))
    names = [n for n in os.listdir(config.OUTPUT_DIR)
             if n in RUN_OUTPUTS or re.fullmatch(r'epoch_\d+\.png', n)]
    return _move_into_previous(config.OUTPUT_DIR, sorted(names), stamp)


def move_newer_aside(checkpoint, step):
    """Going back (--resume of an older save, at `step`): move the saves after it, their list and a
    copy of config.json into BACKUP_DIR/previous-<time>/, which then resumes where they stopped,
    and list here only those before it, so the run neither writes over them nor rotates them
    away. Returns the folder, or None if no save is newer."""
    newer = [p for p in _saves() if _step(p) >= step and os.path.realpath(p) != os.path.realpath(checkpoint)]
    for alias_name in (PRETRAINED, BEST):  # saved after this save: the run will save them again
        aliased = _path(alias_name)
        if os.path.exists(f'{aliased}.index') and os.path.realpath(aliased) != os.path.realpath(checkpoint):
            try:
                if tf1.train.NewCheckpointReader(aliased).get_tensor('state/step') > step:
                    newer.append(aliased)
            except (tf.errors.OpError, ValueError):
                pass  # unreadable: left where it is
    if not newer:
        return None
    files = [os.path.basename(f) for p in newer for f in glob.glob(glob.escape(p) + '.*')]
    previous = _move_into_previous(config.BACKUP_DIR, files, datetime.datetime.now().strftime('%Y%m%d-%H%M%S'))
    if os.path.exists(_path('config.json')):
        shutil.copy2(_path('config.json'), previous)
        _renew_run_id(previous)  # the saves moved aside go on as a run of their own
    moved = sorted((os.path.basename(p) for p in newer if _step(p) is not None), key=_step)
    _write_list(previous, moved)
    _write_list(config.BACKUP_DIR, sorted((os.path.basename(p) for p in _saves()), key=_step))
    return previous


def _write_list(folder, names):
    """Write folder's `checkpoint` file as TensorFlow's Saver does: names oldest first, the last
    one current (relative paths); with no names, remove it."""
    path = os.path.join(folder, 'checkpoint')
    if not names:
        if os.path.exists(path):
            os.remove(path)
        return
    atomic.write_text(path, f'model_checkpoint_path: "{names[-1]}"\n'
                      + ''.join(f'all_model_checkpoint_paths: "{name}"\n' for name in names))


def copy_outputs_aside(previous, epoch):
    """Going back to an older save (its epoch `epoch`): copy OUTPUT_DIR's loss.csv, loss.png,
    run.json and logs/, and move the sample grids after `epoch`, into OUTPUT_DIR/previous-<time>/
    (the time of the checkpoints' folder `previous`). Returns that folder, or None if nothing was there."""
    grids = [n for n in os.listdir(config.OUTPUT_DIR)
             if re.fullmatch(r'epoch_\d+\.png', n) and int(n[len('epoch_'):-len('.png')]) > epoch]
    copies = [n for n in RUN_OUTPUTS if os.path.exists(os.path.join(config.OUTPUT_DIR, n))]
    if not grids and not copies:
        return None
    target = _new_previous(config.OUTPUT_DIR, os.path.basename(previous)[len('previous-'):])
    for name in grids:
        os.replace(os.path.join(config.OUTPUT_DIR, name), os.path.join(target, name))
    for name in copies:
        source = os.path.join(config.OUTPUT_DIR, name)
        (shutil.copytree if os.path.isdir(source) else shutil.copy2)(source, os.path.join(target, name))
    write_owner(target, previous)  # that folder now goes with the moved saves
    return target


def _owner_record():
    """OUTPUT_DIR's run.json as a dict, or None if there is none."""
    path = os.path.join(config.OUTPUT_DIR, OWNER)
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            record = json.load(f)
        if not isinstance(record['BACKUP_DIR'], str):
            raise TypeError('BACKUP_DIR is not a path')
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise UserError(f'{path} is unreadable ({error!r}); it names the BACKUP_DIR whose run wrote '
                        f'loss.csv beside it: restore it, or move loss.csv away')
    return record


def read_owner():
    """Real path of the BACKUP_DIR whose run wrote OUTPUT_DIR's files (loss.csv...), or None if unknown.
    Without a record (older versions wrote none): this BACKUP_DIR if its config.json names OUTPUT_DIR."""
    record = _owner_record()
    if record is None:
        saved = read_run_config() or {}
        named = os.path.realpath(saved['OUTPUT_DIR']) if isinstance(saved.get('OUTPUT_DIR'), str) else None
        return os.path.realpath(config.BACKUP_DIR) if named == os.path.realpath(config.OUTPUT_DIR) else None
    return os.path.realpath(record['BACKUP_DIR'])


def owns_outputs():
    """Whether OUTPUT_DIR's files (loss.csv...) are this BACKUP_DIR's run's.

    run.json names their run's folder by its path and by its path from OUTPUT_DIR (which holds
    when the project folder is moved or renamed), and gives the run's id. They are this run's if
    the ids agree and a path names this folder, or no longer names a folder that holds that run
    (the folder moved). A run.json of older versions, with no id, is this run's if its path names
    this folder, or names none any more while this BACKUP_DIR's config.json names OUTPUT_DIR."""
    here = os.path.realpath(config.BACKUP_DIR)
    record = _owner_record()
    if record is None:
        return read_owner() == here
    theirs, mine = record.get(RUN_ID), run_id()
    if theirs and mine and theirs != mine:
        return False
    output = os.path.realpath(config.OUTPUT_DIR)
    places = {os.path.realpath(os.path.join(output, record[key])) for key in ('BACKUP_DIR', 'BACKUP_DIR_FROM_OUTPUT')
              if isinstance(record.get(key), str)}
    if here in places:
        return True
    if any(os.path.isdir(place) and (theirs is None or run_id(place) == theirs) for place in places):
        return False  # that run's folder is still there: these files are its
    if theirs:
        return theirs == mine
    saved = read_run_config() or {}
    return isinstance(saved.get('OUTPUT_DIR'), str) and os.path.realpath(saved['OUTPUT_DIR']) == output


def write_owner(output_dir=None, backup_dir=None):
    """Record backup_dir (BACKUP_DIR) and its run's id as the owner of output_dir's (OUTPUT_DIR's) files."""
    output_dir, backup_dir = output_dir or config.OUTPUT_DIR, backup_dir or config.BACKUP_DIR
    record = {'BACKUP_DIR': os.path.realpath(backup_dir), RUN_ID: run_id(backup_dir)}
    try:
        record['BACKUP_DIR_FROM_OUTPUT'] = os.path.relpath(record['BACKUP_DIR'], os.path.realpath(output_dir))
    except ValueError:
        pass  # on another drive (Windows): the full path alone
    try:
        atomic.write_json(os.path.join(output_dir, OWNER), record)
    except OSError as error:
        raise UserError(f'cannot write in {output_dir}/ ({error.strerror}): fix its permissions or set '
                        f'--OUTPUT_DIR to a folder you can write')


def run_id(directory=None):
    """The id in the config.json of directory (BACKUP_DIR), or None: none there, or written before ids."""
    try:
        value = (read_run_config(directory) or {}).get(RUN_ID)
    except UserError:
        return None  # read_run_config says what is wrong with a damaged one when it is resumed
    return value if isinstance(value, str) else None


def _renew_run_id(directory):
    """Give the run whose config.json is in directory an id of its own (its saves were split off)."""
    try:
        saved = read_run_config(directory)
    except UserError:
        return  # a damaged one stays as it is, for read_run_config to report when it is resumed
    if saved is not None:
        atomic.write_json(os.path.join(directory, 'config.json'), {**saved, RUN_ID: uuid.uuid4().hex})


def read_run_config(directory=None):
    """The config.json saved with the checkpoints, or None if there is none."""
    path = os.path.join(directory or config.BACKUP_DIR, 'config.json')
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            saved = json.load(f)
    except (OSError, ValueError) as error:
        raise UserError(f'{path} is unreadable ({error}); restore it or start over with --fresh')
    if not isinstance(saved, dict):
        raise UserError(f'{path} holds a {type(saved).__name__}, not the settings of a run; restore it '
                        f'or start over with --fresh')
    for key, value in saved.items():
        default = getattr(config, key, None) if key in config.keys() else None
        if default is not None and not _same_type(value, default):
            raise UserError(f'{path}: {key}={value!r}: expected {type(default).__name__}, got '
                            f'{type(value).__name__}; write "{key}": {json.dumps(_as_type(value, default))} there')
    return {**NEWER_KEYS, **saved}


def _same_type(value, default):
    """As the command line checks it: the type of config.py's value, an int also for a float."""
    return type(value) is type(default) or (type(default) is float and type(value) is int)


def _as_type(value, default):
    """value as default's type if it reads as one ("32" -> 32, 32.0 -> 32), else default."""
    if isinstance(value, str):
        try:
            value = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            return default
    if type(default) is int and type(value) is float and value.is_integer():
        value = int(value)
    return value if _same_type(value, default) else default


def write_run_config():
    """BACKUP_DIR/config.json: the settings, and the run's id (a new one for a new run)."""
    atomic.write_json(_path('config.json'), {**config.as_dict(), RUN_ID: run_id() or uuid.uuid4().hex})


def check_compatible(saved, way_out, folder=None):
    """A checkpoint only restores into the graph it was saved from: raise if a key of
    ARCHITECTURE_KEYS differs from `saved`, the config.json of `folder` (BACKUP_DIR).
    way_out: what to do, with {key}, {saved} and {now} filled in."""
    for key in config.ARCHITECTURE_KEYS:
        now = getattr(config, key)
        if key in saved and saved[key] != now:
            raise UserError(f'{folder or config.BACKUP_DIR}/ was trained with {key}={saved[key]!r} but the '
                            f'config says {key}={now!r}; '
                            + way_out.format(key=key, saved=saved[key], now=now))


def apply_run_config(argv):
    """Apply the architecture (ARCHITECTURE_KEYS) of BACKUP_DIR/config.json, then the command line
    on top; return the other arguments. config.py and the command line decide everything else.

    For test.py and other users of a trained model: the graph must match the checkpoints, so
    overriding one of those keys is an error. The hole sizes are config.py's unless they do not
    fit the model's LOCAL_SIZE (a 64x64 run such as the demo's): then the run's own.
    """
    config.parse_overrides(argv)  # first pass: learn BACKUP_DIR, reject unknown keys early
    saved = read_run_config()
    if saved is None:
        return config.parse_overrides(argv)
    model = {key: saved[key] for key in config.ARCHITECTURE_KEYS if key in saved}
    holes_given = any(arg.startswith(('--HOLE_MIN=', '--HOLE_MAX=')) for arg in argv)
    if not holes_given and config.HOLE_MAX > model.get('LOCAL_SIZE', config.LOCAL_SIZE):
        # config.py's holes do not fit this model's local patch (a 64x64 run such as the demo's)
        model.update({key: saved[key] for key in ('HOLE_MIN', 'HOLE_MAX') if key in saved})
    try:
        config.set_values(model)  # checked as command-line values are
    except config.ConfigError as error:
        if getattr(error, 'key', None) in ('HOLE_MIN', 'HOLE_MAX'):
            raise UserError(f'{error}, the model\'s in {config.BACKUP_DIR}/config.json: give holes that fit '
                            f'it (it was trained with {saved.get("HOLE_MIN")}-{saved.get("HOLE_MAX")} px)') from None
        raise UserError(f'{config.BACKUP_DIR}/config.json: {error}; correct it there') from None
    rest = config.parse_overrides(argv)  # the command line wins
    check_compatible(saved, f'drop --{{key}}={{now!r}} (the architecture comes from '
                            f'{config.BACKUP_DIR}/config.json)')
    return rest


def changed_settings(saved):
    """'KEY old -> new' for every setting (paths aside) that differs from the saved run's."""
    return [f'{key} {saved[key]!r} -> {getattr(config, key)!r}' for key in config.keys()
            if key in saved and not key.endswith('_DIR') and saved[key] != getattr(config, key)]


def _step(path):
    match = re.fullmatch(rf'{LATEST}-(\d+)', os.path.basename(path or ''))
    return int(match.group(1)) if match else None


def _saves():
    """Prefixes of the latest-<step> saves in BACKUP_DIR, newest first."""
    prefixes = [index[:-len('.index')] for index in glob.glob(glob.escape(_path(LATEST)) + '-*.index')]
    return sorted((p for p in prefixes if _step(p) is not None), key=_step, reverse=True)


def _way_out(than=None, training=False):
    """What to run instead: the newest save older than checkpoint `than` (by step), or --fresh.
    training: said to train.py, which takes --resume and --fresh; the scripts that only read a
    model take neither, so they are told the train.py command."""
    older = [p for p in _saves() if p != than and (_step(than) is None or _step(p) < _step(than))]
    if than != _path(PRETRAINED) and os.path.exists(_path(f'{PRETRAINED}.index')):
        older.append(_path(PRETRAINED))
    run = '' if training else 'python train.py '
    fresh = f'start over with {run}--fresh (which moves the old files aside)'
    return f'resume from an older save with {run}--resume {older[0]} or {fresh}' if older else fresh


def find(name=LATEST, training=False):
    """Path prefix of the newest `latest` checkpoint, or of `pretrained` or `best`, or None if never saved.

    Raises UserError when saves exist but the `checkpoint` file does not say which is the
    newest (missing, damaged, or naming files that are gone): starting over there would
    overwrite them. training: the way out is said to train.py (see _way_out).
    """
    if name in (PRETRAINED, BEST):
        path = _path(name)
        return path if os.path.exists(f'{path}.index') else None
    index = _path('checkpoint')
    if not os.path.exists(index):
        if _saves():
            raise UserError(f'{index} is missing, so the newest of the saves in {config.BACKUP_DIR}/ is '
                            f'unknown; nothing was changed: {_way_out(training=training)}')
        return None
    try:
        state = tf1.train.get_checkpoint_state(config.BACKUP_DIR)  # None if it does not parse
    except (tf.errors.OpError, ValueError):
        state = None
    if state is None or not state.model_checkpoint_path:
        raise UserError(f'{index} is damaged (it names no checkpoint); nothing was changed: '
                        f'{_way_out(training=training)}')
    path = state.model_checkpoint_path  # already joined to BACKUP_DIR (relative paths saved)
    if not os.path.exists(f'{path}.index'):
        raise UserError(f'{index} points at {path}, whose files are missing; nothing was changed: '
                        f'{_way_out(path, training)}')
    return path


def trained(which=None):
    """{'pretrained': path, 'latest': path} of the trained models that exist, or only `which`.

    With none of the user's own, the shipped face model (glcic/shipped.py), said in one line;
    which='shipped' picks it outright. Raises UserError when there is no model at all, or when
    the saves exist but which is newest is unknown."""
    if which == shipped.NAME:
        return shipped.use()
    names = [which] if which else [PRETRAINED, LATEST]
    found = {name: find(name) for name in names}
    found = {name: path for name, path in found.items() if path}
    if not found and not which and shipped.path():
        print(f'note: no trained model in {config.BACKUP_DIR}/: completing with the shipped one, '
              f'{shipped.describe()} (python train.py trains your own)')
        return shipped.use()
    if not found:
        what = f'no {which} checkpoint' if which else 'no trained model'
        raise UserError(f'{what} in {config.BACKUP_DIR}/: train first with python train.py '
                        f'(e.g. python to_npy.py --demo 200 && python train.py)')
    return found


def adopt(saver):
    """Hand a new Saver the saves the earlier runs kept, so it goes on deleting the oldest
    (else every resume would leave KEEP_CHECKPOINTS + 1 more on the disk)."""
    state = tf1.train.get_checkpoint_state(config.BACKUP_DIR)
    if state is not None:
        saver.recover_last_checkpoints(list(state.all_model_checkpoint_paths))


def remove_partial(keep=None):
    """Delete what saves a crash cut short; call with the lock held. Returns the files removed.

    TensorFlow writes each file as NAME.tempstateNNNN and renames it only when complete. The
    Saver then lists the save in the `checkpoint` file, and only after that deletes the save
    that fell off the list. A kill in between leaves a latest-<step> the list does not name
    (the new save, or the old one), which the Saver would never rotate away. `keep`: a
    checkpoint prefix the user asked for (--resume), never removed.
    """
    removed = glob.glob(os.path.join(glob.escape(config.BACKUP_DIR), '*.tempstate*'))
    try:
        state = tf1.train.get_checkpoint_state(config.BACKUP_DIR)
    except (tf.errors.OpError, ValueError):
        state = None  # find() explains a damaged `checkpoint`; nothing else is touched
    listed = {os.path.abspath(p) for p in state.all_model_checkpoint_paths} if state else set()
    if any(os.path.exists(f'{p}.index') for p in listed):
        keep = os.path.abspath(keep) if keep else None
        for prefix in _saves():
            if os.path.abspath(prefix) not in listed | {keep}:
                removed += glob.glob(glob.escape(prefix) + '.*')
    for path in removed:
        os.remove(path)
    return removed


def require(path):
    """The one-line error for a checkpoint path whose files are not there."""
    if not os.path.exists(f'{path}.index'):
        raise UserError(f'no checkpoint {path} ({path}.index is missing)')


def restore(sess, saver, path, optional=(), training=False):
    """Load a checkpoint, turning a damaged one into a one-line error with the way out.

    optional: names of variables that older checkpoints lack; they keep their initial
    values (the graph must not be finalized yet, to build the Saver that skips them).
    training: the way out is said to train.py (see _way_out).
    """
    require(path)
    try:
        held = tf1.train.NewCheckpointReader(path).get_variable_to_shape_map()
        _check_shapes(sess.graph, path, held, training)
        missing = [v for v in tf1.global_variables() if v.op.name in optional and v.op.name not in held]
        if missing:
            kept = [v for v in tf1.global_variables() if v not in missing]
            tf1.train.Saver(kept).restore(sess, path)
            sess.run(tf1.variables_initializer(missing))
        else:
            saver.restore(sess, path)
    except (tf.errors.OpError, ValueError) as error:
        damaged = _damaged_file(path, error)
        what = f'{damaged} is damaged' if damaged else f'checkpoint {path} does not match this graph'
        raise UserError(f'{what} ({tf_reason(error)}); nothing was changed: {_way_out(path, training)}')


def _check_shapes(graph, path, held, training):
    """Raise if checkpoint `path` (its variables' shapes: `held`) holds a variable of `graph` in
    another shape: the Saver would load it all the same (a resource variable takes any shape) and
    the first step would fail."""
    for variable in graph.get_collection(tf1.GraphKeys.GLOBAL_VARIABLES):
        name, needed = variable.op.name, variable.shape.as_list()
        if name in held and list(held[name]) != needed:
            raise UserError(f'checkpoint {path} does not fit this graph: it holds {name} as '
                            f'{list(held[name])}, the graph needs {needed}; nothing was changed: '
                            + _other_architecture(path, held, training))


def _other_architecture(path, held, training):
    """The way out for a checkpoint built with other ARCHITECTURE_KEYS values than config's: give
    those it was trained with, as its own config.json says them and its generator's shapes show them."""
    try:
        saved = read_run_config(os.path.dirname(os.path.abspath(path))) or {}
    except UserError:
        saved = {}  # a damaged config.json beside it: the shapes alone
    built = {key: saved[key] for key in config.ARCHITECTURE_KEYS if key in saved}
    built.update(network.architecture_of(held, (config.WIDTH, built.get('WIDTH'))))  # the shapes win
    differ = {key: value for key, value in built.items() if value != getattr(config, key)}
    now = _listed({key: getattr(config, key) for key in config.ARCHITECTURE_KEYS})
    if training:
        if differ:
            return f'it was trained with {_listed(differ)}: pass {_listed(differ, "--")} to resume it, or --fresh'
        return f'it was trained with other values than {now}: pass the ones it was trained with, or --fresh'
    where = os.path.join(config.BACKUP_DIR, 'config.json')  # test.py, export.py, app.py take the architecture from it
    if differ:
        return (f'it was trained with {_listed(differ)}: write '
                + ', '.join(f'"{key}": {json.dumps(value)}' for key, value in differ.items()) + f' in {where}')
    return (f'it was trained with other values than {now} ({where}): write the ones it was trained with '
            f'there, or train anew with python train.py --fresh')


def _listed(values, prefix=''):
    """{'WIDTH': 8} -> 'WIDTH=8' (with prefix '--': '--WIDTH=8')."""
    return ' '.join(f'{prefix}{key}={value!r}' for key, value in values.items())


def _damaged_file(path, error):
    """Which file of checkpoint `path` is unreadable, or None if both read (the graph differs)."""
    try:
        tf1.train.NewCheckpointReader(path)
    except (tf.errors.OpError, ValueError):
        return f'{path}.index'
    data_files = sorted(glob.glob(glob.escape(path) + '.data-*'))
    if not data_files:
        return f'{path}.data-00000-of-00001'
    if isinstance(error, (tf.errors.DataLossError, tf.errors.OutOfRangeError)):
        return ', '.join(data_files)
    return None


def save(sess, saver, name, step=None):
    """Save the session; a failed save (disk full, read-only) keeps the previous one in charge."""
    try:
        return saver.save(sess, _path(name), global_step=step, write_meta_graph=False,
                          write_state=name == LATEST)
    except (tf.errors.OpError, OSError) as error:
        raise _save_failed(name, error)


def alias(source, name):
    """Save checkpoint `source` (a path prefix) again as `name`, without writing its bytes twice:
    each file hard-linked, or copied where the file system has no hard links. Each goes in under
    a temporary name, then replaces name's file, the .index last (as TensorFlow's own saves).
    Returns name's path prefix."""
    target = _path(name)
    suffixes = [path[len(source):] for path in sorted(glob.glob(glob.escape(source) + '.data-*'))]
    try:
        for suffix in suffixes + ['.index']:
            temp = f'{target}{suffix}.tempstate-{os.getpid()}'
            try:
                os.link(source + suffix, temp)
            except OSError:
                shutil.copyfile(source + suffix, temp)
            os.replace(temp, target + suffix)
    except OSError as error:
        raise _save_failed(name, error)
    return target


def _save_failed(name, error):
    """The error for a save of `name` that failed; removes what it had half written."""
    for partial in glob.glob(glob.escape(_path(name)) + '*.tempstate*'):
        os.remove(partial)  # the half-written file would only hold on to the space a rerun needs
    return UserError(f'could not save to {config.BACKUP_DIR}/ ({tf_reason(error)}); the previous '
                     f'checkpoint is unchanged: free disk space or fix permissions, then rerun')
