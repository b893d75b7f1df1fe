"""The pipeline of issue 2: config, layers, network, data, to_npy and train.py."""
import json
import os

import cv2
import numpy as np
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing import event_accumulator

import config
import layer
import network
from glcic import backup, data, errors, graphs, synthetic
from conftest import run_script, tiny_args, tiny_graph

tf1 = tf.compat.v1


# --- config ---

def test_overrides_apply_and_convert(tiny_config):
    rest = config.parse_overrides(['--BATCH_SIZE=4', '--ALPHA=1', '--MASK_CHANNEL=False', '--src', 'x'])
    assert rest == ['--src', 'x']
    assert config.BATCH_SIZE == 4 and config.ALPHA == 1.0 and isinstance(config.ALPHA, float)
    assert config.MASK_CHANNEL is False


def test_a_preset_sets_its_keys_and_given_keys_win(tiny_config):
    cpu = config.PRESETS['cpu']
    config.parse_overrides(['--PRESET=cpu'])
    assert {key: getattr(config, key) for key in cpu} == cpu
    assert config.IMAGE_SIZE == 32  # keys outside the preset keep their values
    config.parse_overrides(['--BATCH_SIZE=4', '--PRESET=cpu'])  # the order does not matter
    assert config.BATCH_SIZE == 4 and config.PRETRAIN_EPOCH == cpu['PRETRAIN_EPOCH']
    config.parse_overrides(['--PRESET='])  # back to the values written in config.py
    written = {key: config._FILE_VALUES[key] for key in cpu}
    assert {key: getattr(config, key) for key in cpu} == written != cpu
    with pytest.raises(config.ConfigError, match="PRESET='gpu': valid presets are '' .*'cpu'"):
        config.parse_overrides(['--PRESET=gpu'])


@pytest.mark.parametrize('arg, words', [
    ('--BATCHSIZE=4', ['unknown setting BATCHSIZE', 'BATCH_SIZE']),
    ('--BATCH_SIZE=abc', ['BATCH_SIZE', 'not a literal']),
    ('--BATCH_SIZE=1.5', ['BATCH_SIZE', 'expected int']),
    ('--BATCH_SIZE=0', ['BATCH_SIZE=0', '>= 1']),
    ('--HOLE_MAX=20', ['HOLE_MAX', 'LOCAL_SIZE']),
    ('--IMAGE_SIZE=30', ['IMAGE_SIZE', 'divisible by 4']),
    ('--LOCAL_SIZE=40', ['LOCAL_SIZE', 'IMAGE_SIZE']),
    ('--WIDTH=0', ['WIDTH=0', '>= 1']),
])
def test_bad_overrides_name_the_key(tiny_config, arg, words):
    with pytest.raises(config.ConfigError) as error:
        config.parse_overrides([arg])
    for word in words:
        assert word in str(error.value)


def test_a_config_json_older_than_width_holds_the_paper_widths(tiny_config, tmp_path):
    older = {key: value for key, value in config.as_dict().items() if key != 'WIDTH'}
    (tmp_path / 'config.json').write_text(json.dumps(older))
    backup.apply_run_config([f'--BACKUP_DIR={tmp_path}'])
    assert config.WIDTH == 1
    with pytest.raises(errors.UserError, match=r'trained with WIDTH=1 but the config says WIDTH=8; '
                                               r'drop --WIDTH=8'):
        backup.apply_run_config([f'--BACKUP_DIR={tmp_path}', '--WIDTH=8'])


