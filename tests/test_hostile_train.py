"""Hostile inputs to training: nothing lost, one line instead of a traceback, no hang.

Going back to an older save, two runs on one OUTPUT_DIR, a worker that never answers, bad
TF_CONFIG, unusable folders, a damaged loss.csv or config.json; and the crash safety of
atomic.py. Training runs are tiny (32x32, 38 images, 4 steps an epoch).
"""
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time

import numpy as np
import pytest

import config
import train
from glcic import atomic, backup, housekeeping, plots, replicas
from conftest import ROOT, TINY, free_ports, run_script, tiny_args
from glcic.errors import UserError

TF_NOISE = re.compile(r'^(WARNING: All log messages before absl::InitializeLog'
                      r'|[IWEF]\d{4} [\d:.]+ +\d+ [\w.]+:\d+\]|To enable the following instructions)')
PROGRESS = re.compile(r'^\s*(phase \d epoch \d+|decoding):.*\]\s*$')


def lines(stderr):
    """What the user reads on stderr: TensorFlow's start-up lines and progress bars aside."""
    assert 'Traceback' not in stderr, stderr[-3000:]
    return [line for line in stderr.replace('\r', '\n').splitlines()
            if line.strip() and not TF_NOISE.match(line) and not PROGRESS.match(line)]


def one_error(result):
    """The single `error: ...` line of a script that exited with status 2."""
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-3000:]
    said = lines(result.stderr)
    assert len(said) == 1 and said[0].startswith('error: '), said
    return said[0]


def rows(path):
    return plots.read_rows(str(path))


def clone(src, dst):
    """A run's backup/ (hard links: TensorFlow only ever replaces files) and a copy of its output/,
    whose owner record names the new backup/."""
    (dst / 'backup').mkdir(parents=True)
    for path in (src / 'backup').iterdir():
        if path.is_file() and path.name != 'train.lock':
            os.link(path, dst / 'backup' / path.name)
    shutil.copytree(src / 'output', dst / 'output')
    (dst / 'output' / 'run.json').write_text(json.dumps({'BACKUP_DIR': str(dst / 'backup')}))
    return dst


@pytest.fixture(scope='module')
def npy(tmp_path_factory):
    """38 training and 2 test images of synthetic faces."""
    tmp = tmp_path_factory.mktemp('npy')
    made = run_script('to_npy.py', '--demo', '40', *tiny_args(tmp))
    assert made.returncode == 0, made.stderr
    return tmp / 'npy'


@pytest.fixture(scope='module')
def trained(npy, tmp_path_factory):
    """A finished 3-epoch run: latest-4 (phase 1), pretrained (the same step), latest-8, latest-12."""
    tmp = tmp_path_factory.mktemp('trained')
    result = run_script('train.py', *tiny_args(tmp, NPY_DIR=npy, PRETRAIN_EPOCH=1, D_EPOCH=1, MAX_EPOCH=3))
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(rows(tmp / 'output' / 'loss.csv')) == 3
    assert {p.name for p in (tmp / 'backup').glob('*.index')} == {
        'latest-4.index', 'latest-8.index', 'latest-12.index', 'pretrained.index'}
    return tmp


def small_npy(tmp):
    """An NPY_DIR that train.py opens (zeros are enough for the checks that come before training)."""
    (tmp / 'npy').mkdir()
    for split, count in (('train', 16), ('test', 2)):
        np.save(tmp / 'npy' / f'x_{split}.npy', np.zeros((count, 32, 32, 3), np.uint8))
    return tmp / 'npy'


# --- going back to an older save -------------------------------------------------------------

