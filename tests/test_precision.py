"""PRECISION: float16 and bfloat16 training with float32 weights; float16's dynamic loss scale."""
import numpy as np
import pytest
import tensorflow as tf

import config
from glcic import graphs
from conftest import tiny_graph

tf1 = tf.compat.v1


def batch(seed=0):
    rng = np.random.RandomState(seed)
    images = rng.randint(0, 256, (config.BATCH_SIZE, config.IMAGE_SIZE, config.IMAGE_SIZE, 3)).astype(np.uint8)
    masks = np.zeros((config.BATCH_SIZE, config.IMAGE_SIZE, config.IMAGE_SIZE, 1), np.float32)
    masks[:, 8:18, 10:20] = 1
    return images, masks, np.full((config.BATCH_SIZE, 2), 6, np.int32)


def values(sess, variables):
    return dict(zip((v.op.name for v in variables), sess.run(list(variables))))  # one run: each new fetch costs a prune


def variable(sess, name):
    return next(v for v in sess.graph.get_collection(tf1.GraphKeys.GLOBAL_VARIABLES) if v.op.name == name)


@pytest.mark.parametrize('precision', ['float16', 'bfloat16'])
def test_each_precision_trains_all_three_phases_and_saves_float32_weights(tiny_config, tmp_path, precision):
    model, sess = tiny_graph(PRECISION=precision)
    assert all(v.dtype.base_dtype == tf.float32 for v in model.g_vars + model.d_vars)
    assert any(op.type == 'Conv2D' and op.get_attr('T') == graphs.DTYPES[precision]
               for op in sess.graph.get_operations())
    feed = model.feed(*batch())
    trained = {1: model.g_vars, 2: model.d_vars, 3: model.g_vars + model.d_vars}
    for phase in (1, 2, 3):
        before = values(sess, model.g_vars + model.d_vars)
        _, losses = sess.run([model.train_ops[phase], model.losses[phase]], feed)
        after = values(sess, model.g_vars + model.d_vars)
        assert all(np.isfinite(value) for value in losses.values()), (phase, losses)
        changed = {name for name in after if not np.array_equal(after[name], before[name])}
        assert changed == {v.op.name for v in trained[phase]}, phase

    # its checkpoint restores into a float32 graph bit for bit
    with sess.graph.as_default():
        saved = values(sess, tf1.global_variables())
        tf1.train.Saver().save(sess, str(tmp_path / 'ckpt'))
    _, sess32 = tiny_graph(seed=1, PRECISION='float32')
    with sess32.graph.as_default():
        tf1.train.Saver().restore(sess32, str(tmp_path / 'ckpt'))
        restored = values(sess32, tf1.global_variables())
    assert restored.keys() == saved.keys()
    assert all(np.array_equal(restored[name], saved[name]) for name in saved)
    assert all(np.dtype(value.dtype) != np.float16 for value in saved.values())


def test_float16_skips_an_overflowing_step_halves_the_scale_then_grows_it(tiny_config):
    model, sess = tiny_graph(PRECISION='float16')
    scale, good = variable(sess, 'state/g_loss_scale'), variable(sess, 'state/g_good_steps')
    feed = model.feed(*batch())
    before = values(sess, model.g_vars)
    scale.load(2.0 ** 40, sess)  # the scaled gradients overflow float16
    sess.run(model.train_ops[1], feed)
    assert all(np.array_equal(v, before[k]) for k, v in values(sess, model.g_vars).items())  # skipped
    assert sess.run(scale) == 2.0 ** 39 and sess.run(good) == 0
    assert model.state(sess)[3] == 1  # the step counts; its update was skipped

    scale.load(2.0 ** 10, sess)
    good.load(graphs.LOSS_SCALE_GROWTH_STEPS - 1, sess)
    sess.run(model.train_ops[1], feed)
    after = values(sess, model.g_vars)
    assert all(not np.array_equal(after[k], before[k]) for k in after)  # applied
    assert sess.run(scale) == 2.0 ** 11 and sess.run(good) == 0  # grown after the run of finite steps
    sess.run(model.train_ops[1], feed)
    assert sess.run(scale) == 2.0 ** 11 and sess.run(good) == 1
