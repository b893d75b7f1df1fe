"""The third round of hostile inputs (issue 39, items 5 and 6): a checkpoint of another architecture
is one line naming the checkpoint, the variable, both shapes and the setting to give, in train.py,
test.py, export.py and app.py alike, with nothing changed; a project folder that was moved or
renamed resumes, while another run's output/ is still refused."""
import gc
import glob
import importlib.util
import json
import os
import shutil
import signal

import pytest
import tensorflow as tf

import app
import config
import export
import network
import to_npy
import train
from glcic import backup, errors, graphs, plots
from conftest import ROOT, TINY, tiny_args, tiny_graph, train_in_process, untrained_checkpoint

# Loaded from its path: `import test` could find Python's own test package instead.
_spec = importlib.util.spec_from_file_location('glcic_test_script_round3b', os.path.join(ROOT, 'test.py'))
script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(script)


def files(folder):
    """{path under folder: bytes} of every file, to show that nothing changed."""
    found = {}
    for root, _, names in os.walk(folder):
        for name in names:
            if name != 'train.lock':  # its holder's pid changes with every run
                path = os.path.join(root, name)
                with open(path, 'rb') as f:
                    found[os.path.relpath(path, folder)] = f.read()
    return found


def release_lock():
    """The failed main()'s frames held BACKUP_DIR's lock file open; a dead process would not."""
    gc.collect()


# --- 5. a checkpoint whose architecture is not the graph's ---

@pytest.fixture(scope='module')
def width8(tmp_path_factory):
    """A real (untrained) checkpoint at WIDTH=8: the folder with npy/, backup/ (latest-0) and output/."""
    root = tmp_path_factory.mktemp('width8')
    untrained_checkpoint(root)
    assert json.loads((root / 'backup' / 'config.json').read_text())['WIDTH'] == 8
    return root


def test_a_resume_of_a_save_with_another_width_is_one_line_and_changes_nothing(width8, tmp_path, capsys):
    """The issue's case: --fresh --WIDTH=16 moves the WIDTH=8 run aside, then --resume of its save
    at WIDTH=16 (which backup/config.json now has) failed at the first step with a traceback."""
    shutil.copytree(width8, tmp_path, dirs_exist_ok=True)
    assert train_in_process(tmp_path, capsys, '--fresh', '--WIDTH=16', '--MAX_EPOCH=0')[0] == 0
    previous, = glob.glob(f'{tmp_path}/backup/previous-*')
    before = files(tmp_path)
    with pytest.raises(errors.UserError) as error:
        train_in_process(tmp_path, capsys, '--WIDTH=16', '--resume', f'{previous}/latest-0')
    assert str(error.value) == (f'{previous}/ was trained with WIDTH=8 but the config says WIDTH=16; pass '
                                f'--WIDTH=8 to resume it, or --fresh to start a new run')
    del error
    release_lock()
    assert files(tmp_path) == before

    # Without the config.json beside it (a save copied by hand), the checkpoint's own shapes say it.
    os.remove(f'{previous}/config.json')
    before = files(tmp_path)
    with pytest.raises(errors.UserError) as error:
        train_in_process(tmp_path, capsys, '--WIDTH=16', '--resume', f'{previous}/latest-0')
    assert str(error.value) == (f'checkpoint {previous}/latest-0 does not fit this graph: it holds '
                                f'generator/conv1/w as [5, 5, 4, 8], the graph needs [5, 5, 4, 4]; nothing was '
                                f'changed: it was trained with WIDTH=8: pass --WIDTH=8 to resume it, or --fresh')
    del error
    release_lock()
    assert files(tmp_path) == before

    # The way out works.
    status, printed = train_in_process(tmp_path, capsys, '--WIDTH=8', '--MAX_EPOCH=1', '--resume',
                                       f'{previous}/latest-0')
    assert status == 0 and f'resumed {previous}/latest-0: phase 1, epoch 1' in printed
    assert 'epoch 1 phase 1: ' in printed


def test_a_checkpoint_of_another_image_size_names_the_keys_its_config_json_gives(width8, tmp_path):
    """IMAGE_SIZE and LOCAL_SIZE shape only the discriminators' last layers: the config.json beside
    the checkpoint names them, and without it the line lists the settings to compare."""
    shutil.copytree(width8 / 'backup', tmp_path / 'backup')
    config.set_values(TINY)
    model, sess = tiny_graph(IMAGE_SIZE=64, LOCAL_SIZE=32)
    shape = (f'it holds discriminator/global/fc/w as [64, 128], the graph needs [256, 128]; nothing was '
             f'changed: ')
    with sess, sess.graph.as_default():
        saver = tf.compat.v1.train.Saver()
        with pytest.raises(errors.UserError) as error:
            backup.restore(sess, saver, str(tmp_path / 'backup' / 'latest-0'), training=True)
        assert str(error.value) == (f'checkpoint {tmp_path}/backup/latest-0 does not fit this graph: {shape}it was '
                                    f'trained with IMAGE_SIZE=32 LOCAL_SIZE=16: pass --IMAGE_SIZE=32 --LOCAL_SIZE=16 '
                                    f'to resume it, or --fresh')
        os.remove(tmp_path / 'backup' / 'config.json')
        with pytest.raises(errors.UserError) as error:
            backup.restore(sess, saver, str(tmp_path / 'backup' / 'latest-0'), training=True)
        assert str(error.value) == (f'checkpoint {tmp_path}/backup/latest-0 does not fit this graph: {shape}it was '
                                    f'trained with other values than IMAGE_SIZE=64 LOCAL_SIZE=32 MASK_CHANNEL=True '
                                    f'WIDTH=8: pass the ones it was trained with, or --fresh')


