"""test.py, evaluate.py and blending.py: metrics against hand-computed values, blending that never sees
the ground truth, grids and tables from a tiny trained model, user photos at odd sizes,
and every bad-input message."""
import importlib.util
import json
import math
import os
import shutil
import sys

import cv2
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')

import config  # noqa: E402
from glcic import backup, blending, data, errors, evaluate, inference, photos, realism, synthetic  # noqa: E402

# Loaded from its path: `import test` could find Python's own test package instead.
_spec = importlib.util.spec_from_file_location('glcic_test_script', os.path.join(ROOT, 'test.py'))
script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(script)

MAIN_ROWS = ['mean-pixel fill', 'OpenCV Telea', 'completion only', 'completion only + blending',
             'completion + discriminator', 'completion + discriminator + blending']
TEST_IMAGES = 12  # of trained_run: two grids, 8 rows and 4


@pytest.fixture(scope='module')
def nets(trained_run):
    """Both checkpoints of `trained_run`, restored once with its settings (kept while in use)."""
    saved = config.as_dict()
    backup.apply_run_config([f'--BACKUP_DIR={trained_run}/backup'])
    opened = inference.Networks(backup.trained(), batch_stats=True)
    yield opened
    opened.close()
    config.set_values(saved)


def write_png(path, rgb):
    assert cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1]))


def read_png(path):
    return cv2.imread(str(path))[..., ::-1]


def photo(height, width, seed=0):
    """A face-like RGB photo of any size."""
    face = synthetic.face(64, seed)
    return cv2.resize(face, (width, height), interpolation=cv2.INTER_LINEAR)


# --- metrics, by hand ---

def test_hole_metrics_count_only_the_hole():
    truth = np.zeros((1, 2, 2, 3), np.uint8)
    image = truth.copy()
    image[0, 0, 0] = 10
    image[0, 0, 1] = 20
    image[0, 1, 1] = 100  # outside the hole: must not count
    masks = np.zeros((1, 2, 2, 1), np.float32)
    masks[0, 0, :] = 1
    assert evaluate.hole_l1(image, truth, masks) == pytest.approx([15.0])
    # mse over the hole = (10^2 + 20^2) / 2 = 250
    assert evaluate.hole_psnr(image, truth, masks) == pytest.approx([10 * math.log10(255 ** 2 / 250)])
    assert evaluate.hole_psnr(image, truth, masks)[0] == pytest.approx(24.1514, abs=1e-4)


def test_metrics_do_not_wrap_around_in_uint8():
    truth = np.full((1, 2, 2, 3), 255, np.uint8)
    image = np.zeros_like(truth)
    masks = np.ones((1, 2, 2, 1), np.float32)
    assert evaluate.hole_l1(image, truth, masks) == pytest.approx([255.0])
    assert evaluate.hole_l1(truth, image, masks) == pytest.approx([255.0])
    assert evaluate.psnr(image, truth) == pytest.approx([0.0])


def test_psnr_of_the_whole_image():
    truth = np.full((2, 3, 3, 3), 50, np.uint8)
    image = truth + np.array([10, 0], np.uint8)[:, None, None, None]  # image 0 off by 10, image 1 exact
    values = evaluate.psnr(image, truth)
    assert values[0] == pytest.approx(10 * math.log10(255 ** 2 / 100))  # 28.13 dB
    assert values[1] == evaluate.PSNR_MAX  # exact: capped, not inf


def test_ssim_of_constant_images_by_hand():
    a = np.full((1, 16, 16, 3), 100, np.uint8)
    b = np.full((1, 16, 16, 3), 110, np.uint8)
    c1 = (0.01 * 255) ** 2
    # No variance: SSIM reduces to the luminance term (2ab + C1) / (a^2 + b^2 + C1).
    expected = (2 * 100 * 110 + c1) / (100 ** 2 + 110 ** 2 + c1)
    assert evaluate.ssim(a, b) == pytest.approx([expected])
    assert expected == pytest.approx(0.995476, abs=1e-6)
    noise = np.random.RandomState(0).randint(0, 256, (2, 20, 24, 3)).astype(np.uint8)
    assert evaluate.ssim(noise, noise) == pytest.approx([1.0, 1.0])


