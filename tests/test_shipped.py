"""The shipped face model (models/faces128/, glcic/shipped.py): restored exactly, used where the user
has trained nothing (never over their own training), the same pixels through test.py, the page and
the SavedModel, and better than Telea on the public-domain face."""
import importlib.util
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import tensorflow as tf

import config
import export as export_script
from conftest import ROOT
from glcic import backup, data, evaluate, graphs, inference, replicas, shipped
from glcic.errors import UserError

tf1 = tf.compat.v1
_spec = importlib.util.spec_from_file_location('glcic_test_script_shipped', os.path.join(ROOT, 'test.py'))
script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(script)
import app  # noqa: E402

FACE = os.path.join(ROOT, 'docs', 'examples', 'astronaut.png')
needs_model = pytest.mark.skipif(shipped.path() is None, reason='this copy has no models/faces128/generator.npz')
# The SavedModel run by plain TensorFlow 2 (eager), as a user would, outside this repository.
LOADER = ('import sys, numpy as np, tensorflow as tf; export, inputs, out = sys.argv[1:4]; '
          'given = np.load(inputs); complete = tf.saved_model.load(export).signatures["serving_default"]; '
          'np.save(out, complete(images=tf.constant(given["images"]), '
          'masks=tf.constant(given["masks"]))["completion"].numpy())')
BOX = (40, 60, 40, 30)  # x, y, w, h: the mouth and chin


@pytest.fixture
def restore_config():
    saved = config.as_dict()
    yield
    config.set_values(saved)


def face():
    return cv2.imread(FACE)[..., ::-1].copy()


def box_hole():
    x, y, w, h = BOX
    hole = np.zeros((128, 128), bool)
    hole[y:y + h, x:x + w] = True
    return hole


def save_as_shipped(backup_dir, folder, description):
    """The newest checkpoint of backup_dir written as a shipped model; its float32 values by name."""
    backup.apply_run_config([f'--BACKUP_DIR={backup_dir}'])
    with tf.Graph().as_default():
        model = graphs.Inference()
        with replicas.make_session() as sess:
            tf1.train.Saver(model.variables).restore(sess, backup.find(backup.LATEST))
            shipped.save(sess, model.variables, str(folder), description)
            return {v.op.name: value for v, value in zip(model.variables, sess.run(model.variables))}


@needs_model
def test_the_shipped_weights_restore_bit_equal_and_are_small(restore_config):
    weights = shipped.path()
    assert os.path.getsize(weights) < 15 * 2 ** 20
    stored = np.load(weights)
    assert all(stored[name].dtype != np.float32 for name in stored.files)  # float16 or integers
    shipped.use()
    with tf.Graph().as_default():
        model = graphs.Inference()
        with replicas.make_session() as sess:
            shipped.restore(sess, model.variables, weights)
            for variable, value in zip(model.variables, sess.run(model.variables)):
                want = stored[variable.op.name].astype(value.dtype)
                assert np.array_equal(value, want), variable.op.name
    assert os.path.exists(os.path.join(shipped.FOLDER, 'README.md'))


def test_a_checkpoint_saved_as_shipped_restores_its_values_in_float16(trained_run, tmp_path, restore_config):
    backup.apply_run_config([f'--BACKUP_DIR={trained_run}/backup'])
    checkpoint = backup.find(backup.LATEST)
    with tf.Graph().as_default():
        model = graphs.Inference()
        with replicas.make_session() as sess:
            tf1.train.Saver(model.variables).restore(sess, checkpoint)
            original = sess.run(model.variables)
            worst = shipped.save(sess, model.variables, str(tmp_path / 'model'), 'a tiny test model')
    assert 0 < worst < 1e-3
    with tf.Graph().as_default():
        model = graphs.Inference()
        with replicas.make_session() as sess:
            shipped.restore(sess, model.variables, str(tmp_path / 'model' / shipped.WEIGHTS))
            for value, want in zip(sess.run(model.variables), original):
                expected = want.astype(np.float16).astype(want.dtype) if want.dtype == np.float32 else want
                assert np.array_equal(value, expected)


def test_the_test_set_table_with_only_the_shipped_model(trained_run, tmp_path, capsys, monkeypatch, restore_config):
    """With nothing trained, test.py's test set is completed by the shipped model: its rows and grids."""
    save_as_shipped(f'{trained_run}/backup', tmp_path / 'model', 'a tiny test model')
    monkeypatch.setattr(shipped, 'FOLDER', str(tmp_path / 'model'))
    monkeypatch.setattr(evaluate.FaceIdentity, 'load', classmethod(lambda cls: None))  # dlib's time is not the point
    out = tmp_path / 'out'
    assert script.main([f'--BACKUP_DIR={tmp_path}/nothing', f'--NPY_DIR={trained_run}/npy', f'--OUTPUT_DIR={out}',
                        '--grids', '1']) == 0
    assert 'completing with the shipped one, a tiny test model' in capsys.readouterr().out
    with open(out / 'test' / 'metrics.json') as f:
        report = json.load(f)
    assert [row['method'] for row in report['rows']] == ['mean-pixel fill', 'OpenCV Telea', 'shipped model',
                                                         'shipped model + blending']
    assert sorted(os.listdir(out / 'test')) == ['grid_000.png', 'grids.json', 'metrics.json', 'metrics.md']
    assert cv2.imread(str(out / 'test' / 'grid_000.png')) is not None


