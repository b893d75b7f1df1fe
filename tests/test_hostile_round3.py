"""The third round of hostile inputs (issue 39, items 3, 4, 9, 10 and 11): lossy results say what
they lose or are refused, Ctrl-C while a script loads is one line, a full OUTPUT_DIR is one line
and loses no save, loss.csv shows only saved epochs, and a run that met its stop rule can go on."""
import contextlib
import errno
import gc
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys

import cv2
import numpy as np
import pytest
import tensorflow as tf

import config
import to_npy
import train
from glcic import atomic, backup, errors, graphs, housekeeping, plots, synthetic
from conftest import ROOT, TINY, run_script, tiny_args, tiny_graph, train_in_process, untrained_checkpoint

# Loaded from its path: `import test` could find Python's own test package instead.
_spec = importlib.util.spec_from_file_location('glcic_test_script_round3', os.path.join(ROOT, 'test.py'))
script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(script)

# TensorFlow's own start-up lines, printed before any log level applies.
TF_NOISE = re.compile(r'^(WARNING: All log messages before absl::InitializeLog'
                      r'|[IWEF]\d{4} [\d:.]+ +\d+ [\w.]+:\d+\]'
                      r'|To enable the following instructions)')


def stderr_lines(result):
    return [line for line in result.stderr.splitlines() if line.strip() and not TF_NOISE.match(line)]


@pytest.fixture
def tiny_data(tmp_path):
    """20 synthetic faces under tmp_path: 19 for training (2 steps an epoch), 1 for testing."""
    to_npy.main(['--demo', '20', *tiny_args(tmp_path)])
    return tmp_path


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    """A real (untrained) checkpoint: the folder with npy/, backup/ (latest-0) and output/."""
    root = tmp_path_factory.mktemp('checkpoint')
    untrained_checkpoint(root)
    assert (root / 'backup' / 'latest-0.index').exists()
    return root


def face(height, width, seed=0):
    return cv2.resize(synthetic.face(64, seed), (width, height), interpolation=cv2.INTER_LINEAR)


def photo_and_mask(folder, depth=8):
    """photo.png (40x48, 8 or 16 bits a channel) and m.png, a 10x12 hole; returns their paths."""
    bgr = np.ascontiguousarray(face(40, 48)[..., ::-1])
    if depth == 16:
        bgr = bgr.astype(np.uint16) * 256 + np.arange(48, dtype=np.uint16)[:, None]  # low bits 8 bits lose
    mask = np.zeros((40, 48), np.uint8)
    mask[10:20, 14:26] = 255
    assert cv2.imwrite(str(folder / 'photo.png'), bgr) and cv2.imwrite(str(folder / 'm.png'), mask)
    return folder / 'photo.png', folder / 'm.png'


# --- 9. lossy results: refused (GIF), or one line says what was lost (JPEG, 16-bit input) ---

def test_a_gif_result_is_refused_in_one_line_before_loading(checkpoint, tmp_path):
    image, mask = photo_and_mask(tmp_path)
    result = run_script('test.py', f'--BACKUP_DIR={checkpoint}/backup', '--image', str(image),
                        '--mask', str(mask), '--out', str(tmp_path / 'r.gif'))
    assert result.returncode == 2, result.stdout + result.stderr
    lines = stderr_lines(result)
    assert len(lines) == 1 and 'Traceback' not in result.stderr, result.stderr
    assert lines[0].startswith(f'error: cannot write {tmp_path / "r.gif"}: a GIF holds 256 colours'), lines[0]
    assert 'use a .png or .jpg' in lines[0]
    assert sorted(os.listdir(tmp_path)) == ['m.png', 'photo.png']
    assert 'device:' not in result.stdout  # refused before the network was built


@pytest.mark.parametrize('name', ['r.GIF', 'r.pgm', 'r.jp2'])
def test_other_outputs_that_would_change_pixels_are_refused(checkpoint, tmp_path, name):
    image, mask = photo_and_mask(tmp_path)
    with pytest.raises(errors.UserError, match=r'use a \.png or \.jpg file name') as error:
        script.main([f'--BACKUP_DIR={checkpoint}/backup', '--image', str(image), '--mask', str(mask),
                     '--out', str(tmp_path / name)])
    assert '\n' not in str(error.value)
    assert sorted(os.listdir(tmp_path)) == ['m.png', 'photo.png']