def test_ssim_matches_one_window_written_out():
    """An 11x11 image holds exactly one window: weighted means and (co)variances by hand."""
    rng = np.random.RandomState(1)
    x = rng.randint(0, 256, (1, 11, 11, 3)).astype(np.uint8)
    y = np.clip(x.astype(int) + rng.randint(-40, 40, x.shape), 0, 255).astype(np.uint8)
    g = np.exp(-(np.arange(11) - 5.0) ** 2 / (2 * 1.5 ** 2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    values = []
    for ch in range(3):
        a, b = x[0, ..., ch].astype(float), y[0, ..., ch].astype(float)
        ma, mb = (w * a).sum(), (w * b).sum()
        va, vb = (w * a * a).sum() - ma ** 2, (w * b * b).sum() - mb ** 2
        cov = (w * a * b).sum() - ma * mb
        values.append((2 * ma * mb + c1) * (2 * cov + c2) / ((ma ** 2 + mb ** 2 + c1) * (va + vb + c2)))
    assert evaluate.ssim(x, y) == pytest.approx([np.mean(values)], abs=1e-9)
    assert 0 < np.mean(values) < 1


def test_ssim_rejects_images_smaller_than_its_window():
    with pytest.raises(ValueError, match='at least 11x11'):
        evaluate.ssim(np.zeros((1, 8, 8, 3), np.uint8), np.zeros((1, 8, 8, 3), np.uint8))


# --- baselines and blending ---

def smooth_images(count=2, size=32):
    yy, xx = np.mgrid[0:size, 0:size]
    base = np.stack([60 + 3 * xx, 80 + 2 * yy, 70 + xx + yy], axis=2)
    return np.stack([base + 10 * i for i in range(count)]).astype(np.uint8)


def holes(count=2, size=32):
    """A rectangle inside, one on the image's edge and a diagonal stroke (several holes each)."""
    masks = np.zeros((count, size, size, 1), np.float32)
    masks[:, 10:20, 8:18] = 1
    masks[:, 0:6, size - 7:] = 1
    for i in range(6):
        masks[:, 24 + i, 2 + i:5 + i] = 1
    return masks


def test_baselines_fill_only_the_hole():
    truth, masks = smooth_images(), holes()
    hole = masks[..., 0] > 0
    filled = evaluate.mean_fill(truth, masks, [1, 2, 3])
    assert (filled[hole] == [1, 2, 3]).all() and (filled[~hole] == truth[~hole]).all()
    telea = evaluate.telea(evaluate.hide_holes(truth, masks), masks)
    assert (telea[~hole] == truth[~hole]).all()
    # On a smooth image Telea gets close; zeros (the hidden hole) would be 60+ away.
    assert evaluate.hole_l1(telea, truth, masks).max() < 8


def test_blending_never_reads_the_ground_truth():
    truth, masks = smooth_images(), holes()
    hole = masks[..., 0] > 0
    completed = np.where(hole[..., None], 128, truth).astype(np.uint8)
    other = truth.copy()
    other[hole] = np.random.RandomState(0).randint(0, 256, (hole.sum(), 3))
    first = blending.blend(truth, completed, masks)
    second = blending.blend(other, completed, masks)
    assert (first == second).all()
    assert (first[~hole] == truth[~hole]).all()  # known pixels come back unchanged
    assert (first[hole] != completed[hole]).any()  # and the hole did get blended


def test_blending_removes_a_colour_offset():
    """The point of the post-processing: a completion off by a constant colour meets its border."""
    truth, masks = smooth_images(), holes()
    hole = masks[..., 0] > 0
    completed = np.where(hole[..., None], np.clip(truth.astype(int) + 40, 0, 255), truth).astype(np.uint8)
    blended = blending.blend(evaluate.hide_holes(truth, masks), completed, masks)
    before = evaluate.hole_l1(completed, truth, masks)
    after = evaluate.hole_l1(blended, truth, masks)
    assert (after < before / 3).all(), (before, after)


# --- the test set ---

@pytest.fixture
def without_dlib(monkeypatch):
    """test.py as where dlib is missing: no identity column (its embeddings take most of the time
    of a test-set run; only the first test below needs them)."""
    monkeypatch.setattr(evaluate.FaceIdentity, 'load', classmethod(lambda cls: None))


def read_report(out_dir):
    with open(os.path.join(out_dir, 'test', 'metrics.json')) as f:
        return json.load(f)


def test_test_set_writes_grids_and_the_table(trained_run, tmp_path, capsys):
    out = tmp_path / 'out'
    assert script.main([f'--BACKUP_DIR={trained_run}/backup', f'--NPY_DIR={trained_run}/npy', f'--OUTPUT_DIR={out}']) == 0
    printed = capsys.readouterr().out
    grids = sorted(os.listdir(out / 'test'))
    assert grids == ['grid_000.png', 'grid_001.png', 'grids.json', 'metrics.json', 'metrics.md']
    first, second = (cv2.imread(str(out / 'test' / f'grid_00{i}.png')) for i in (0, 1))
    assert first.shape[1] > 5 * 100 and first.shape[0] > 8 * 100  # 5 columns, 8 rows of ~1.6 in
    assert second.shape[0] < first.shape[0]  # the last grid holds the remaining 4 images

    report = read_report(out)
    assert report['images'] == TEST_IMAGES
    assert [r['method'] for r in report['rows']] == MAIN_ROWS
    keys = ['hole_l1', 'hole_psnr', 'psnr', 'ssim', 'sharpness']
    keys += ['identity'] if evaluate.FaceIdentity.load() else []
    assert list(report['columns']) == keys
    rows = {r['method']: r for r in report['rows']}
    # The networks must beat filling the hole with the mean colour on every column.
    for network_row in MAIN_ROWS[2:]:
        assert rows[network_row]['hole_l1'] < rows['mean-pixel fill']['hole_l1']
        for key in ('hole_psnr', 'psnr', 'ssim'):
            assert rows[network_row][key] > rows['mean-pixel fill'][key], (network_row, key)
        # A flat fill has no detail at all; the network draws some.
        assert rows['mean-pixel fill']['sharpness'] == 0 < rows[network_row]['sharpness']

    markdown = (out / 'test' / 'metrics.md').read_text()
    assert '| method | hole L1 | hole PSNR (dB) | PSNR (dB) | SSIM | sharpness |' in markdown
    assert markdown.split('| method |')[1] in printed  # the same table is printed
    table = [line for line in markdown.splitlines() if line.startswith('| ') and 'method' not in line]
    assert [line.split(' | ')[0][2:] for line in table] == MAIN_ROWS
    for column, key in enumerate(keys, 1):
        cells = [line.strip('| ').split(' | ')[column] for line in table]
        bold = [i for i, cell in enumerate(cells) if cell.startswith('**')]
        values = [r[key] for r in report['rows']]
        better = report['columns'][key]['best']
        best = {'higher': max, 'lower': min}.get(better, lambda v: min(v, key=lambda x: abs(x - 1)))(values)
        assert bold and all(abs(values[i] - best) < 0.01 for i in bold), (key, cells)


def test_without_dlib_one_line_says_so_and_the_identity_column_is_left_out(trained_run, tmp_path, capsys,
                                                                           without_dlib):
    out = tmp_path / 'out'
    assert script.main([f'--BACKUP_DIR={trained_run}/backup', f'--NPY_DIR={trained_run}/npy', f'--OUTPUT_DIR={out}',
                        '--grids=0']) == 0
    notes = [line for line in capsys.readouterr().out.splitlines() if line.startswith('note:')]
    assert notes == [f'note: no identity column: {evaluate.FaceIdentity.INSTALL} adds it',
                     f'note: no realism column: it needs at least {realism.MIN_IMAGES} test images']
    report = read_report(out)
    assert list(report['columns']) == ['hole_l1', 'hole_psnr', 'psnr', 'ssim', 'sharpness']
    assert all('identity' not in row for row in report['rows'])


def test_a_test_set_large_enough_gets_the_realism_column_and_its_interval(trained_run, tmp_path, capsys,
                                                                          without_dlib):
    npy = tmp_path / 'npy'
    shutil.copytree(trained_run / 'npy', npy)
    size = np.load(npy / 'x_test.npy').shape[1]
    np.save(npy / 'x_test.npy', np.stack([synthetic.face(size, 1000 + i) for i in range(24)]))
    out = tmp_path / 'out'
    assert script.main([f'--BACKUP_DIR={trained_run}/backup', f'--OUTPUT_DIR={out}', f'--NPY_DIR={npy}',
                        '--grids=0']) == 0
    report = read_report(out)
    assert list(report['columns'])[-1] == 'realism' and report['columns']['realism']['best'] == 'lower'
    assert all(0.0 <= row['realism'] <= 1.0 for row in report['rows'])
    assert f'within about {realism.interval(24):.3f} of 0.5 (95 %) at 24 images' in capsys.readouterr().out


def test_test_set_numbers_are_the_metrics_of_the_fixed_holes(trained_run, tmp_path, without_dlib):
    """Recompute two rows from scratch: same holes, same means, nothing else mixed in."""
    out = tmp_path / 'out'
    script.main([f'--BACKUP_DIR={trained_run}/backup', f'--NPY_DIR={trained_run}/npy', f'--OUTPUT_DIR={out}', '--grids=0'])
    assert not [f for f in os.listdir(out / 'test') if f.startswith('grid_')]
    rows = {r['method']: r for r in read_report(out)['rows']}
    truth = np.load(trained_run / 'npy' / 'x_test.npy')
    masks, _ = data.test_holes(len(truth))
    pixel = data.to_uint8(data.mean_pixel(np.load(trained_run / 'npy' / 'x_train.npy')))
    for name, filled in (('mean-pixel fill', evaluate.mean_fill(truth, masks, pixel)),
                         ('OpenCV Telea', evaluate.telea(evaluate.hide_holes(truth, masks), masks))):
        for key, values in evaluate.measure(filled, truth, masks).items():
            assert rows[name][key] == pytest.approx(values.mean()), (name, key)


def test_the_ground_truth_in_the_hole_changes_nothing(nets, trained_run):
    truth = np.load(trained_run / 'npy' / 'x_test.npy')[:8]
    masks, _ = data.test_holes(8)
    other = truth.copy()
    other[masks[..., 0] > 0] = 255 - other[masks[..., 0] > 0]
    names = [backup.PRETRAINED, backup.LATEST]
    first = script.complete_batch(nets, names, truth, masks, np.array([1, 2, 3], np.uint8), True)
    second = script.complete_batch(nets, names, other, masks, np.array([1, 2, 3], np.uint8), True)
    assert set(first) == set(MAIN_ROWS) | {'completion only (batch statistics)',
                                           'completion + discriminator (batch statistics)'}
    for name in first:
        assert (first[name] == second[name]).all(), name


def test_one_checkpoint_is_said_and_shown(trained_run, tmp_path, capsys, without_dlib):
    only = tmp_path / 'backup'
    shutil.copytree(trained_run / 'backup', only, ignore=shutil.ignore_patterns('pretrained*'))
    out = tmp_path / 'out'
    script.main([f'--BACKUP_DIR={only}', f'--NPY_DIR={trained_run}/npy', f'--OUTPUT_DIR={out}', '--grids=1',
                 '--batch-stats'])
    assert 'has no pretrained checkpoint' in capsys.readouterr().out
    report = read_report(out)
    assert [r['method'] for r in report['rows']] == MAIN_ROWS[:2] + MAIN_ROWS[4:]
    assert [r['method'] for r in report['batch_statistics_rows']] == [
        'completion + discriminator (batch statistics)']
    assert 'batch\'s statistics' in (out / 'test' / 'metrics.md').read_text()
    assert sorted(f for f in os.listdir(out / 'test') if f.startswith('grid_')) == ['grid_000.png']
    with pytest.raises(errors.UserError, match='no pretrained checkpoint .* python train.py'):
        script.main([f'--BACKUP_DIR={only}', '--model', 'pretrained'])


# --- your own photos ---

def test_photo_at_an_odd_size_keeps_its_size_and_known_pixels(trained_run, tmp_path):
    image = photo(157, 203)
    mask = np.zeros((157, 203), np.uint8)
    mask[40:70, 60:100] = 255
    cv2.line(mask, (120, 100), (180, 140), 255, 5)  # a stroke: not only rectangles
    hole = mask > 127
    write_png(tmp_path / 'photo.png', image)
    cv2.imwrite(str(tmp_path / 'mask.png'), mask)
    out = tmp_path / 'result.png'
    script.main([f'--BACKUP_DIR={trained_run}/backup', '--image', str(tmp_path / 'photo.png'),
                 '--mask', str(tmp_path / 'mask.png'), '--out', str(out)])
    result = read_png(out)
    assert result.shape == (157, 203, 3)
    assert (result[~hole] == image[~hole]).all()
    assert result[hole].mean() > 20  # filled, not left at the hidden hole's zeros


def test_bfloat16_switch_completes_close_to_float32(trained_run, tmp_path):
    image = photo(64, 80, seed=7)
    write_png(tmp_path / 'photo.png', image)
    common = [f'--BACKUP_DIR={trained_run}/backup', '--image', str(tmp_path / 'photo.png'), '--box', '20,16,24,20']
    script.main([*common, '--out', str(tmp_path / 'f32.png')])
    script.main([*common, '--out', str(tmp_path / 'bf16.png'), '--bfloat16'])
    f32, bf16 = read_png(tmp_path / 'f32.png'), read_png(tmp_path / 'bf16.png')
    hole = np.zeros(image.shape[:2], bool)
    hole[16:36, 20:44] = True
    assert (bf16[~hole] == image[~hole]).all()
    diff = np.abs(bf16.astype(int) - f32)[hole]
    assert 0 < diff.max() <= 16 and diff.mean() < 3.0, (diff.max(), diff.mean())


@pytest.mark.parametrize('resize, blend', [(None, True), (32, False), (48, True)])
def test_photo_options_keep_size_and_known_pixels_and_never_see_the_hole(nets, resize, blend):
    image = photo(157, 203, seed=3)
    hole = np.zeros((157, 203), bool)
    hole[100:130, 20:61] = True
    hole[0:9, 190:] = True  # touching the border, where the padding reflects
    result = inference.complete_photo(nets, backup.LATEST, image, hole, resize, blend)
    assert result.shape == image.shape and result.dtype == np.uint8
    assert (result[~hole] == image[~hole]).all()
    other = image.copy()
    other[hole] = 255 - other[hole]
    assert (inference.complete_photo(nets, backup.LATEST, other, hole, resize, blend) == result).all()


def test_a_folder_of_photos_with_same_named_masks(trained_run, tmp_path):
    (tmp_path / 'photos').mkdir()
    (tmp_path / 'masks').mkdir()
    sizes = {'a': (40, 52), 'b': (33, 61)}
    for name, (h, w) in sizes.items():
        write_png(tmp_path / 'photos' / f'{name}.jpg', photo(h, w))
        mask = np.zeros((h, w), np.uint8)
        mask[5:15, 10:30] = 255
        cv2.imwrite(str(tmp_path / 'masks' / f'{name}.png'), mask)
    out = tmp_path / 'done'
    script.main([f'--BACKUP_DIR={trained_run}/backup', '--image', str(tmp_path / 'photos'),
                 '--mask', str(tmp_path / 'masks'), '--out', str(out), '--model', 'pretrained'])
    assert sorted(os.listdir(out)) == ['a.png', 'b.png']
    for name, (h, w) in sizes.items():
        assert read_png(out / f'{name}.png').shape == (h, w, 3)
    os.remove(tmp_path / 'masks' / 'b.png')
    with pytest.raises(errors.UserError, match=r'no mask for .*b\.jpg .*expected b\.png'):
        script.main([f'--BACKUP_DIR={trained_run}/backup', '--image', str(tmp_path / 'photos'),
                     '--mask', str(tmp_path / 'masks')])


def test_box_instead_of_a_mask(nets):
    image = photo(45, 38)
    hole = photos.box_mask('5,6,10,12', image.shape)
    assert hole.sum() == 10 * 12 and hole[6:18, 5:15].all()
    result = inference.complete_photo(nets, backup.PRETRAINED, image, hole, blend=True)
    assert result.shape == image.shape
    assert (result[~hole] == image[~hole]).all()


# --- bad input: one line each ---

def test_no_checkpoint_is_one_line_with_the_command(tmp_path, no_shipped):
    with pytest.raises(errors.UserError, match='train first with python train.py'):
        script.main([f'--BACKUP_DIR={tmp_path}/nothing'])


@pytest.fixture
def inputs(tmp_path):
    write_png(tmp_path / 'photo.png', photo(157, 203))
    masks = {'small': np.zeros((10, 10), np.uint8), 'empty': np.zeros((157, 203), np.uint8),
             'full': np.full((157, 203), 255, np.uint8)}
    for name, mask in masks.items():
        cv2.imwrite(str(tmp_path / f'{name}.png'), mask)
    (tmp_path / 'broken.jpg').write_bytes(b'not an image')
    np.save(tmp_path / 'floats.npy', np.zeros((3, 32, 32), np.float32))
    np.save(tmp_path / 'big.npy', np.zeros((3, 64, 64, 3), np.uint8))
    return tmp_path


@pytest.mark.parametrize('args, message', [
    (['--image', '{t}/photo.png', '--mask', '{t}/small.png'],
     'mask .*small.png is 10x10 but image .* is 203x157'),
    (['--image', '{t}/broken.jpg', '--box', '1,1,4,4'], 'broken.jpg is not a readable image'),
    (['--image', '{t}/missing.jpg', '--box', '1,1,4,4'], 'image .*missing.jpg not found'),
    (['--image', '{t}/photo.png', '--mask', '{t}/empty.png'], 'empty.png has no hole'),
    (['--image', '{t}/photo.png', '--mask', '{t}/full.png'], 'full.png covers the whole image'),
    (['--image', '{t}/photo.png', '--box', '190,2,30,10'], 'does not fit the 203x157 image'),
    (['--image', '{t}/photo.png', '--box', '1,2,3'], 'expected four integers'),
    (['--image', '{t}/photo.png'], 'needs a hole: --mask FILE'),
    (['--image', '{t}/photo.png', '--box', '1,1,4,4', '--out', '{t}/x.xyz'], 'use a .png or .jpg'),
    (['--npy', '{t}/floats.npy'], r'holds float32 \(3, 32, 32\); expected uint8 \[N,32,32,3\]'),
    (['--npy', '{t}/big.npy'], 'holds 64x64 images but IMAGE_SIZE=32'),
    (['--npy', '{t}/nope.npy'], 'nope.npy not found'),
    (['--blend'], '--blend: only with --image'),
    (['--IMAGE_SIZE=64'], 'trained with IMAGE_SIZE=32 but the config says IMAGE_SIZE=64; drop --IMAGE_SIZE=64'),
])
def test_bad_input_is_one_clear_error(trained_run, inputs, args, message):
    args = [a.format(t=inputs) for a in args]
    with pytest.raises(errors.UserError, match=message) as error:
        script.main([f'--BACKUP_DIR={trained_run}/backup', *args])
    assert '\n' not in str(error.value)