@pytest.fixture
def misdescribed(width8, tmp_path):
    """width8's checkpoint beside a config.json that says WIDTH=16 (and no mask channel)."""
    folder = tmp_path / 'backup'
    shutil.copytree(width8 / 'backup', folder)
    saved = json.loads((folder / 'config.json').read_text())
    (folder / 'config.json').write_text(json.dumps({**saved, 'WIDTH': 16, 'MASK_CHANNEL': False}))
    return folder


def misfit(folder):
    """The line test.py, export.py and app.py give for `misdescribed`."""
    return (f'checkpoint {folder}/latest-0 does not fit this graph: it holds generator/conv1/w as [5, 5, 4, 8], '
            f'the graph needs [5, 5, 3, 4]; nothing was changed: it was trained with MASK_CHANNEL=True WIDTH=8: '
            f'write "MASK_CHANNEL": true, "WIDTH": 8 in {folder}/config.json')


def test_test_py_with_a_config_json_that_misdescribes_the_checkpoint_is_one_line(misdescribed, tmp_path):
    with pytest.raises(errors.UserError) as error:
        script.main([f'--BACKUP_DIR={misdescribed}', f'--OUTPUT_DIR={tmp_path}/output'])
    assert str(error.value) == misfit(misdescribed)
    assert os.listdir(tmp_path / 'output' / 'test') == []


def test_export_py_with_a_config_json_that_misdescribes_the_checkpoint_is_one_line(misdescribed, tmp_path):
    with pytest.raises(errors.UserError) as error:
        export.main([f'--BACKUP_DIR={misdescribed}', f'--out={tmp_path}/export'])
    assert str(error.value) == misfit(misdescribed)
    assert not (tmp_path / 'export').exists()


def test_app_py_says_what_does_not_fit_and_loads_once_corrected(misdescribed):
    backup.apply_run_config([f'--BACKUP_DIR={misdescribed}'])
    handler = app.Handler.load()
    assert handler.nets is None
    assert handler.problem == misfit(misdescribed) + '. Then restart python app.py.'

    saved = json.loads((misdescribed / 'config.json').read_text())  # the line's way out
    (misdescribed / 'config.json').write_text(json.dumps({**saved, 'WIDTH': 8, 'MASK_CHANNEL': True}))
    backup.apply_run_config([f'--BACKUP_DIR={misdescribed}'])
    handler = app.Handler.load()
    try:
        assert handler.problem is None and set(handler.nets.sessions) == {backup.LATEST}
    finally:
        handler.close()


@pytest.mark.parametrize('width, mask_channel, prefer, found', [
    (1, True, (), 1), (3, False, (), 3), (8, True, (), 8), (64, True, (), 52), (64, True, (64,), 64)])
def test_the_generator_s_shapes_give_its_width_and_mask_channel(width, mask_channel, prefer, found):
    """52 to 64 give every layer the same channels: the first of `prefer` that fits is named."""
    config.set_values({'WIDTH': width, 'MASK_CHANNEL': mask_channel})
    with tf.Graph().as_default():
        shapes = {v.op.name: v.shape.as_list() for v in graphs.Inference().variables}
    assert network.architecture_of(shapes, prefer) == {'MASK_CHANNEL': mask_channel, 'WIDTH': found}
    assert network.architecture_of({'state/step': []}) == {}


# --- 6. a moved or renamed project folder resumes; another run's output/ is still refused ---

HERE = [f'--{key}={value}' for key, value in TINY.items()] + [
    '--NPY_DIR=data/npy', '--BACKUP_DIR=backup', '--OUTPUT_DIR=output', '--IMAGE_DIR=data/images']


def project(folder, monkeypatch):
    """A project folder with 20 prepared faces (2 steps an epoch), the current folder from now on."""
    folder.mkdir()
    monkeypatch.chdir(folder)
    to_npy.main(['--demo', '20', *HERE])
    return folder


def train_here(capsys, *args):
    """train.main in the current folder with its default relative paths, as `python train.py` runs."""
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with tf.Graph().as_default():
            status = train.main([*HERE, *args])
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        gc.collect()  # main()'s frames may still hold BACKUP_DIR's lock file
    return status, capsys.readouterr().out


def epochs_in(folder):
    return [int(row['epoch']) for row in plots.read_rows(str(folder / 'output' / 'loss.csv'))]