def test_a_png_result_keeps_every_known_pixel_and_a_jpeg_says_it_does_not(checkpoint, tmp_path, capsys):
    image, mask = photo_and_mask(tmp_path)
    hole = cv2.imread(str(mask), cv2.IMREAD_GRAYSCALE) > 127
    for name in ('r.png', 'r.webp', 'r.jpg'):
        assert script.main([f'--BACKUP_DIR={checkpoint}/backup', '--image', str(image), '--mask', str(mask),
                            '--out', str(tmp_path / name)]) == 0
        notes = [line for line in capsys.readouterr().out.splitlines() if line.startswith('note:')]
        known_same = np.array_equal(cv2.imread(str(tmp_path / name))[~hole], cv2.imread(str(image))[~hole])
        if name == 'r.jpg':
            assert notes == [f'note: {tmp_path / name} is a JPEG, which changes the known pixels slightly; '
                             f'a .png keeps them exactly']
            assert not known_same
        else:
            assert notes == [] and known_same


def test_a_16_bit_photo_says_its_result_has_8_bits(checkpoint, tmp_path, capsys):
    image, mask = photo_and_mask(tmp_path, depth=16)
    out = tmp_path / 'r.png'
    assert script.main([f'--BACKUP_DIR={checkpoint}/backup', '--image', str(image), '--mask', str(mask),
                        '--out', str(out)]) == 0
    notes = [line for line in capsys.readouterr().out.splitlines() if line.startswith('note:')]
    assert notes == [f'note: {image} has 16 bits a channel and {out} will have 8: the network works in '
                     f'8 bits, so every pixel is rounded to 256 levels']
    assert cv2.imread(str(out), cv2.IMREAD_UNCHANGED).dtype == np.uint8


# --- 3. Ctrl-C while a script loads: one line and a non-zero status, not the import's traceback ---

CTRL_C_AT_NUMPY = r'''
import os, runpy, signal, sys
class CtrlC:
    """Presses Ctrl-C as the script imports numpy, its first library after glcic.cli."""
    def find_spec(self, name, path=None, target=None):
        if name == 'numpy':
            os.kill(os.getpid(), signal.SIGINT)
        return None
sys.meta_path.insert(0, CtrlC())
sys.argv = sys.argv[1:]
sys.path.insert(0, os.path.dirname(sys.argv[0]))
runpy.run_path(sys.argv[0], run_name='__main__')
'''


