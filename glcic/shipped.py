"""The face model that ships with the repository (models/faces128/): the completion network only.

It is what test.py, app.py and export.py complete with when BACKUP_DIR holds no trained model of
the user's own. Stored small: the inference graph's variables (weights, batch-norm moving
averages, mean pixel, the training state) as float16 in one .npz, beside a config.json with the
architecture and a README with its provenance, scores and licence. Nothing is downloaded.
"""
import json
import os

import numpy as np
import tensorflow as tf

import config
from glcic import atomic
from glcic.errors import UserError

tf1 = tf.compat.v1
NAME = 'shipped'  # the model's name beside backup.PRETRAINED and backup.LATEST
FOLDER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'models', 'faces128')
WEIGHTS = 'generator.npz'


def path(folder=None):
    """The shipped weights' file, or None if this copy of the repository has none."""
    weights = os.path.join(folder or FOLDER, WEIGHTS)
    return weights if os.path.exists(weights) else None


def describe(folder=None):
    """One line on what the shipped model is, from its config.json."""
    with open(os.path.join(folder or FOLDER, 'config.json')) as f:
        return json.load(f)['description']


def use(folder=None):
    """Take the shipped model's architecture into config; {NAME: weights path}."""
    folder = folder or FOLDER
    weights = path(folder)
    if weights is None:
        raise UserError(f'no shipped model in {folder}/ ({WEIGHTS} is missing): train one with python train.py')
    with open(os.path.join(folder, 'config.json')) as f:
        saved = json.load(f)
    config.set_values({key: saved['config'][key] for key in config.ARCHITECTURE_KEYS})
    return {NAME: weights}


def save(sess, variables, folder, description, extra=None):
    """Write `variables` (read from `sess`) as float16 to folder/generator.npz, and config.json.

    Returns the largest relative change float16 made to any float value."""
    values, worst = {}, 0.0
    for variable, value in zip(variables, sess.run(variables)):
        if variable.dtype.base_dtype.is_floating:
            half = value.astype(np.float16)
            if not np.isfinite(half).all():
                raise ValueError(f'{variable.op.name} does not fit float16')
            scale = np.abs(value).max()
            worst = max(worst, float(np.abs(half.astype(np.float32) - value).max() / scale) if scale else 0.0)
            value = half
        values[variable.op.name] = value
    os.makedirs(folder, exist_ok=True)
    temporary = os.path.join(folder, f'.{WEIGHTS}.partial.npz')
    np.savez_compressed(temporary, **values)
    os.replace(temporary, os.path.join(folder, WEIGHTS))
    architecture = {key: getattr(config, key) for key in config.ARCHITECTURE_KEYS}
    atomic.write_json(os.path.join(folder, 'config.json'), {
        'description': description, 'config': architecture, **(extra or {})})
    return worst


def restore(sess, variables, weights, way_out=None):
    """Load the shipped float16 values into `variables` (as float32: exactly the stored numbers).
    way_out: what a damaged or foreign file's message tells to do."""
    way_out = way_out or f'restore it with git checkout -- {weights}'
    try:
        with np.load(weights) as stored:
            values = {name: stored[name] for name in stored.files}
    except (OSError, ValueError) as error:
        raise UserError(f'{weights} is damaged ({error}): {way_out}')
    names = {v.op.name for v in variables}
    if set(values) != names:
        raise UserError(f'{weights} does not match this graph (differs in '
                        f'{sorted(set(values) ^ names)[:3]}): {way_out}')
    for variable in variables:
        value = values[variable.op.name]
        if tuple(value.shape) != tuple(variable.shape):
            raise UserError(f'{weights}: {variable.op.name} is {value.shape}, the graph needs '
                            f'{tuple(variable.shape)}: {way_out}')
        variable.load(value.astype(variable.dtype.as_numpy_dtype), sess)


def restore_into(sess, variables, weights):
    """restore() into those of `variables` that `weights` holds (a training graph holds more)."""
    try:
        with np.load(weights) as stored:
            names = set(stored.files)
    except (OSError, ValueError) as error:
        raise UserError(f'{weights} is not a saved completion network ({error}): experiments/ship_model.py '
                        f'writes one')
    restore(sess, [v for v in variables if v.op.name in names], weights,
            'write it again with experiments/ship_model.py from a checkpoint of the same architecture')