def test_a_renamed_project_folder_resumes(tmp_path, monkeypatch, capsys):
    project(tmp_path / 'projA', monkeypatch)
    assert train_here(capsys, '--MAX_EPOCH=1')[0] == 0
    os.rename(tmp_path / 'projA', tmp_path / 'projB')
    monkeypatch.chdir(tmp_path / 'projB')
    status, printed = train_here(capsys, '--MAX_EPOCH=2')
    assert status == 0 and 'resumed backup/latest-2: phase 1, epoch 2' in printed, printed
    assert epochs_in(tmp_path / 'projB') == [1, 2]
    owner = json.loads((tmp_path / 'projB' / 'output' / backup.OWNER).read_text())
    assert owner['BACKUP_DIR'] == str(tmp_path / 'projB' / 'backup')
    assert owner[backup.RUN_ID] == json.loads((tmp_path / 'projB' / 'backup' / 'config.json').read_text())[
        backup.RUN_ID]

    # Going back splits the run in two: the saves moved aside, and their copy of the losses, get an id of their own.
    status, printed = train_here(capsys, '--MAX_EPOCH=1', '--resume', 'backup/latest-2')
    assert status == 0 and 'going back to backup/latest-2' in printed
    previous, = glob.glob('backup/previous-*')
    outputs, = glob.glob('output/previous-*')
    ids = {path: json.loads(open(path).read())[backup.RUN_ID] for path in (
        'backup/config.json', f'{previous}/config.json', 'output/run.json', f'{outputs}/run.json')}
    assert ids['backup/config.json'] == ids['output/run.json'] != ids[f'{previous}/config.json']
    assert ids[f'{previous}/config.json'] == ids[f'{outputs}/run.json']

    # backup/ alone renamed: the run id and the loss rows still go with it.
    os.rename('backup', 'saves')
    status, printed = train_here(capsys, '--BACKUP_DIR=saves', '--MAX_EPOCH=2')
    assert status == 0 and 'resumed saves/latest-2: phase 1, epoch 2' in printed, printed
    assert epochs_in(tmp_path / 'projB') == [1, 2]


def test_a_project_folder_moved_with_an_older_versions_run_json_resumes(tmp_path, monkeypatch, capsys):
    """Older versions wrote run.json with the full path of backup/ and no run id."""
    project(tmp_path / 'projA', monkeypatch)
    assert train_here(capsys, '--MAX_EPOCH=1')[0] == 0
    old = {'BACKUP_DIR': str(tmp_path / 'projA' / 'backup')}
    (tmp_path / 'projA' / 'output' / backup.OWNER).write_text(json.dumps(old))
    saved = json.loads((tmp_path / 'projA' / 'backup' / 'config.json').read_text())
    saved.pop('run_id', None)
    (tmp_path / 'projA' / 'backup' / 'config.json').write_text(json.dumps(saved))
    (tmp_path / 'elsewhere').mkdir()
    os.rename(tmp_path / 'projA', tmp_path / 'elsewhere' / 'projB')
    monkeypatch.chdir(tmp_path / 'elsewhere' / 'projB')
    status, printed = train_here(capsys, '--MAX_EPOCH=2')
    assert status == 0 and 'resumed backup/latest-2: phase 1, epoch 2' in printed, printed
    assert epochs_in(tmp_path / 'elsewhere' / 'projB') == [1, 2]


def test_another_runs_output_is_still_refused(tmp_path, monkeypatch, capsys):
    """A copy of backup/ beside the original, sharing its output/; and another run's backup/ put in
    the place of this one's: both refused, nothing changed."""
    other = project(tmp_path / 'other', monkeypatch)
    assert train_here(capsys, '--MAX_EPOCH=1')[0] == 0
    mine = project(tmp_path / 'mine', monkeypatch)
    assert train_here(capsys, '--MAX_EPOCH=1')[0] == 0

    shutil.copytree(mine / 'backup', mine / 'copy', ignore=shutil.ignore_patterns('train.lock'))
    before = files(mine)
    with pytest.raises(errors.UserError) as error:
        train_here(capsys, '--MAX_EPOCH=2', '--BACKUP_DIR=copy')
    assert str(error.value) == (f'output/loss.csv holds the losses of the run in {mine}/backup, not of this one '
                                f'(copy); nothing was changed: give this run its own --OUTPUT_DIR=copy-output')
    del error
    assert files(mine) == before

    shutil.rmtree(mine / 'backup')
    shutil.copytree(other / 'backup', mine / 'backup', ignore=shutil.ignore_patterns('train.lock'))
    before = files(mine)
    with pytest.raises(errors.UserError) as error:
        train_here(capsys, '--MAX_EPOCH=2')
    assert str(error.value) == (f'output/loss.csv holds the losses of an earlier run in {mine}/backup (its run id '
                                f'is not this one\'s), not of this one (backup); nothing was changed: give this '
                                f'run its own --OUTPUT_DIR=backup-output')
    del error
    assert files(mine) == before