@pytest.mark.parametrize('name', ['train.py', 'test.py', 'to_npy.py', 'export.py', 'app.py'])
def test_ctrl_c_while_a_script_loads_is_one_line(tmp_path, name):
    result = subprocess.run([sys.executable, '-c', CTRL_C_AT_NUMPY, os.path.join(ROOT, name), *tiny_args(tmp_path)],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == -signal.SIGINT, (result.returncode, result.stderr)
    assert result.stderr == f'interrupted while {name} was starting; nothing was changed\n'
    assert result.stdout == '' and os.listdir(tmp_path) == []


def test_ctrl_c_from_timeout_while_train_py_loads(tmp_path):
    """As a user presses it: `timeout -s INT 1.5 python train.py` (a background job of a script
    would ignore SIGINT). On a machine that loads TensorFlow in under 1.5 s, run()'s line."""
    result = subprocess.run(['timeout', '--preserve-status', '-s', 'INT', '1.5', sys.executable, 'train.py',
                             *tiny_args(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 128 + signal.SIGINT, (result.returncode, result.stderr)
    assert 'Traceback' not in result.stderr
    assert stderr_lines(result) in (['interrupted while train.py was starting; nothing was changed'],
                                    ['interrupted']), result.stderr


# --- 11. loss.csv shows an epoch only once its save has landed; 4. a full OUTPUT_DIR loses nothing ---

class Killed(BaseException):
    """kill -9: nothing after it runs (no except clause of train.py catches it)."""


def killed_at_save(monkeypatch, at_step, landed):
    """backup.save dies at the save of step `at_step`, before or after its files land."""
    real = backup.save

    def save(sess, saver, name, step=None):
        if step == at_step:
            if landed:
                real(sess, saver, name, step)
            raise Killed()
        return real(sess, saver, name, step)
    monkeypatch.setattr(backup, 'save', save)


def epochs_in(folder):
    return [int(row['epoch']) for row in plots.read_rows(str(folder / 'output' / 'loss.csv'))]


def release_lock():
    """The killed main()'s frames held BACKUP_DIR's lock file open; a dead process would not."""
    gc.collect()


PHASES = ('--PRETRAIN_EPOCH=1', '--D_EPOCH=1', '--MAX_EPOCH=3')  # 2 steps an epoch: saves at steps 2, 4, 6


def test_a_kill_during_the_phase_3_save_never_shows_its_epoch(tiny_data, capsys, monkeypatch):
    killed_at_save(monkeypatch, 6, landed=False)
    with pytest.raises(Killed):
        train_in_process(tiny_data, capsys, *PHASES)
    release_lock()
    assert epochs_in(tiny_data) == [1, 2]
    assert tf.compat.v1.train.latest_checkpoint(str(tiny_data / 'backup')).endswith('latest-4')
    monkeypatch.undo()
    status, printed = train_in_process(tiny_data, capsys, *PHASES)
    assert status == 0 and 'epoch 3 phase 3: ' in printed
    assert epochs_in(tiny_data) == [1, 2, 3]


def test_a_kill_right_after_the_save_keeps_its_row(tiny_data, capsys, monkeypatch):
    killed_at_save(monkeypatch, 6, landed=True)
    with pytest.raises(Killed):
        train_in_process(tiny_data, capsys, *PHASES)
    release_lock()
    staged = json.loads((tiny_data / 'backup' / housekeeping.PENDING_ROW).read_text())
    monkeypatch.undo()
    status, printed = train_in_process(tiny_data, capsys, *PHASES)
    assert status == 0 and 'stopped: reached MAX_EPOCH=3' in printed and 'epoch 3 phase 3: ' not in printed
    rows = plots.read_rows(str(tiny_data / 'output' / 'loss.csv'))
    assert [int(row['epoch']) for row in rows] == [1, 2, 3]
    assert float(rows[-1]['mse']) == staged['mse'] and int(rows[-1]['step']) == staged['step'] == 6


def test_a_full_backup_dir_at_the_phase_3_save_never_shows_its_epoch(tiny_data, capsys, monkeypatch):
    real = tf.compat.v1.train.Saver.save

    def save(self, sess, path, global_step=None, **kwargs):  # the Saver's own write fails, as on a full disk
        if global_step == 6:
            raise tf.errors.ResourceExhaustedError(None, None, 'No space left on device')
        return real(self, sess, path, global_step=global_step, **kwargs)
    monkeypatch.setattr(tf.compat.v1.train.Saver, 'save', save)
    with pytest.raises(errors.UserError, match=r'^could not save to .*No space left on device') as error:
        train_in_process(tiny_data, capsys, *PHASES)
    assert '\n' not in str(error.value)
    assert epochs_in(tiny_data) == [1, 2]
    assert not (tiny_data / 'output' / 'epoch_0003.png').exists()


def full_output_dir(monkeypatch, folder, after):
    """atomic.replace fails with ENOSPC for every file under folder once `after` (a file name) is written."""
    real, state = atomic.replace, {'full': False}

    @contextlib.contextmanager
    def replace(path, *args, **kwargs):
        if state['full'] and os.path.realpath(path).startswith(os.path.realpath(folder) + os.sep):
            raise OSError(errno.ENOSPC, 'No space left on device')
        with real(path, *args, **kwargs) as f:
            yield f
        state['full'] = state['full'] or os.path.basename(path) == after
    monkeypatch.setattr(atomic, 'replace', replace)


def test_a_full_output_dir_is_one_line_and_loses_no_save_or_row(tiny_data, capsys, monkeypatch):
    full_output_dir(monkeypatch, tiny_data / 'output', after='epoch_0001.png')
    with pytest.raises(errors.UserError) as error:
        train_in_process(tiny_data, capsys, *PHASES)
    message = str(error.value)
    del error
    release_lock()
    assert '\n' not in message
    assert message == (f'could not write in {tiny_data}/output/ (No space left on device); '
                       f'{tiny_data}/backup/latest-4 holds all the training so far: free disk space or fix '
                       f'permissions, then python train.py resumes')
    assert tf.compat.v1.train.latest_checkpoint(str(tiny_data / 'backup')).endswith('latest-4')
    assert epochs_in(tiny_data) == [1]
    monkeypatch.undo()  # space freed
    status, printed = train_in_process(tiny_data, capsys, *PHASES)
    assert status == 0 and f'resumed {tiny_data}/backup/latest-4: ' in printed
    assert epochs_in(tiny_data) == [1, 2, 3]
    assert (tiny_data / 'output' / 'loss.png').exists() and (tiny_data / 'output' / 'epoch_0003.png').exists()


def test_a_full_output_dir_in_test_py_is_one_line_and_lists_no_missing_grid(checkpoint, tmp_path, monkeypatch):
    """Room for grids.json (a few bytes) but not for a grid."""
    real = atomic.replace

    def replace(path, *args, **kwargs):
        if os.path.basename(path).startswith('grid_'):
            raise OSError(errno.ENOSPC, 'No space left on device')
        return real(path, *args, **kwargs)
    monkeypatch.setattr(atomic, 'replace', replace)
    out = tmp_path / 'output' / 'test'
    with pytest.raises(errors.UserError) as error:
        script.main([f'--BACKUP_DIR={checkpoint}/backup', f'--NPY_DIR={checkpoint}/npy', f'--OUTPUT_DIR={tmp_path}/output'])
    assert str(error.value) == (f'could not write in {tmp_path}/output/test/ (No space left on device); free disk '
                                f'space or fix permissions, then rerun (grids.json lists the grids written)')
    assert json.loads((out / 'grids.json').read_text()) == []
    assert sorted(os.listdir(out)) == ['grids.json']


# --- 10. a run that met its stop rule goes on with --continue ---

def mark_done(folder):
    """Set the newest save's phase to graphs.STOPPED, as the stop rule's last epoch saves it."""
    tf1 = tf.compat.v1
    config.set_values(TINY)
    model, sess = tiny_graph()
    with sess.graph.as_default():
        saver = tf1.train.Saver()
        path = tf1.train.latest_checkpoint(str(folder / 'backup'))
        saver.restore(sess, path)
        sess.run(model.set_phase, {model.phase_value: graphs.STOPPED})
        saver.save(sess, path, write_meta_graph=False, write_state=False)
    sess.close()
    return path


def test_continue_goes_on_in_phase_3_after_the_stop_rule(tiny_data, capsys):
    assert train_in_process(tiny_data, capsys, *PHASES)[0] == 0
    final = mark_done(tiny_data)
    status, printed = train_in_process(tiny_data, capsys, '--MAX_EPOCH=5', '--STOP_LOSS=0')
    assert status == 0
    assert ('this run already met its stop rule (epoch 3): python train.py --continue --MAX_EPOCH=13 '
            '--STOP_LOSS=0 goes on in phase 3 from its final save') in printed
    assert tf.compat.v1.train.latest_checkpoint(str(tiny_data / 'backup')) == final
    for args, message in ((['--fresh', '--continue'], '--fresh and --continue exclude each other'),
                          (['--continue', '--MAX_EPOCH=3'], '--continue: the run has trained 3 epochs, '
                                                            'MAX_EPOCH=3; raise it, e.g. python train.py '
                                                            '--continue --MAX_EPOCH=13')):
        with pytest.raises(errors.UserError) as error:
            train_in_process(tiny_data, capsys, *args)
        assert str(error.value) == message
        del error
        release_lock()
    status, printed = train_in_process(tiny_data, capsys, '--continue', '--MAX_EPOCH=5', '--STOP_LOSS=0')
    assert status == 0
    assert 'continuing phase 3 after the stop rule ended it: epochs 4 to 5' in printed
    assert 'epoch 4 phase 3: ' in printed and 'epoch 5 phase 3: ' in printed
    assert epochs_in(tiny_data) == [1, 2, 3, 4, 5]
    assert tf.compat.v1.train.latest_checkpoint(str(tiny_data / 'backup')).endswith('latest-10')