def test_a_models_config_json_gives_the_architecture_and_config_py_the_rest(tmp_path):
    """test.py, export.py and app.py (apply_run_config) take only the architecture from a run's
    config.json, and its holes only where config.py's cannot fit the model."""
    mine = {**config.as_dict(), 'IMAGE_SIZE': 128, 'LOCAL_SIZE': 64, 'HOLE_MIN': 24, 'HOLE_MAX': 48}  # as shipped
    config.set_values(mine)
    theirs = {'BATCH_SIZE': 2, 'SEED': 7, 'NPY_DIR': 'their/npy', 'OUTPUT_DIR': 'their/output',
              'LEARNING_RATE': 0.5, 'FLIP': not mine['FLIP'], 'PRESET': 'cpu'}
    tiny = {'IMAGE_SIZE': 32, 'LOCAL_SIZE': 16, 'MASK_CHANNEL': not mine['MASK_CHANNEL'], 'WIDTH': 8}
    (tmp_path / 'config.json').write_text(json.dumps({**mine, **theirs, **tiny, 'HOLE_MIN': 4, 'HOLE_MAX': 10}))
    backup.apply_run_config([f'--BACKUP_DIR={tmp_path}'])
    assert {key: getattr(config, key) for key in tiny} == tiny
    assert {key: getattr(config, key) for key in theirs} == {key: mine[key] for key in theirs}
    assert (config.HOLE_MIN, config.HOLE_MAX) == (4, 10)  # config.py's 24-48 px do not fit a 16 px patch

    config.set_values(mine)  # as each script starts
    backup.apply_run_config([f'--BACKUP_DIR={tmp_path}', '--HOLE_MIN=2', '--HOLE_MAX=8', '--BATCH_SIZE=3'])
    assert (config.HOLE_MIN, config.HOLE_MAX, config.BATCH_SIZE) == (2, 8, 3)
    config.set_values(mine)
    with pytest.raises(errors.UserError, match=r"HOLE_MAX=20: must be <= LOCAL_SIZE \(16\), the model's in .*"
                                               r"config.json: give holes that fit it \(it was trained with 4-10 px\)"):
        backup.apply_run_config([f'--BACKUP_DIR={tmp_path}', '--HOLE_MIN=4', '--HOLE_MAX=20'])

    big = {**tiny, 'IMAGE_SIZE': 128, 'LOCAL_SIZE': 64}  # config.py's holes fit: config.py's, not the run's
    (tmp_path / 'config.json').write_text(json.dumps({**mine, **big, 'HOLE_MIN': 12, 'HOLE_MAX': 20}))
    config.set_values(mine)
    backup.apply_run_config([f'--BACKUP_DIR={tmp_path}'])
    assert (config.HOLE_MIN, config.HOLE_MAX) == (mine['HOLE_MIN'], mine['HOLE_MAX'])


# --- layers ---