@pytest.mark.slow
def test_resume_of_an_older_save_keeps_the_newer_saves_and_loss_rows(trained, tmp_path, npy):
    run = clone(trained, tmp_path / 'run')
    args = tiny_args(run, NPY_DIR=npy, PRETRAIN_EPOCH=1, D_EPOCH=1)
    back = run_script('train.py', *args, '--MAX_EPOCH=1', '--resume', str(run / 'backup' / 'latest-4'))
    assert back.returncode == 0, back.stderr[-3000:]
    assert len(rows(run / 'output' / 'loss.csv')) == 1  # this run now stands at epoch 1

    said = [line for line in back.stdout.splitlines() if line.startswith('going back')]
    assert len(said) == 1, back.stdout
    saves, = (run / 'backup').glob('previous-*')
    outputs, = (run / 'output').glob('previous-*')
    assert f'{saves}/' in said[0] and f'{outputs}/' in said[0], said[0]
    # The newer saves, whole (the same files), with a list of their own; here only the older one is listed.
    for name in ('latest-8.index', 'latest-12.index', 'latest-12.data-00000-of-00001'):
        assert os.path.samefile(saves / name, trained / 'backup' / name)
    assert backup_list(saves) == ['latest-8', 'latest-12']
    assert backup_list(run / 'backup') == ['latest-4']
    assert [int(r['epoch']) for r in rows(outputs / 'loss.csv')] == [1, 2, 3]
    assert sorted(p.name for p in outputs.glob('epoch_*.png')) == ['epoch_0002.png', 'epoch_0003.png']
    assert sorted(p.name for p in (run / 'output').glob('epoch_*.png')) == ['epoch_0001.png']

    # The command the line gives goes on with them: it resumes latest-12 and keeps its three rows.
    again = run_script('train.py', *tiny_args(run, NPY_DIR=npy, PRETRAIN_EPOCH=1, D_EPOCH=1, MAX_EPOCH=3,
                                              BACKUP_DIR=saves, OUTPUT_DIR=outputs))
    assert again.returncode == 0, again.stderr[-3000:]
    assert f'resumed {saves / "latest-12"}: phase 3, epoch 4' in again.stdout
    assert len(rows(outputs / 'loss.csv')) == 3


def backup_list(folder):
    """The saves a `checkpoint` file lists, oldest first (the last one is current)."""
    text = (folder / 'checkpoint').read_text()
    listed = re.findall(r'^all_model_checkpoint_paths: "(.*)"', text, re.M)
    assert re.search(r'^model_checkpoint_path: "(.*)"', text, re.M).group(1) == listed[-1]
    return listed


# --- two runs, one OUTPUT_DIR ---------------------------------------------------------------

def test_a_second_run_on_another_runs_output_dir_is_refused(trained_run, tmp_path, npy):
    shared = tmp_path / 'output'
    shutil.copytree(trained_run / 'output', shared)  # run A's files, A's backup/ named in run.json
    (shared / 'run.json').write_text(json.dumps({'BACKUP_DIR': str(trained_run / 'backup')}))
    before = (shared / 'loss.csv').read_bytes()
    other = tmp_path / 'runs' / 'b' / 'backup'
    result = run_script('train.py', *tiny_args(tmp_path, NPY_DIR=npy, BACKUP_DIR=other, OUTPUT_DIR=shared,
                                               MAX_EPOCH=0))
    line = one_error(result)
    assert f'{shared}/loss.csv holds the losses of the run in {trained_run / "backup"}' in line, line
    assert f'--OUTPUT_DIR={tmp_path / "runs" / "b" / "output"}' in line, line
    assert (shared / 'loss.csv').read_bytes() == before
    assert sorted(os.listdir(other)) == ['train.lock']  # nothing saved either

    # Files from before owners were recorded: another run's too, unless this BACKUP_DIR's config.json names them.
    (shared / 'run.json').unlink()
    with pytest.raises(UserError, match='holds the losses of another run'):
        train.main(tiny_args(tmp_path, NPY_DIR=npy, BACKUP_DIR=other, OUTPUT_DIR=shared, MAX_EPOCH=0))
    assert (shared / 'loss.csv').read_bytes() == before
    config.set_values({'BACKUP_DIR': str(trained_run / 'backup'), 'OUTPUT_DIR': str(shared)})
    assert backup.read_owner() is None  # trained_run's config.json names its own output/, not this copy
    named = tmp_path / 'named'
    named.mkdir()
    (named / 'config.json').write_text(json.dumps({'OUTPUT_DIR': str(shared)}))
    config.set_values({'BACKUP_DIR': str(named)})
    assert backup.read_owner() == str(named)


# --- a worker that never answers -------------------------------------------------------------

