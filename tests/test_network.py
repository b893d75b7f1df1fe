"""graphs.Inference(): only the completion network and its input, restored from
a training checkpoint, completing bit for bit as the training graph does; the in-graph pixel
conversions; bfloat16 inference; checkpoint names of the training graph."""
import os

import numpy as np
import pytest
import tensorflow as tf

import config
from glcic import backup, data, graphs, synthetic
from conftest import TINY

tf1 = tf.compat.v1
STATE = ['state/mean_pixel:0', 'state/step:0', 'state/epoch:0', 'state/epoch_step:0', 'state/phase:0']
# bfloat16 keeps 8 significant bits: hole pixels may differ from float32 by a few of 255 levels
# (at most 25 and 3.7 on average in the tiny 1/8-width model here, 8 and 1.3 at full width;
# BENCHMARKS.md for a trained one).
BF16_MAX, BF16_MEAN = 32, 5.0


def build(kind=graphs.Training, **kwargs):
    """kind(**kwargs) (graphs.Training or graphs.Inference) in a fresh graph: (graph, model)."""
    graph = tf.Graph()
    with graph.as_default():
        tf1.set_random_seed(0)
        model = kind(**kwargs)
    return graph, model


def restored(checkpoint, kind=graphs.Training, **kwargs):
    """kind(**kwargs) restored from `checkpoint` through a Saver over its variables."""
    graph, model = build(kind, **kwargs)
    with graph.as_default():
        saver = tf1.train.Saver(model.variables)
    sess = tf1.Session(graph=graph)
    saver.restore(sess, checkpoint)
    graph.finalize()
    return model, sess


def inputs(count, height, width, seed):
    """Faces cropped to height x width with one hole each: (uint8 images, float masks)."""
    side = max(height, width)
    images = synthetic.faces(count, side, seed)[:, :height, :width]
    masks = np.zeros((count, height, width, 1), np.float32)
    rng = np.random.RandomState(seed)
    for mask in masks:
        y, x = rng.randint(0, height - 8), rng.randint(0, width - 8)
        mask[y:y + rng.randint(4, 9), x:x + rng.randint(4, 9)] = 1.0
    return np.ascontiguousarray(images), masks


def save_tiny_checkpoint(backup_dir):
    """Save a checkpoint of the training graph as train.py leaves one, with its config.json,
    in backup_dir: two phase-1 steps, then re-estimated batch-norm averages (away from their
    initial 0 and 1). config must hold the TINY sizes. Returns: the checkpoint's path."""
    config.set_values({'BACKUP_DIR': str(backup_dir)})
    os.makedirs(backup_dir, exist_ok=True)
    graph, model = build()
    with graph.as_default():
        saver = tf1.train.Saver()
        init = tf1.global_variables_initializer()
    with tf1.Session(graph=graph) as sess:
        sess.run(init)
        faces = synthetic.faces(16, config.IMAGE_SIZE, 0)
        sess.run(model.set_mean_pixel, {model.mean_pixel_value: data.mean_pixel(faces)})
        rng = np.random.RandomState(0)
        feeds = [model.feed(part, *data.sample_holes(rng, len(part))) for part in (faces[:8], faces[8:])]
        for feed in feeds:
            sess.run(model.train_ops[1], feed)
        model.recalibrate(sess, feeds)
        path = backup.save(sess, saver, backup.LATEST, step=2)
    backup.write_run_config()
    return path


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    """A tiny training checkpoint and what the training graph completes from it (moving
    averages at two sizes, batch statistics), to compare against."""
    saved = config.as_dict()
    config.set_values(TINY)
    path = save_tiny_checkpoint(tmp_path_factory.mktemp('run') / 'backup')
    model, sess = restored(path)
    # 11 images: more than one BATCH_SIZE of 8, so complete() runs two parts.
    square, odd = inputs(11, 32, 32, 1), inputs(3, 20, 28, 2)
    expect = {'square': model.complete(sess, *square), 'odd': model.complete(sess, *odd),
              'batch_stats': model.complete(sess, *square, batch_stats=True), 'state': model.state(sess)}
    sess.close()
    yield {'path': path, 'square': square, 'odd': odd, 'expect': expect}
    config.set_values(saved)