@pytest.mark.parametrize('batch, height, width', [(1, 16, 16), (3, 20, 28), (5, 32, 12)])
def test_layer_shapes_at_odd_batches_and_sizes(batch, height, width):
    with tf.Graph().as_default(), tf1.Session() as sess:
        x = tf1.placeholder(tf.float32, [None, None, None, 3])
        outs = [layer.conv(x, 8, 3, 2, 'conv'), layer.dilated_conv(x, 8, 3, 4, 'dilated'),
                layer.deconv(x, 8, 4, 2, 'deconv')]
        outs.append(layer.batch_norm(outs[0], True, 'bn', 1e-3))
        sess.run(tf1.global_variables_initializer())
        values = sess.run(outs, {x: np.random.rand(batch, height, width, 3)})
    assert values[0].shape == (batch, height // 2, width // 2, 8)
    assert values[1].shape == (batch, height, width, 8)
    assert values[2].shape == (batch, height * 2, width * 2, 8)
    # Batch norm with batch statistics: zero mean, unit variance per channel.
    assert np.allclose(values[3].mean(axis=(0, 1, 2)), 0, atol=1e-4)
    assert np.allclose(values[3].std(axis=(0, 1, 2)), 1, atol=0.05)


# --- network ---

def build(tiny_config):
    graph = tf.Graph()
    with graph.as_default():
        tf1.set_random_seed(0)
        model = graphs.Training()
        saver = tf1.train.Saver()
    sess = tf1.Session(graph=graph)
    with graph.as_default():
        sess.run(tf1.global_variables_initializer())
    return model, saver, sess


def tiny_batch(count=8, seed=0):
    rng = np.random.RandomState(seed)
    images = synthetic.faces(count, config.IMAGE_SIZE, seed)
    masks, corners = data.sample_holes(rng, count)
    return images, masks, corners


@pytest.mark.parametrize('width', [1, 8])
def test_variables_match_the_layer_table(tiny_config, width):
    """WIDTH=1: the paper's Tables 1-2; WIDTH divides every channel count but the RGB output's."""
    config.set_values({'WIDTH': width})
    with tf.Graph().as_default():
        model = graphs.Training()
    shapes = {v.name: v.shape.as_list() for v in model.g_vars + model.d_vars}
    channels = 4  # mask-channel input
    for i, (kind, out, kernel, _) in enumerate(network.GENERATOR, 1):
        out = out if i == len(network.GENERATOR) else out // width
        w = f'generator/{kind}{i}/w:0'
        expect = [kernel, kernel, out, channels] if kind == 'deconv' else [kernel, kernel, channels, out]
        assert shapes[w] == expect, w
        channels = out
    assert shapes['generator/conv17/w:0'] == [3, 3, 32 // width, 3]
    assert shapes['discriminator/global/conv5/w:0'] == [5, 5, 512 // width, 512 // width]
    assert shapes['discriminator/local/conv4/w:0'] == [5, 5, 256 // width, 512 // width]
    assert 'discriminator/local/conv5/w:0' not in shapes
    # 32/2^5 -> 1x1 and 16/2^4 -> 1x1 feature maps of 512 before each FC 1024.
    assert shapes['discriminator/global/fc/w:0'] == [512 // width, 1024 // width]
    assert shapes['discriminator/local/fc/w:0'] == [512 // width, 1024 // width]
    assert shapes['discriminator/fc/w:0'] == [2048 // width, 1]
    assert all(n.startswith(('generator/', 'discriminator/')) for n in shapes)
    assert len(model.g_vars) == 17 + 16 * 2 + 1 and len(model.d_vars) == 9 + 9 * 2 + 3 * 2


def test_a_width_beyond_a_layer_keeps_one_channel(tiny_config):
    config.set_values({'WIDTH': 100})
    with tf.Graph().as_default():
        model = graphs.Training()
    shapes = {v.name: v.shape.as_list() for v in model.g_vars + model.d_vars}
    assert shapes['generator/conv1/w:0'] == [5, 5, 4, 1]  # 64 // 100 = 0, kept at 1
    assert shapes['generator/conv2/w:0'] == [3, 3, 1, 1]  # 128 // 100
    assert shapes['generator/conv17/w:0'] == [3, 3, 1, 3]
    assert shapes['discriminator/global/fc/w:0'] == [5, 10]  # 512 // 100, 1024 // 100


def test_three_channel_input_switch(tiny_config):
    config.set_values({'MASK_CHANNEL': False})
    model, _, _ = build(tiny_config)
    assert model.g_vars[0].shape.as_list() == [5, 5, 3, 64 // config.WIDTH]


def ops_reached(fetch):
    """Names of every op that running `fetch` executes."""
    seen, todo = set(), [getattr(fetch, 'op', fetch)]
    while todo:
        op = todo.pop()
        if op.name in seen:
            continue
        seen.add(op.name)
        todo += [t.op for t in op.inputs] + list(op.control_inputs)
    return seen


def test_adversarial_gradient_reaches_generator_only_in_phase_3(tiny_config):
    model, _, sess = build(tiny_config)
    images, masks, corners = tiny_batch()
    feed = model.feed(images, masks, corners)
    with sess.graph.as_default():
        adv = tf.gradients(model.g_adv, model.g_vars)
        total = tf.gradients(model.g_loss, model.g_vars)
        mse = tf.gradients(model.mse, model.g_vars)
    adv, total, mse = sess.run([adv, total, mse], feed)
    assert all(np.abs(g).sum() > 0 for g in adv)
    assert sum(np.abs(t - m).sum() for t, m in zip(total, mse)) > 0
    assert not any(n.startswith('discriminator/') for n in ops_reached(model.train_ops[1]))
    assert any(n.startswith('discriminator/') for n in ops_reached(model.train_ops[3]))


def test_adversarial_switch_off_leaves_mse_only(tiny_config):
    config.set_values({'ADVERSARIAL_G': False})
    model, _, sess = build(tiny_config)
    assert not any(n.startswith('discriminator/') for n in ops_reached(model.g_loss))


def test_phases_train_only_their_network(tiny_config):
    model, _, sess = build(tiny_config)
    feed = model.feed(*tiny_batch())
    for phase, changes in ((1, 'g'), (2, 'd'), (3, 'gd')):
        g0, d0 = sess.run([model.g_vars, model.d_vars])
        sess.run(model.train_ops[phase], feed)
        g1, d1 = sess.run([model.g_vars, model.d_vars])
        g_changed = any(not np.array_equal(a, b) for a, b in zip(g0, g1))
        d_changed = any(not np.array_equal(a, b) for a, b in zip(d0, d1))
        assert (g_changed, d_changed) == ('g' in changes, 'd' in changes), phase
    assert model.state(sess)[3] == 3


def test_create_model_alone_steps_every_phase_as_training_does(tiny_config):
    """graphs.create_model on its own inputs, no Training around it, makes the same updates as
    Training's train ops from the same weights: Training only wraps it."""
    model, sess = tiny_graph()
    images, masks, corners = tiny_batch()
    variables = model.g_vars + model.d_vars
    start = dict(zip((v.op.name for v in variables), sess.run(variables)))
    size = config.IMAGE_SIZE
    graph = tf.Graph()
    with graph.as_default():
        fed = (tf1.placeholder(tf.uint8, [None, size, size, 3]), tf1.placeholder(tf.float32, [None, size, size, 1]),
               tf1.placeholder(tf.int32, [None, 2]))
        alone = graphs.create_model(graphs.to_float(fed[0]), fed[1], fed[2], fed[2], tf.zeros([3]))
        trained = tf1.trainable_variables()
        settings = tf1.ConfigProto()
        settings.graph_options.rewrite_options.disable_meta_optimizer = True  # as tiny_graph's session
        alone_sess = tf1.Session(graph=graph, config=settings)
        alone_sess.run(tf1.global_variables_initializer())
        for v in trained:
            v.load(start[v.op.name], alone_sess)
    assert {phase: set(p.losses) for phase, p in alone.phases.items()} == {
        1: {'mse'}, 2: {'mse', 'd_loss'}, 3: {'mse', 'd_loss', 'g_adv'}}
    for phase in (1, 2, 3):
        _, want_losses = sess.run([model.train_ops[phase], model.losses[phase]], model.feed(images, masks, corners))
        _, got_losses = alone_sess.run([alone.phases[phase].train, alone.phases[phase].losses],
                                       dict(zip(fed, (images, masks, corners))))
        want = dict(zip((v.op.name for v in variables), sess.run(variables)))
        got = dict(zip((v.op.name for v in trained), alone_sess.run(trained)))
        assert got_losses == want_losses and got.keys() == want.keys()
        assert all(np.array_equal(got[name], want[name]) for name in want), phase
        assert any(not np.array_equal(got[name], start[name]) for name in got), phase


def test_completion_keeps_known_pixels_and_crops_the_hole_patch(tiny_config):
    model, _, sess = build(tiny_config)
    images, masks, corners = tiny_batch(3)
    out = model.complete(sess, images, masks)
    known = masks[..., 0] == 0
    assert out.shape == images.shape and out.dtype == np.uint8
    assert np.array_equal(out[known], images[known])
    with sess.graph.as_default():
        patches = network.crop_local(tf.constant(images), tf.constant(corners), config.LOCAL_SIZE)
    patches = sess.run(patches)
    for img, patch, (y, x) in zip(images, patches, corners):
        assert np.array_equal(patch, img[y:y + config.LOCAL_SIZE, x:x + config.LOCAL_SIZE])


def test_short_training_lowers_mse(tiny_config):
    model, _, sess = build(tiny_config)
    train = synthetic.faces(64, config.IMAGE_SIZE, 1)
    sess.run(model.set_mean_pixel, {model.mean_pixel_value: data.mean_pixel(train)})
    held = model.feed(*tiny_batch(16, seed=99))
    before = sess.run(model.mse, held)
    rng = np.random.RandomState(0)
    for _ in range(60):
        index = rng.choice(len(train), config.BATCH_SIZE, replace=False)
        masks, corners = data.sample_holes(rng, config.BATCH_SIZE)
        sess.run(model.train_ops[1], model.feed(train[index], masks, corners))
    after = sess.run(model.mse, held)
    assert after < 0.5 * before, (before, after)


def test_recalibration_matches_batch_statistics(tiny_config):
    model, _, sess = build(tiny_config)
    images, masks, _ = tiny_batch(16)
    feeds = [model.feed(images[i:i + 8], masks[i:i + 8]) for i in (0, 8)]
    with sess.graph.as_default():
        moving = [v for v in tf1.global_variables() if v.name.startswith('generator/conv1_bn/moving')]
    model.recalibrate(sess, feeds)
    mean, var = sess.run(moving)
    with sess.graph.as_default():
        first = sess.graph.get_tensor_by_name('generator_1/conv1/Conv2D:0')
    act = np.concatenate([sess.run(first, f) for f in feeds])
    assert np.allclose(mean, act.mean(axis=(0, 1, 2)), atol=1e-3)


def test_save_restore_is_bit_identical(tiny_config, tmp_path):
    model, saver, sess = build(tiny_config)
    sess.run(model.train_ops[3], model.feed(*tiny_batch()))
    with sess.graph.as_default():
        variables = tf1.global_variables()
    before = sess.run(variables)
    path = saver.save(sess, str(tmp_path / 'ckpt'))
    sess.run([v.initializer for v in variables])
    assert not all(np.array_equal(a, b) for a, b in zip(before, sess.run(variables)))
    saver.restore(sess, path)
    assert all(np.array_equal(a, b) for a, b in zip(before, sess.run(variables)))


# --- data ---

@pytest.mark.parametrize('centred', [True, False])
def test_holes_lie_inside_their_patch(tiny_config, centred):
    config.set_values({'LOCAL_CENTRED': centred})
    masks, corners = data.sample_holes(np.random.RandomState(3), 400)
    assert masks.shape == (400, 32, 32, 1) and masks.dtype == np.float32
    size, local, offsets = config.IMAGE_SIZE, config.LOCAL_SIZE, []
    for mask, (y, x) in zip(masks[..., 0], corners):
        rows, cols = np.nonzero(mask)
        h, w = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
        assert config.HOLE_MIN <= h <= config.HOLE_MAX and config.HOLE_MIN <= w <= config.HOLE_MAX
        assert mask.sum() == h * w  # one rectangle
        assert 0 <= y <= size - local and 0 <= x <= size - local  # the patch fits the image
        assert y <= rows.min() and rows.max() < y + local
        assert x <= cols.min() and cols.max() < x + local
        centre = np.array([rows.min() + h // 2, cols.min() + w // 2])
        wanted = centre - local // 2
        if centred:  # centred on the hole, moved only as far as the border demands
            assert np.array_equal([y, x], np.clip(wanted, 0, size - local))
        offsets.append(np.abs(np.array([y, x]) - np.clip(wanted, 0, size - local)).max())
    if not centred:
        assert max(offsets) >= 4  # the patch wanders around the hole
    again, _ = data.sample_holes(np.random.RandomState(3), 400)
    assert np.array_equal(masks, again)


def test_holes_do_not_depend_on_where_the_patch_goes(tiny_config):
    """Test holes and training holes stay the same when only LOCAL_CENTRED changes."""
    config.set_values({'LOCAL_CENTRED': True})
    centred, _ = data.sample_holes(np.random.RandomState(5), 50)
    config.set_values({'LOCAL_CENTRED': False})
    anywhere, _ = data.sample_holes(np.random.RandomState(5), 50)
    assert np.array_equal(centred, anywhere)


def test_pixel_conversions_round_trip():
    pixels = np.arange(256, dtype=np.uint8)
    assert data.to_float(pixels).min() == -1 and data.to_float(pixels).max() == 1
    assert np.array_equal(data.to_uint8(data.to_float(pixels)), pixels)


def test_synthetic_faces_are_deterministic_and_mirrored():
    a, b = synthetic.faces(4, 64, 5), synthetic.faces(4, 64, 5)
    assert a.shape == (4, 64, 64, 3) and a.dtype == np.uint8 and np.array_equal(a, b)
    assert not np.array_equal(a[0], a[1])
    # Left-right mirror is much closer than two different faces.
    mirror = np.abs(a.astype(int) - a[:, :, ::-1]).mean()
    other = np.abs(a[0].astype(int) - a[1]).mean()
    assert mirror < 0.5 * other


def write_test_images(folder):
    folder.mkdir(parents=True)
    rng = np.random.RandomState(0)
    cv2.imwrite(str(folder / 'good.jpg'), rng.randint(0, 255, (218, 178, 3)).astype(np.uint8))
    cv2.imwrite(str(folder / 'gray.png'), rng.randint(0, 255, (50, 70)).astype(np.uint8))
    cv2.imwrite(str(folder / 'rgba.png'), rng.randint(0, 255, (40, 40, 4)).astype(np.uint8))
    (folder / 'sub').mkdir()
    cv2.imwrite(str(folder / 'sub' / 'nested.bmp'), rng.randint(0, 255, (33, 33, 3)).astype(np.uint8))
    (folder / 'corrupt.jpg').write_bytes(b'\xff\xd8\xff this is not a jpeg')
    (folder / 'notes.txt').write_text('not an image')


def test_to_npy_reads_a_mixed_folder(tmp_path):
    write_test_images(tmp_path / 'images')
    result = run_script('to_npy.py', *tiny_args(tmp_path, NUM_IMAGES=10, TRAIN_RATIO=0.5))
    assert result.returncode == 0, result.stderr
    train = np.load(tmp_path / 'npy' / 'x_train.npy')
    test = np.load(tmp_path / 'npy' / 'x_test.npy')
    assert train.dtype == np.uint8 and train.shape[1:] == (32, 32, 3)
    assert len(train) + len(test) == 4 and len(train) == 2
    meta = json.loads((tmp_path / 'npy' / 'meta.json').read_text())
    assert meta['skipped'] == 1 and list(meta['skipped_files'])[0].endswith('corrupt.jpg')
    assert 'skipped 1' in result.stdout


def test_to_npy_crops_the_centre_square(tmp_path, tiny_config):
    import to_npy
    img = np.zeros((218, 178, 3), np.uint8)
    img[20:198] = 200  # the centre square is bright, the bands above and below are black
    cv2.imwrite(str(tmp_path / 'celeba.png'), img)
    square, reason = to_npy.load_square(str(tmp_path / 'celeba.png'))
    assert reason is None and square.shape == (32, 32, 3) and square.min() == 200


def test_to_npy_empty_folder_is_one_line(tmp_path):
    (tmp_path / 'images').mkdir()
    result = run_script('to_npy.py', *tiny_args(tmp_path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and 'no usable images' in lines[0] and '--demo' in lines[0]


# --- train.py ---

def test_train_without_data_is_one_line(tmp_path):
    import train
    with pytest.raises(errors.UserError, match='x_train.npy not found') as error:
        train.main(tiny_args(tmp_path))
    assert '\n' not in str(error.value)


@pytest.mark.slow
def test_train_runs_all_phases_and_resumes(tmp_path):
    assert run_script('to_npy.py', '--demo', '80', *tiny_args(tmp_path)).returncode == 0
    args = tiny_args(tmp_path, PRETRAIN_EPOCH=2, D_EPOCH=1)
    first = run_script('train.py', *args, '--MAX_EPOCH=2')
    assert first.returncode == 0, first.stderr
    assert 'reached MAX_EPOCH=2' in first.stdout and 'phase 1 done' in first.stdout
    backup = tmp_path / 'backup'
    assert (backup / 'latest-18.index').exists() and (backup / 'config.json').exists()
    second = run_script('train.py', *args, '--MAX_EPOCH=4')
    assert second.returncode == 0, second.stderr
    assert 'phase 2, epoch 3, batch 0, step 18' in second.stdout
    assert 'note: resuming with other settings than the saved run: MAX_EPOCH 2 -> 4' in second.stdout
    assert (backup / 'pretrained.index').exists()
    rows = (tmp_path / 'output' / 'loss.csv').read_text().splitlines()
    assert [r.split(',')[:3] for r in rows[1:]] == [['1', '1', '9'], ['2', '1', '18'],
                                                    ['3', '2', '27'], ['4', '3', '36']]
    mse = [float(r.split(',')[4]) for r in rows[1:3]]
    assert mse[1] < mse[0]
    out = tmp_path / 'output'
    for name in ('epoch_0001.png', 'epoch_0004.png', 'loss.png'):
        assert (out / name).stat().st_size > 1000
    # TensorBoard shows each epoch's grid: the same PNG bytes, at the step the epoch ended.
    logs = event_accumulator.EventAccumulator(str(out / 'logs'), size_guidance={'images': 0}).Reload()
    shown = {e.step: e.encoded_image_string for e in logs.Images('samples')}
    assert shown == {9 * epoch: (out / f'epoch_{epoch:04d}.png').read_bytes() for epoch in (1, 2, 3, 4)}
    saved = json.loads((backup / 'config.json').read_text())
    assert saved['IMAGE_SIZE'] == 32 and saved['MAX_EPOCH'] == 4
    # 80 images hold out no validation faces, so phase 3 ran without a stop rule; given 20, the
    # rule scores epochs 5 and 6 and, with windows of one epoch and a gain of 0.9 out of reach, ends
    # the run for good after epoch 6, the score of epoch 5 kept by the resume between them.
    assert 'no stop rule' in second.stdout
    np.save(tmp_path / 'npy' / 'x_val.npy', synthetic.faces(20, 32, 5))
    stop = ('--STOP_LOSS=0.9', '--STOP_EPOCHS=1')
    scored = run_script('train.py', *args, *stop, '--MAX_EPOCH=5')
    assert scored.returncode == 0 and 'val_realism' in scored.stdout, scored.stderr
    stopped = run_script('train.py', *args, *stop, '--MAX_EPOCH=9')
    assert stopped.returncode == 0, stopped.stderr
    assert 'stopped: the mean realism of the last 1 epochs, ' in stopped.stdout, stopped.stdout
    assert 'epoch 7' not in stopped.stdout
    again = run_script('train.py', *args, *stop, '--MAX_EPOCH=9')
    assert again.returncode == 0 and 'already met its stop rule (epoch 6)' in again.stdout, again.stdout
    # Architecture settings must match the backup.
    clash = run_script('train.py', *args, '--MAX_EPOCH=5', '--MASK_CHANNEL=False')
    assert clash.returncode == 2 and 'MASK_CHANNEL' in clash.stderr and '--fresh' in clash.stderr
    # --fresh keeps the old run aside.
    fresh = run_script('train.py', *args, '--MAX_EPOCH=0', '--fresh')
    assert fresh.returncode == 0, fresh.stderr
    moved = [d for d in os.listdir(backup) if d.startswith('previous-')]
    assert len(moved) == 1 and (backup / moved[0] / 'pretrained.index').exists()