def start_alone(npy, tmp, *extra):
    """train.py as worker 0 of two, the other at a closed port; output to files, nothing blocks."""
    own, other = free_ports(2)
    env = {**os.environ, 'PYTHONUNBUFFERED': '1', 'TF_CONFIG': json.dumps({
        'cluster': {'worker': [f'127.0.0.1:{own}', f'127.0.0.1:{other}']}, 'task': {'type': 'worker', 'index': 0}})}
    out, err = open(tmp / 'out.txt', 'w'), open(tmp / 'err.txt', 'w')
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, 'train.py'), *tiny_args(tmp, NPY_DIR=npy), *extra],
                            cwd=ROOT, env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
    out.close()
    err.close()
    return proc, other


def wait_for_line(proc, path, words, timeout=180):
    deadline = time.monotonic() + timeout
    while words not in path.read_text():
        assert proc.poll() is None, f'train.py ended ({proc.returncode}):\n{path.read_text()}'
        assert time.monotonic() < deadline, f'no {words!r} in {timeout} s'
        time.sleep(0.1)


@pytest.mark.slow
@pytest.mark.parametrize('sig, status', [(signal.SIGINT, 130), (signal.SIGTERM, 0)])
def test_ctrl_c_and_sigterm_end_the_wait_for_a_worker_that_never_answers(npy, tmp_path, sig, status):
    proc, _ = start_alone(npy, tmp_path)
    try:
        wait_for_line(proc, tmp_path / 'out.txt', 'device: ')  # then it waits for worker 1
        time.sleep(3)
        proc.send_signal(sig)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            pytest.fail(f'train.py still waits 30 s after {sig.name}')
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == status
    said = lines((tmp_path / 'err.txt').read_text())
    assert said == [f'stopped by {sig.name} while waiting for the other workers; nothing was trained or saved'], said