def test_inference_build_holds_the_generator_and_its_input_only(tiny_config):
    train_graph, trained = build()
    graph, model = build(graphs.Inference)
    with graph.as_default():
        names = [v.name for v in tf1.global_variables()]
    assert [v.name for v in model.variables] == names
    generator = [v.name for v in trained.variables
                 if v.name.startswith('generator/') and '_adam' not in v.name]  # not Adam's slots
    assert sorted(names) == sorted(STATE + generator)
    assert len(generator) == 17 + 16 * 4 + 1  # w per layer, BN beta/gamma/mean/var, last bias
    ops = [op.name for op in graph.get_operations()]
    assert not [n for n in ops if 'discriminator' in n or 'adam' in n or 'gradients' in n]
    placeholders = sorted(op.name for op in graph.get_operations() if op.type == 'Placeholder')
    assert placeholders == ['images', 'masks']
    assert not hasattr(model, 'train_ops')
    assert len(ops) < len(train_graph.get_operations()) / 5


def test_training_checkpoint_restores_and_completes_bit_for_bit(checkpoint):
    model, sess = restored(checkpoint['path'], graphs.Inference)
    expect = checkpoint['expect']
    assert model.state(sess) == expect['state'] == (1, 0, 2, 2)
    square = model.complete(sess, *checkpoint['square'])
    assert square.dtype == np.uint8 and np.array_equal(square, expect['square'])
    assert np.array_equal(model.complete(sess, *checkpoint['odd']), expect['odd'])
    images, masks = checkpoint['odd']
    known = masks[..., 0] == 0
    assert np.array_equal(expect['odd'][known], images[known])
    assert not np.array_equal(expect['odd'], images)  # the hole was filled
    with pytest.raises(ValueError, match=r'batch_stats=True needs Training\(\) or Inference\(batch_stats=True\)'):
        model.complete(sess, images, masks, batch_stats=True)


def test_batch_statistics_build_matches_the_training_graph(checkpoint):
    model, sess = restored(checkpoint['path'], graphs.Inference, batch_stats=True)
    out = model.complete(sess, *checkpoint['square'], batch_stats=True)
    assert np.array_equal(out, checkpoint['expect']['batch_stats'])
    assert not np.array_equal(out, checkpoint['expect']['square'])


def test_in_graph_pixel_conversions_equal_data_py():
    every = np.arange(256, dtype=np.uint8)
    # Exact halves between two levels, both ends, beyond them, and values near a half.
    halves = (np.arange(-2, 258) + 0.5) / 127.5 - 1.0
    floats = np.concatenate([halves, np.linspace(-1.2, 1.2, 4001), [-1.0, 1.0, 0.0]]).astype(np.float32)
    with tf.Graph().as_default(), tf1.Session() as sess:
        as_float, as_uint8 = sess.run([graphs.to_float(tf.constant(every)),
                                       graphs.to_uint8(tf.constant(floats))])
    assert np.array_equal(as_float, data.to_float(every))
    assert as_uint8.dtype == np.uint8 and np.array_equal(as_uint8, data.to_uint8(floats))


def test_bfloat16_restores_the_same_checkpoint_and_stays_close(checkpoint):
    model, sess = restored(checkpoint['path'], graphs.Inference, bfloat16=True)
    assert all(v.dtype.base_dtype == tf.float32 for v in model.variables if 'state/' not in v.name)
    images, masks = checkpoint['square']
    out = model.complete(sess, images, masks)
    expect = checkpoint['expect']['square']
    known = masks[..., 0] == 0
    assert np.array_equal(out[known], images[known])
    diff = np.abs(out.astype(int) - expect)[~known]
    assert diff.max() <= BF16_MAX and diff.mean() < BF16_MEAN, (diff.max(), diff.mean())
    assert diff.max() > 0  # it did compute in bfloat16


def test_training_checkpoint_names_are_unchanged(tiny_config):
    """Old checkpoints restore only if every variable keeps its name."""
    graph, model = build()
    names = {v.name[:-2] for v in model.variables}
    g_vars, d_vars = ({v.name[:-2] for v in variables} for variables in (model.g_vars, model.d_vars))
    weights = g_vars | d_vars
    slots = {f'{w}/{opt}{n}' for ws, opt in ((g_vars, 'g_adam'), (d_vars, 'd_adam'))
             for w in ws for n in ('', '_1')}  # Adam's m and v
    statistics = {n for n in names if n.endswith(('/moving_mean', '/moving_variance'))}
    powers = {'beta1_power', 'beta2_power', 'beta1_power_1', 'beta2_power_1'}
    state = {n[:-2] for n in STATE}
    # Variables newer than a checkpoint start from their initial value (backup.restore).
    assert names == weights | slots | statistics | powers | state | set(graphs.ADDED_STATE)
    # Adam's powers are named in the order the optimizers are first applied: G's, then D's.
    owners = {name: graph.get_operation_by_name(name).colocation_groups()[0].decode()
              for name in powers}
    assert owners['beta1_power'].startswith('loc:@generator/')
    assert owners['beta1_power_1'].startswith('loc:@discriminator/')