@needs_model
def test_a_damaged_or_foreign_file_is_one_line(tmp_path, restore_config):
    bad = tmp_path / shipped.WEIGHTS
    bad.write_bytes(b'not a zip')
    np.savez(tmp_path / 'other.npz', x=np.zeros(3, np.float16))
    shipped.use()
    with tf.Graph().as_default():
        model = graphs.Inference()
        with replicas.make_session() as sess:
            for path, message in ((bad, 'is damaged'), (tmp_path / 'other.npz', 'does not match this graph')):
                with pytest.raises(UserError, match=message) as error:
                    shipped.restore(sess, model.variables, str(path))
                assert '\n' not in str(error.value) and 'git checkout' in str(error.value)


@needs_model
def test_with_nothing_trained_test_py_completes_with_it_and_says_so(tmp_path, capsys, restore_config):
    cv2.imwrite(str(tmp_path / 'mask.png'), box_hole().astype(np.uint8) * 255)
    out = tmp_path / 'out.png'
    assert script.main([f'--BACKUP_DIR={tmp_path}/nothing', '--image', FACE, '--mask', str(tmp_path / 'mask.png'),
                        '--out', str(out)]) == 0
    printed = capsys.readouterr().out
    assert f'note: no trained model in {tmp_path}/nothing/: completing with the shipped one' in printed
    assert 'shipped model' in printed
    result = cv2.imread(str(out))[..., ::-1]
    assert (result[~box_hole()] == face()[~box_hole()]).all() and not (result == face()).all()


@needs_model
def test_your_own_training_wins_and_the_flag_picks_the_shipped_one(trained_run, tmp_path, capsys, restore_config):
    args = [f'--BACKUP_DIR={trained_run}/backup', '--image', FACE, '--box', '4,4,8,8']
    assert script.main([*args, '--out', str(tmp_path / 'own.png')]) == 0
    assert 'shipped' not in capsys.readouterr().out
    assert script.main([*args, '--model', 'shipped', '--out', str(tmp_path / 'shipped.png')]) == 0
    printed = capsys.readouterr().out
    assert 'shipped model: ' in printed and 'note: no trained model' not in printed


@needs_model
def test_test_py_the_page_and_the_savedmodel_give_the_same_pixels(tmp_path, restore_config):
    image, hole = face(), box_hole()
    cv2.imwrite(str(tmp_path / 'mask.png'), hole.astype(np.uint8) * 255)
    script.main([f'--BACKUP_DIR={tmp_path}/nothing', '--image', FACE, '--mask', str(tmp_path / 'mask.png'),
                 '--out', str(tmp_path / 'out.png')])
    by_test_py = cv2.imread(str(tmp_path / 'out.png'))[..., ::-1]

    backup.apply_run_config([f'--BACKUP_DIR={tmp_path}/nothing'])
    page = app.Handler.load()
    try:
        first, missing, _ = page.complete(image, hole).columns
        assert first.title == 'shipped model' and missing.image is None
        by_page = first.image
    finally:
        page.close()

    export_script.main([f'--BACKUP_DIR={tmp_path}/nothing', '--out', str(tmp_path / 'export')])
    np.savez(tmp_path / 'inputs.npz', images=image[None], masks=hole[None, ..., None].astype(np.uint8) * 255)
    subprocess.run([sys.executable, '-I', '-c', LOADER, str(tmp_path / 'export'), str(tmp_path / 'inputs.npz'),
                    str(tmp_path / 'by_export.npy')], cwd=tmp_path, check=True, capture_output=True)
    by_export = np.load(tmp_path / 'by_export.npy')[0]
    assert np.array_equal(by_test_py, by_page)
    assert np.array_equal(by_test_py, by_export)


@needs_model
def test_it_beats_telea_on_the_public_domain_face(restore_config):
    shipped.use()
    config.HOLE_MIN, config.HOLE_MAX = 24, 48  # the paper's holes at 128x128
    count = 16
    masks, _ = data.sample_holes(np.random.RandomState(0), count, 128)
    truth = np.repeat(face()[None], count, axis=0)
    masked = evaluate.hide_holes(truth, masks)
    nets = inference.Networks(shipped.use())
    try:
        completed = nets.complete(shipped.NAME, masked, masks)
    finally:
        nets.close()
    ours = evaluate.hole_psnr(completed, truth, masks).mean()
    telea = evaluate.hole_psnr(evaluate.telea(masked, masks), truth, masks).mean()
    assert ours > telea, (ours, telea)


def test_a_new_run_starts_from_a_saved_completion_network(tmp_path, capsys, restore_config):
    """train.py --init: the network, its epoch and phase go on; a run with saves refuses it."""
    import to_npy
    from conftest import tiny_args, train_in_process
    to_npy.main(['--demo', '40', *tiny_args(tmp_path)])
    assert train_in_process(tmp_path, capsys, '--PRETRAIN_EPOCH=3', '--MAX_EPOCH=1')[0] == 0
    saved = save_as_shipped(f'{tmp_path}/backup', tmp_path / 'net', 'a tiny network')
    weights = str(tmp_path / 'net' / shipped.WEIGHTS)
    with pytest.raises(UserError, match='--init starts a new run'):
        train_in_process(tmp_path, capsys, '--PRETRAIN_EPOCH=3', '--MAX_EPOCH=2', '--init', weights)
    status, printed = train_in_process(tmp_path, capsys, '--PRETRAIN_EPOCH=3', '--MAX_EPOCH=1', '--fresh',
                                       '--init', weights)
    assert status == 0 and f'started from {weights}: phase 1, epoch 2, step 4' in printed
    assert 'reached MAX_EPOCH=1' in printed  # its epoch came along: nothing left to train
    reader = tf1.train.NewCheckpointReader(backup.find(backup.LATEST))
    for name, value in saved.items():
        if '/moving_' in name:
            continue  # re-estimated before the save (BN_RECALIBRATE_BATCHES)
        want = value.astype(np.float16).astype(value.dtype) if value.dtype == np.float32 else value
        assert np.array_equal(reader.get_tensor(name), want), name