@pytest.mark.slow
def test_the_wait_for_the_other_workers_is_a_setting(npy, tmp_path):
    proc, other = start_alone(npy, tmp_path, '--WORKER_WAIT_SECONDS=2')
    try:
        proc.wait(180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert 'waiting up to WORKER_WAIT_SECONDS=2 s for the other workers' in (tmp_path / 'out.txt').read_text()
    result = subprocess.CompletedProcess(proc.args, proc.returncode, (tmp_path / 'out.txt').read_text(),
                                         (tmp_path / 'err.txt').read_text())
    line = one_error(result)
    assert f'within WORKER_WAIT_SECONDS=2 s (127.0.0.1:{other})' in line, line


# --- one line instead of a traceback ----------------------------------------------------------

TWO = {'worker': ['127.0.0.1:1', '127.0.0.1:2']}


@pytest.mark.parametrize('tf_config, words', [
    ('{"cluster": {"worker": ["127.0.0.1:1"]', ['TF_CONFIG is not valid JSON']),
    (json.dumps({'cluster': TWO, 'task': {'type': 'worker', 'index': 2}}), ["'worker' index 2", '2 worker']),
    (json.dumps({'cluster': TWO, 'task': {'type': 'worker', 'index': -1}}), ['index -1']),
    (json.dumps({'cluster': TWO, 'task': {'type': 'chief', 'index': 0}}), ["type 'chief'", 'no list of addresses']),
    (json.dumps({'cluster': TWO}), ['"task"', '"type" and "index"']),
    (json.dumps({'cluster': TWO, 'task': {'type': 'worker'}}), ['"task"', '"index"']),
    (json.dumps([TWO]), ['holds a list']),
    (json.dumps({'cluster': {'worker': '127.0.0.1:1'}, 'task': {'type': 'worker', 'index': 0}}), ['TF_CONFIG']),
])
def test_tf_config_mistakes_are_one_line_errors(monkeypatch, tf_config, words):
    monkeypatch.setenv('TF_CONFIG', tf_config)
    with pytest.raises(UserError) as error:
        replicas.Replicas()
    message = str(error.value)
    assert '\n' not in message and all(word in message for word in words), message


def test_backup_or_output_dir_that_is_a_file_is_a_one_line_error(tmp_path):
    npy = small_npy(tmp_path)
    a_file = tmp_path / 'a_file'
    a_file.write_text('mine')
    for key, value, words in (('BACKUP_DIR', a_file, f'BACKUP_DIR={a_file} is a file'),
                              ('OUTPUT_DIR', a_file, f'OUTPUT_DIR={a_file} is a file'),
                              ('BACKUP_DIR', a_file / 'backup', f'cannot create BACKUP_DIR={a_file / "backup"}')):
        with pytest.raises(UserError, match=re.escape(words)):
            train.main(tiny_args(tmp_path, NPY_DIR=npy, **{key: value}, MAX_EPOCH=0))
        assert a_file.read_text() == 'mine'


def without_root_powers():
    """The command prefix under which permissions apply: root keeps them unless it drops the
    capability to override them (setpriv, util-linux)."""
    if os.geteuid() != 0:
        return []
    if not shutil.which('setpriv'):
        pytest.skip('running as root without setpriv: permissions cannot be tested')
    return ['setpriv', '--bounding-set=-dac_override,-dac_read_search']


@pytest.mark.parametrize('key', ['BACKUP_DIR', 'OUTPUT_DIR'])
def test_a_folder_it_cannot_write_is_a_one_line_error(tmp_path, key):
    """A real PermissionError: the folder is read-only and train.py runs without root's override."""
    npy = small_npy(tmp_path)
    locked = tmp_path / 'locked'
    locked.mkdir()
    locked.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    try:
        result = subprocess.run([*without_root_powers(), sys.executable, os.path.join(ROOT, 'train.py'),
                                 *tiny_args(tmp_path, NPY_DIR=npy, **{key: locked}, MAX_EPOCH=0)],
                                cwd=ROOT, capture_output=True, text=True, timeout=300)
    finally:
        locked.chmod(0o755)
    line = one_error(result)
    assert f'cannot write in {locked}/ (Permission denied' in line and f'--{key}' in line, line
    assert os.listdir(locked) == []


BLANKS = ',' * (len(housekeeping.LOSS_FIELDS) - 6)  # the row's columns after d_loss
BAD_ROWS = {
    'a word for a phase': f'2,x,8,3.3,0.01,1.8{BLANKS}\n',
    'a value missing': '2,2,8\n',
    'a value too many': f'2,2,8,3.3,0.01,1.8{BLANKS},7\n',
    'a word for a loss': f'2,2,8,3.3,low,1.8{BLANKS}\n',
}


@pytest.mark.parametrize('case', BAD_ROWS)
def test_a_malformed_loss_csv_row_is_a_one_line_error(tmp_path, case):
    output = tmp_path / 'output'
    output.mkdir()
    header = ','.join(housekeeping.LOSS_FIELDS) + '\n'
    (output / 'loss.csv').write_text(header + f'1,1,4,3.3,0.02,{BLANKS}\n' + BAD_ROWS[case])
    with pytest.raises(UserError, match=re.escape(f'{output}/loss.csv line 3 is not a row of losses')):
        plots.read_rows(str(output / 'loss.csv'))
    (output / 'loss.csv').write_bytes(header.encode() + b'1,1,4,\xff\n')
    with pytest.raises(UserError, match='loss.csv is unreadable'):
        plots.read_rows(str(output / 'loss.csv'))


def test_train_py_checks_loss_csv_before_building_the_graph(tmp_path):
    npy = small_npy(tmp_path)
    output = tmp_path / 'output'
    output.mkdir()
    (output / 'loss.csv').write_text(','.join(housekeeping.LOSS_FIELDS) + '\none,1,4,3.3,0.02,,\n')
    (output / 'run.json').write_text(json.dumps({'BACKUP_DIR': str(tmp_path / 'backup')}))  # this run's
    with pytest.raises(UserError, match='line 2 is not a row of losses'):
        train.main(tiny_args(tmp_path, NPY_DIR=npy, MAX_EPOCH=0))


# --- ways out that work ---------------------------------------------------------------------

def fake_saves(folder, *names, listed=True):
    """Index files that exist (enough for finding saves; restoring them would fail)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / f'{name}.index').write_bytes(b'')
    if listed:
        (folder / 'checkpoint').write_text(f'model_checkpoint_path: "{names[-1]}"\n')


def test_a_string_in_config_json_suggests_the_fix_that_works(tmp_path):
    npy = small_npy(tmp_path)
    fake_saves(tmp_path / 'backup', 'latest-4')
    saved = {**config.as_dict(), **TINY}
    path = tmp_path / 'backup' / 'config.json'
    path.write_text(json.dumps({**saved, 'IMAGE_SIZE': '32'}))
    with pytest.raises(UserError) as error:
        train.main(tiny_args(tmp_path, NPY_DIR=npy, MAX_EPOCH=0))
    assert 'write "IMAGE_SIZE": 32 there' in str(error.value), error.value
    with pytest.raises(UserError, match='write "IMAGE_SIZE": 32 there'):
        backup.apply_run_config([f'--BACKUP_DIR={tmp_path / "backup"}'])  # as test.py, export.py, app.py read it

    path.write_text(json.dumps(saved))  # as it says
    config.set_values({**TINY, 'BACKUP_DIR': str(tmp_path / 'backup')})
    backup.check_compatible(backup.read_run_config(), 'pass --{key}={saved!r}')  # no error: it resumes
    for value, fix in ((32.0, '32'), ('thirty', '32'), ('true', 'true')):
        key = 'FLIP' if fix == 'true' else 'IMAGE_SIZE'
        path.write_text(json.dumps({**saved, key: value}))
        with pytest.raises(UserError, match=re.escape(f'write "{key}": {fix} there')):
            backup.read_run_config()


def test_scripts_that_read_a_model_are_told_the_train_py_command(tmp_path):
    import tensorflow as tf
    tf1 = tf.compat.v1
    folder = tmp_path / 'backup'
    fake_saves(folder, 'latest-4', 'latest-8', listed=False)  # the `checkpoint` list is gone
    config.set_values({'BACKUP_DIR': str(folder)})
    with pytest.raises(UserError) as error:
        backup.trained()  # test.py's, export.py's and the page's lookup
    said = str(error.value)
    assert f'python train.py --resume {folder / "latest-8"} or start over with python train.py --fresh' in said
    with pytest.raises(UserError) as error:
        backup.find(training=True)  # train.py itself takes them as they are
    assert f'with --resume {folder / "latest-8"} or start over with --fresh' in str(error.value)

    (folder / 'latest-8.index').write_bytes(b'damaged')
    with tf.Graph().as_default(), tf1.Session() as sess:
        saver = tf1.train.Saver([tf1.get_variable('v', [1])])
        with pytest.raises(UserError) as error:
            backup.restore(sess, saver, str(folder / 'latest-8'))
    assert 'latest-8.index is damaged' in str(error.value)
    assert f'python train.py --resume {folder / "latest-4"} or start over with python train.py --fresh' \
        in str(error.value)


def test_to_npy_with_one_usable_image_says_so(tmp_path):
    import cv2
    images = tmp_path / 'images'
    images.mkdir()
    cv2.imwrite(str(images / 'face.png'), np.full((40, 40, 3), 128, np.uint8))
    line = one_error(run_script('to_npy.py', *tiny_args(tmp_path)))
    assert f'only one usable image in {images}/; need at least 2' in line, line
    (images / 'broken.jpg').write_bytes(b'not a photo')
    line = one_error(run_script('to_npy.py', *tiny_args(tmp_path)))
    assert f'only one usable image in {images}/ (1 files could not be read); need at least 2' in line, line


# --- crash safety of a replaced file --------------------------------------------------------

def test_atomic_replace_syncs_the_folder_after_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        info = os.fstat(fd)
        events.append(('fsync', stat.S_ISDIR(info.st_mode), info.st_ino))
        real_fsync(fd)

    def replace(src, dst):
        real_replace(src, dst)
        events.append(('replace', os.path.basename(dst)))
    monkeypatch.setattr(os, 'fsync', fsync)
    monkeypatch.setattr(os, 'replace', replace)
    atomic.write_text(str(tmp_path / 'a.txt'), 'new')
    assert (tmp_path / 'a.txt').read_text() == 'new'
    file_sync = ('fsync', False, (tmp_path / 'a.txt').stat().st_ino)
    assert events == [file_sync, ('replace', 'a.txt'), ('fsync', True, tmp_path.stat().st_ino)]
