"""The realism numbers PSNR cannot see: sharpness (detail in the hole) and face identity."""
import numpy as np
import pytest

from glcic import evaluate


def _hole(size=32, box=(8, 24)):
    masks = np.zeros((1, size, size, 1), np.float32)
    masks[0, box[0]:box[1], box[0]:box[1]] = 1
    return masks


def test_hole_detail_by_hand():
    # Gray 0/10 stripes along x inside a 3x3 hole: 6 horizontal pairs differ by 10, 6 vertical by 0.
    image = np.zeros((1, 8, 8, 3), np.uint8)
    image[0, :, 1::2] = 10
    masks = np.zeros((1, 8, 8, 1), np.float32)
    masks[0, 2:5, 2:5] = 1
    assert evaluate.hole_detail(image, masks)[0] == pytest.approx(60 / 12)


def test_sharpness_is_one_for_the_truth_below_for_blur_zero_for_flat_above_for_noise():
    rng = np.random.RandomState(0)
    truth = np.clip(128 + rng.randn(1, 32, 32, 3) * 30, 0, 255).astype(np.uint8)
    masks = _hole()
    blurred = truth.copy()
    blurred[0, 8:24, 8:24] = (truth[0, 7:23, 8:24].astype(int) + truth[0, 9:25, 8:24]) // 2
    noisy = np.clip(truth.astype(int) + rng.randint(-60, 61, truth.shape), 0, 255).astype(np.uint8)
    flat = truth.copy()
    flat[0, 8:24, 8:24] = 250  # far from its surroundings: the seam must not count as detail
    assert evaluate.sharpness(truth, truth, masks)[0] == pytest.approx(1.0)
    assert 0.3 < evaluate.sharpness(blurred, truth, masks)[0] < 0.9
    assert evaluate.sharpness(flat, truth, masks)[0] == 0.0
    assert evaluate.sharpness(noisy, truth, masks)[0] > 1.3


def test_sharpness_of_a_flat_truth_stays_finite():
    truth = np.full((1, 32, 32, 3), 90, np.uint8)
    textured = truth.copy()
    textured[0, 8:24, 8:24:2] = 100  # 10 gray levels on every other column
    value = evaluate.sharpness(textured, truth, _hole())[0]
    assert np.isfinite(value) and value > 1


def test_table_bolds_the_sharpness_nearest_one_and_leaves_out_missing_columns():
    rows = {'flat': {'hole_l1': 9, 'hole_psnr': 20, 'psnr': 30, 'ssim': 0.9, 'sharpness': 0.0},
            'network': {'hole_l1': 8, 'hole_psnr': 21, 'psnr': 31, 'ssim': 0.95, 'sharpness': 0.8},
            'noise': {'hole_l1': 12, 'hole_psnr': 18, 'psnr': 28, 'ssim': 0.8, 'sharpness': 1.5}}
    text = evaluate.table(rows)
    assert 'identity' not in text
    assert '| network | **8.00** | **21.00** | **31.00** | **0.9500** | **0.800** |' in text
    assert '| noise | 12.00 | 18.00 | 28.00 | 0.8000 | 1.500 |' in text


@pytest.fixture(scope='module')
def identity():
    found = evaluate.FaceIdentity.load()
    if found is None:
        pytest.skip(f'dlib not installed ({evaluate.FaceIdentity.INSTALL})')
    return found


@pytest.fixture(scope='module')
def faces():
    """The astronaut (a public-domain NASA photo from scikit-image), face crop at 128x128."""
    data = pytest.importorskip('skimage.data')
    import cv2
    face = cv2.resize(data.astronaut()[20:220, 130:330], (128, 128), interpolation=cv2.INTER_AREA)
    return face[None]


def test_identity_is_zero_for_the_truth_and_grows_with_what_the_hole_loses(identity, faces):
    masks = np.zeros((1, 128, 128, 1), np.float32)
    masks[0, 40:90, 30:100] = 1  # eyes and nose
    reference = identity.reference(faces)
    rng = np.random.RandomState(0)
    slightly = np.clip(faces.astype(int) + rng.randint(-4, 5, faces.shape), 0, 255).astype(np.uint8)
    mean_fill = evaluate.mean_fill(faces, masks, faces[0].reshape(-1, 3).mean(axis=0))
    same = identity.distance(faces, reference)[0]
    near = identity.distance(slightly, reference)[0]
    far = identity.distance(mean_fill, reference)[0]
    assert same == pytest.approx(0.0, abs=1e-6)
    assert near < 0.1 < far


def test_measure_adds_identity_only_when_given(identity, faces):
    masks = _hole(128, (40, 80))
    assert 'identity' not in evaluate.measure(faces, faces, masks)
    values = evaluate.measure(faces, faces, masks, identity, identity.reference(faces))
    assert values['identity'].shape == (1,)
