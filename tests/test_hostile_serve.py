"""Hostile inputs to what serves a trained model: export.py and its SavedModel, test.py's paths and
transparent photos, and the page of app.py (its start, its folder, concurrent and abusive requests).

One tiny checkpoint (two training steps, not a trained model) serves every test here: these
tests check what happens around the network, not how well it fills."""
import importlib.util
import os
import re
import subprocess
import sys
import threading

import cv2
import numpy as np
import pytest

import app
import config
import errors
import photos
import synthetic
from conftest import ROOT, TINY, run_script
from test_network import save_tiny_checkpoint

needs_gradio = pytest.mark.skipif(importlib.util.find_spec('gradio') is None,
                                  reason=f'Gradio is not installed ({app.INSTALL})')


def error_lines(result):
    """The `error:` lines of a script's stderr; there must be no traceback."""
    assert 'Traceback' not in result.stderr, result.stderr
    return [line for line in result.stderr.splitlines() if line.startswith('error:')]


@pytest.fixture(scope='module')
def run(tmp_path_factory):
    """A tiny checkpoint in a backup folder with its config.json, and its export."""
    tmp = tmp_path_factory.mktemp('run')
    saved = config.as_dict()
    config.set_values({**TINY, 'OUTPUT_DIR': str(tmp / 'output')})
    save_tiny_checkpoint(tmp / 'backup')
    config.set_values(saved)
    made = run_script('export.py', f'--BACKUP_DIR={tmp}/backup')
    assert made.returncode == 0, made.stderr
    return tmp


# --- export.py ---

def test_overwrite_refuses_an_export_folder_holding_other_files(run, tmp_path):
    export = tmp_path / 'export'
    export.mkdir()
    for name in ('saved_model.pb', 'NOTES.txt'):
        (export / name).write_bytes(b'mine')
    (export / 'variables').mkdir()
    refused = run_script('export.py', f'--BACKUP_DIR={run}/backup', '--out', str(export), '--overwrite')
    assert refused.returncode == 2
    assert error_lines(refused) == [
        f'error: {export}/ holds NOTES.txt, which export.py did not write, and --overwrite replaces the '
        f'whole folder: move them out, or choose another --out']
    assert sorted(os.listdir(export)) == ['NOTES.txt', 'saved_model.pb', 'variables']
    assert (export / 'NOTES.txt').read_bytes() == b'mine'


def test_overwrite_through_a_symlink_replaces_its_folder_and_leaves_nothing_behind(run, tmp_path):
    real, links = tmp_path / 'real', tmp_path / 'links'
    links.mkdir()
    made = run_script('export.py', f'--BACKUP_DIR={run}/backup', '--out', str(real / '1'))
    assert made.returncode == 0, made.stderr
    (links / '1').symlink_to(real / '1')
    replaced = run_script('export.py', f'--BACKUP_DIR={run}/backup', '--out', str(links / '1'), '--overwrite')
    assert replaced.returncode == 0, replaced.stderr
    assert os.readlink(links / '1') == str(real / '1')
    assert os.listdir(links) == ['1'] and os.listdir(real) == ['1']  # no .replaced-PID, no .partial-PID
    assert os.path.isfile(real / '1' / 'saved_model.pb')


# Run in a fresh interpreter (the suite's TensorFlow is in graph mode): each named pair of
# inputs through the export's signature, its output or its error message saved.
CALL = r"""
import sys
import numpy as np
import tensorflow as tf
complete = tf.saved_model.load(sys.argv[1]).signatures['serving_default']
given, results = np.load(sys.argv[2]), {}
for name in sorted({key.rsplit('.', 1)[0] for key in given.files}):
    try:
        results[name] = complete(images=given[name + '.images'], masks=given[name + '.masks'])['completion'].numpy()
    except tf.errors.InvalidArgumentError as error:
        results[name] = np.array(error.message)
np.savez(sys.argv[3], **results)
"""


