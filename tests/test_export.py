"""export.py: a SavedModel that plain TensorFlow 2 loads without this repository and that
completes bit for bit as test.py does; it never replaces anything unasked."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import config
from glcic import backup
import export as export_script
from glcic import inference, synthetic
from conftest import run_script
from glcic.errors import UserError
from test_network import inputs

# Run by a Python that does not see this repository (-I: no script folder, no PYTHONPATH,
# started in another folder): loads the export and writes what it returns.
LOADER = r'''
import importlib.util, json, sys
import numpy as np
import tensorflow as tf
assert importlib.util.find_spec('network') is None, 'the repository is importable'
export, inputs, outputs = sys.argv[1:4]
loaded = tf.saved_model.load(export)
complete = loaded.signatures['serving_default']
given = np.load(inputs)
results, errors = {}, {}
for name in ('square', 'odd', 'grey_128', 'grey_127'):
    out = complete(images=tf.constant(given[name + '_images']), masks=tf.constant(given[name + '_masks']))
    results[name] = out['completion'].numpy()
for name in ('not_divisible', 'mask_size'):
    try:
        complete(images=tf.constant(given[name + '_images']), masks=tf.constant(given[name + '_masks']))
    except tf.errors.InvalidArgumentError as error:
        errors[name] = error.message
np.savez(outputs, **results)
print(json.dumps({'signatures': list(loaded.signatures),
                  'inputs': {k: [v.dtype.name, v.shape.as_list()]
                             for k, v in complete.structured_input_signature[1].items()},
                  'outputs': {k: [v.dtype.name, v.shape.as_list()]
                              for k, v in complete.structured_outputs.items()},
                  'errors': errors}))
'''


def load_in_plain_tf2(export, inputs, tmp_path):
    """Run LOADER on `export` with the arrays of `inputs`: (outputs, what it printed)."""
    np.savez(tmp_path / 'inputs.npz', **inputs)
    done = subprocess.run([sys.executable, '-I', '-c', LOADER, str(export), str(tmp_path / 'inputs.npz'),
                           str(tmp_path / 'outputs.npz')], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    return dict(np.load(tmp_path / 'outputs.npz')), json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope='module')
def run(trained_run, tmp_path_factory):
    """The shared tiny model's checkpoints (hard links) and its export, in a folder of their own:
    export.py writes into OUTPUT_DIR/export/ by default, here this folder's output/."""
    tmp = tmp_path_factory.mktemp('run')
    shutil.copytree(trained_run / 'backup', tmp / 'backup', copy_function=os.link,
                    ignore=shutil.ignore_patterns('train.lock'))
    made = run_script('export.py', f'--BACKUP_DIR={tmp}/backup', f'--OUTPUT_DIR={tmp}/output')
    assert made.returncode == 0, made.stderr
    return tmp


def test_plain_tf2_loads_it_and_it_completes_as_test_py(run, tmp_path):
    export = run / 'output' / 'export' / '1'
    assert os.path.isfile(export / 'saved_model.pb')
    square, odd = inputs(11, 32, 32, 5), inputs(3, 20, 28, 6)  # 11: more than one BATCH_SIZE of 8
    wrong = synthetic.faces(1, 30, 7)
    given = {'square_images': square[0], 'square_masks': (square[1] * 255).astype(np.uint8),
             'odd_images': odd[0], 'odd_masks': (odd[1] * 255).astype(np.uint8),
             # mask values above 127 are the hole, as in test.py's mask files
             'grey_128_images': square[0], 'grey_128_masks': (square[1] * 128).astype(np.uint8),
             'grey_127_images': square[0], 'grey_127_masks': (square[1] * 127).astype(np.uint8),
             'not_divisible_images': wrong, 'not_divisible_masks': np.zeros((1, 30, 30, 1), np.uint8),
             'mask_size_images': square[0], 'mask_size_masks': np.zeros((11, 28, 32, 1), np.uint8)}
    outputs, info = load_in_plain_tf2(export, given, tmp_path)

    saved = config.as_dict()
    try:
        backup.apply_run_config([f'--BACKUP_DIR={run}/backup'])
        nets = inference.Networks(backup.trained(backup.LATEST))
        try:
            expect = {name: nets.complete(backup.LATEST, *pair)
                      for name, pair in (('square', square), ('odd', odd))}
        finally:
            nets.close()
    finally:
        config.set_values(saved)
    for name in ('square', 'odd'):
        assert outputs[name].dtype == np.uint8
        assert np.array_equal(outputs[name], expect[name]), name  # bit for bit
    assert not np.array_equal(expect['square'], square[0])
    assert np.array_equal(outputs['grey_128'], expect['square'])
    assert np.array_equal(outputs['grey_127'], square[0])  # no hole: nothing changes

    assert info['signatures'] == ['serving_default']
    assert info['inputs'] == {'images': ['uint8', [None, None, None, 3]],
                              'masks': ['uint8', [None, None, None, 1]]}
    assert info['outputs'] == {'completion': ['uint8', [None, None, None, 3]]}
    assert 'divisible by 4' in info['errors']['not_divisible']
    assert 'N, H and W of images' in info['errors']['mask_size']


def test_never_replaces_anything_unasked(run, tmp_path):
    export = run / 'output' / 'export' / '1'
    before = (export / 'saved_model.pb').read_bytes()
    with pytest.raises(UserError) as again:
        export_script.main([f'--BACKUP_DIR={run}/backup', f'--OUTPUT_DIR={run}/output'])
    assert str(again.value) == (f'{export} exists; pass --overwrite to replace it, or write a new version '
                                f'with --out {export.parent / "2"}')
    user_folder = tmp_path / 'photos'
    user_folder.mkdir()
    (user_folder / 'me.jpg').write_bytes(b'mine')
    with pytest.raises(UserError, match='not an earlier export') as refused:
        export_script.main([f'--BACKUP_DIR={run}/backup', '--out', str(user_folder), '--overwrite'])
    assert '\n' not in str(refused.value)
    assert os.listdir(user_folder) == ['me.jpg'] and (user_folder / 'me.jpg').read_bytes() == b'mine'

    replaced = run_script('export.py', f'--BACKUP_DIR={run}/backup', f'--OUTPUT_DIR={run}/output', '--overwrite')
    assert replaced.returncode == 0, replaced.stderr
    assert (export / 'saved_model.pb').read_bytes() == before  # same checkpoint, same graph
    assert os.listdir(export.parent) == ['1']  # no temporary folder left behind


def test_no_checkpoint_is_one_line_with_the_command(tmp_path, no_shipped):
    with pytest.raises(UserError) as error:
        export_script.main([f'--BACKUP_DIR={tmp_path}/backup', f'--OUTPUT_DIR={tmp_path}/output'])
    assert str(error.value) == (f'no trained model in {tmp_path}/backup/: train first with python train.py '
                                f'(e.g. python to_npy.py --demo 200 && python train.py)')
    assert not os.path.exists(tmp_path / 'output')