def through_signature(run, tmp_path, cases):
    """{name: (images, masks)} through the export's signature: {name: uint8 array or error message}."""
    np.savez(tmp_path / 'in.npz', **{f'{name}.{key}': value for name, (images, masks) in cases.items()
                                     for key, value in (('images', images), ('masks', masks))})
    done = subprocess.run([sys.executable, '-c', CALL, str(run / 'output' / 'export' / '1'),
                           str(tmp_path / 'in.npz'), str(tmp_path / 'out.npz')],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    out = np.load(tmp_path / 'out.npz')
    return {name: out[name] if out[name].dtype == np.uint8 else str(out[name]) for name in out.files}


def test_bool_and_0_1_masks_are_holes_and_bad_images_are_refused_with_what_to_do(run, tmp_path):
    images = synthetic.faces(2, 32, 3)
    holes = np.zeros((2, 32, 32, 1), bool)
    holes[0, 4:12, 8:16] = holes[1, 20:28, 12:20] = True
    masks = holes.astype(np.uint8) * 255
    out = through_signature(run, tmp_path, {
        'uint8 255': (images, masks), 'bool': (images, holes), '0/1 uint8': (images, holes.astype(np.uint8)),
        'floats in [0,1]': (images / 255.0, masks), 'empty batch': (images[:0], masks[:0])})
    expect = out['uint8 255']
    assert (expect[~holes[..., 0]] == images[~holes[..., 0]]).all()
    assert not np.array_equal(expect, images)  # the holes were filled
    assert np.array_equal(out['bool'], expect)
    assert np.array_equal(out['0/1 uint8'], expect)
    assert ('images: an image holds only 0s and 1s, as float images in [0,1] do once cast to uint8; '
            'pass uint8 0-255 (multiply floats by 255)') in out['floats in [0,1]']
    assert 'images: the batch is empty; pass at least one image' in out['empty batch']


# --- test.py ---

@pytest.mark.parametrize('output_dir, message', [
    ('{t}/file', 'cannot write to {t}/file/test/: {t}/file is a file; set --OUTPUT_DIR to a folder'),
    ('/proc/glcic', 'cannot write to /proc/glcic/test/ (No such file or directory); choose another '
                    '--OUTPUT_DIR or fix its permissions'),
])
def test_the_test_set_checks_its_output_folder_before_loading_the_networks(run, tmp_path, output_dir, message):
    (tmp_path / 'file').write_text('mine')
    np.save(tmp_path / 'x_test.npy', synthetic.faces(8, 32, 0))
    done = run_script('test.py', f'--BACKUP_DIR={run}/backup', f'--npy={tmp_path}/x_test.npy',
                      f'--OUTPUT_DIR={output_dir.format(t=tmp_path)}')
    assert done.returncode == 2
    assert error_lines(done) == [f'error: {message.format(t=tmp_path)}']
    assert 'device:' not in done.stdout  # printed just before the networks are built
    assert (tmp_path / 'file').read_text() == 'mine'


def write_rgba(path, rgb, clear):
    """A PNG of rgb with alpha 0 where clear (bool [H,W]) and 255 elsewhere."""
    alpha = np.where(clear, 0, 255).astype(np.uint8)
    assert cv2.imwrite(str(path), np.dstack([rgb[..., ::-1], alpha]))
    return str(path)


def test_a_pngs_transparent_pixels_are_the_hole_without_a_mask(run, tmp_path, capsys):
    import test as script
    rgb = cv2.resize(synthetic.face(64, 1), (52, 40))
    clear = np.zeros((40, 52), bool)
    clear[10:22, 14:30] = True
    photo = write_rgba(tmp_path / 'cut.png', rgb, clear)
    assert cv2.imwrite(str(tmp_path / 'mask.png'), clear.astype(np.uint8) * 255)
    assert script.main([f'--BACKUP_DIR={run}/backup', '--image', photo, '--out', f'{tmp_path}/alpha.png']) == 0
    assert script.main([f'--BACKUP_DIR={run}/backup', '--image', photo, '--mask', f'{tmp_path}/mask.png',
                        '--out', f'{tmp_path}/mask_out.png']) == 0
    by_alpha, by_mask = (cv2.imread(str(tmp_path / f'{n}.png')) for n in ('alpha', 'mask_out'))
    assert np.array_equal(by_alpha, by_mask)
    assert (by_alpha[~clear] == rgb[..., ::-1][~clear]).all()
    said = capsys.readouterr().out
    assert (f'note: {photo} has 192 transparent pixels; the hole is --mask {tmp_path}/mask.png, and the '
            f'colours under them count as known') in said
    plain = tmp_path / 'plain.png'
    assert cv2.imwrite(str(plain), rgb)
    with pytest.raises(errors.UserError, match=re.escape(
            f'--image {plain} needs a hole: --mask FILE (white = hole), --box x,y,w,h, or a PNG whose '
            f'transparent pixels are the hole')):
        script.main([f'--BACKUP_DIR={run}/backup', '--image', str(plain)])
