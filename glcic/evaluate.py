"""Image-quality numbers and the classical baselines (Poisson blending: blending.py).

Plain functions on uint8 RGB arrays, so test.py and the experiments share them:
images and truth are [N,H,W,3] uint8, masks are [N,H,W,1] (1 or True in the
hole, as data.sample_holes draws them). Every metric returns one float64 value
per image; average them for a table.
"""
import cv2
import numpy as np

PEAK = 255.0  # largest pixel value: PSNR and SSIM are on the 0-255 scale
PSNR_MAX = 100.0  # dB for an exact match (mse 0, infinite PSNR): means and metrics.json stay numbers
SSIM_WINDOW = 11  # side of SSIM's Gaussian window, px (Wang et al. 2004)
SSIM_SIGMA = 1.5  # its standard deviation, px (Wang et al. 2004)
SSIM_K1, SSIM_K2 = 0.01, 0.03  # stabilising constants (Wang et al. 2004)
TELEA_RADIUS = 3  # px around each hole pixel that cv2.inpaint looks at

SHARPNESS_FLOOR = 1.0  # gray levels: the truth's hole detail never counts as less (flat holes stay finite)
GRAY = (0.299, 0.587, 0.114)  # RGB weights of the gray level (ITU-R BT.601)

# name, column title, which value is best: 'higher', 'lower' or 'near 1'
METRICS = (('hole_l1', 'hole L1', 'lower'),
           ('hole_psnr', 'hole PSNR (dB)', 'higher'),
           ('psnr', 'PSNR (dB)', 'higher'),
           ('ssim', 'SSIM', 'higher'),
           ('sharpness', 'sharpness', 'near 1'),
           ('identity', 'identity distance', 'lower'),  # only with dlib installed (FaceIdentity)
           ('realism', 'realism (C2ST)', 'lower'))  # of the whole set (realism.score), not a mean
FORMATS = {'hole_l1': '{:.2f}', 'hole_psnr': '{:.2f}', 'psnr': '{:.2f}', 'ssim': '{:.4f}',
           'sharpness': '{:.3f}', 'identity': '{:.4f}', 'realism': '{:.3f}'}  # table cells
LEGEND = ('Means over the test images. hole L1: mean absolute difference over the hole pixels, '
          '0-255, lower is better. hole PSNR: PSNR over the hole pixels, dB, higher is better. '
          'PSNR, SSIM: whole image (SSIM with an 11x11 Gaussian window, sigma 1.5, per RGB channel), '
          'higher is better. sharpness: the detail inside the hole (mean absolute gray-level '
          'difference of neighbouring hole pixels) over the ground truth\'s; 1 = as detailed as the '
          'real face, below 1 = blurred, above 1 = noisier; best is nearest 1. identity distance: '
          'Euclidean distance between the dlib face-recognition embeddings of the completion and '
          'of the ground truth (dlib calls < 0.6 the same person), lower is better. realism: the '
          'accuracy of a fixed critic (glcic/realism.py) telling the filled holes of the even images '
          'from the real holes of the odd ones by the patch around them; 0.5 = it cannot tell them '
          'apart (best), 1 = always can; it sees blur, noise, colour casts and seams (docs/results.md). '
          'PSNR and L1 reward a blurred fill; sharpness, identity and realism do not. Best value per '
          'column in bold.')


def _holes(masks):
    """[N,H,W,1] float or bool -> bool [N,H,W]."""
    return np.asarray(masks)[..., 0] > 0.5


def _psnr(mse):
    with np.errstate(divide='ignore'):  # identical images: inf dB, capped at PSNR_MAX
        return np.minimum(10.0 * np.log10(PEAK ** 2 / mse), PSNR_MAX)


def hole_l1(images, truth, masks):
    """Mean absolute difference over the hole's pixels and channels, 0-255 (nan if no hole)."""
    diff = np.abs(np.asarray(images, np.float64) - np.asarray(truth, np.float64)).mean(axis=3)
    holes = _holes(masks)
    with np.errstate(invalid='ignore'):
        return (diff * holes).sum(axis=(1, 2)) / holes.sum(axis=(1, 2))


def hole_psnr(images, truth, masks):
    """PSNR over the hole's pixels only: 10 log10(255^2 / mse of the hole), dB."""
    diff = np.square(np.asarray(images, np.float64) - np.asarray(truth, np.float64)).mean(axis=3)
    holes = _holes(masks)
    with np.errstate(invalid='ignore'):
        return _psnr((diff * holes).sum(axis=(1, 2)) / holes.sum(axis=(1, 2)))


def psnr(images, truth):
    """PSNR of the whole image, dB."""
    diff = np.square(np.asarray(images, np.float64) - np.asarray(truth, np.float64))
    return _psnr(diff.mean(axis=(1, 2, 3)))


def _ssim_channel(x, y):
    """Mean SSIM map of two float64 [H,W] channels over the windows that fit inside the image."""
    def local_mean(a):
        # With reflected borders the blur is exact wherever the window fits; crop the rest away.
        half = SSIM_WINDOW // 2
        blurred = cv2.GaussianBlur(a, (SSIM_WINDOW, SSIM_WINDOW), SSIM_SIGMA,
                                   borderType=cv2.BORDER_REFLECT)
        return blurred[half:-half, half:-half]

    c1, c2 = (SSIM_K1 * PEAK) ** 2, (SSIM_K2 * PEAK) ** 2
    mx, my = local_mean(x), local_mean(y)
    vx = local_mean(x * x) - mx * mx
    vy = local_mean(y * y) - my * my
    cov = local_mean(x * y) - mx * my
    ssim_map = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return ssim_map.mean()


def ssim(images, truth):
    """Structural similarity (Wang et al. 2004) of the whole image, in [-1, 1].

    Gaussian window of side 11 and sigma 1.5 on the 0-255 scale, computed on
    each RGB channel separately and averaged; only windows that lie wholly
    inside the image count (images need sides >= 11).
    """
    images, truth = np.asarray(images, np.float64), np.asarray(truth, np.float64)
    if min(images.shape[1:3]) < SSIM_WINDOW:
        raise ValueError(f'SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW}, got {images.shape}')
    return np.array([np.mean([_ssim_channel(a[..., c], b[..., c]) for c in range(a.shape[2])])
                     for a, b in zip(images, truth)])


def hole_detail(images, masks):
    """Mean absolute gray-level difference of horizontally or vertically neighbouring pixels that
    both lie in the hole, per image (nan if no such pair). The hole's border is left out, so a
    seam with the known pixels does not count as detail."""
    gray = np.asarray(images, np.float64) @ np.asarray(GRAY)
    holes = _holes(masks)
    total, pairs = np.zeros(len(gray)), np.zeros(len(gray))
    for axis in (1, 2):
        diff = np.abs(np.diff(gray, axis=axis))
        inside = np.logical_and(holes[:, 1:] if axis == 1 else holes[:, :, 1:],
                                holes[:, :-1] if axis == 1 else holes[:, :, :-1])
        total += (diff * inside).sum(axis=(1, 2))
        pairs += inside.sum(axis=(1, 2))
    with np.errstate(invalid='ignore', divide='ignore'):
        return total / pairs


def sharpness(images, truth, masks):
    """hole_detail of the completion over the ground truth's (at least SHARPNESS_FLOOR): 1 = as
    detailed as the real face, < 1 blurred, > 1 noisier than it."""
    return hole_detail(images, masks) / np.maximum(hole_detail(truth, masks), SHARPNESS_FLOOR)


class FaceIdentity:
    """Face-recognition distance with dlib's ResNet (128-d embeddings; < 0.6 is the same person).

    The weights ship inside the package face_recognition_models (nothing is downloaded).
    The images are face crops, so the face box is the whole frame; the 5 landmarks are found
    on the ground truth and reused for the completion, so both are aligned the same way.
    """
    INSTALL = 'pip install -r requirements-eval.txt (dlib-bin, face_recognition_models)'

    def __init__(self):
        import dlib
        import face_recognition_models as models
        self._dlib = dlib
        self._landmarks = dlib.shape_predictor(models.pose_predictor_five_point_model_location())
        self._net = dlib.face_recognition_model_v1(models.face_recognition_model_location())

    @classmethod
    def load(cls):
        """A FaceIdentity, or None when dlib or face_recognition_models is not installed."""
        try:
            return cls()
        except ImportError:
            return None

    def reference(self, truth):
        """What distance() compares against: the ground truth's landmarks and embeddings."""
        shapes = []
        for image in np.asarray(truth, np.uint8):
            h, w = image.shape[:2]
            shapes.append(self._landmarks(np.ascontiguousarray(image), self._dlib.rectangle(0, 0, w - 1, h - 1)))
        return shapes, self._embed(truth, shapes)

    def _embed(self, images, shapes):
        return np.array([self._net.compute_face_descriptor(np.ascontiguousarray(image), shape)
                         for image, shape in zip(np.asarray(images, np.uint8), shapes)])

    def distance(self, images, reference):
        """Embedding distance of each image to its ground truth (reference from reference()), [N]."""
        shapes, truth = reference
        return np.linalg.norm(self._embed(images, shapes) - truth, axis=1)


def measure(images, truth, masks, identity=None, reference=None):
    """Every metric of METRICS: {name: float64 [N]}; 'identity' only with a FaceIdentity and
    its reference(truth)."""
    values = {'hole_l1': hole_l1(images, truth, masks), 'hole_psnr': hole_psnr(images, truth, masks),
              'psnr': psnr(images, truth), 'ssim': ssim(images, truth),
              'sharpness': sharpness(images, truth, masks)}
    if identity is not None:
        values['identity'] = identity.distance(images, reference)
    return values


def _best(values, better):
    if better == 'near 1':
        return min(values, key=lambda v: abs(v - 1.0))
    return max(values) if better == 'higher' else min(values)


def table(rows):
    """Markdown table of {method: {metric: mean}} over the METRICS the rows have, the best value
    per column in bold."""
    metrics = [m for m in METRICS if all(m[0] in r for r in rows.values())]
    best = {}
    for key, _, better in metrics:
        values = [float(FORMATS[key].format(r[key])) for r in rows.values()]  # best as shown
        best[key] = FORMATS[key].format(_best(values, better))
    lines = ['| method | ' + ' | '.join(title for _, title, _ in metrics) + ' |',
             '|---|' + '---:|' * len(metrics)]
    for method, values in rows.items():
        cells = []
        for key, _, _ in metrics:
            text = FORMATS[key].format(values[key])
            cells.append(f'**{text}**' if text == best[key] else text)
        lines.append(f'| {method} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def report(what, means, batch_stats_means):
    """The Markdown report of a test run: `what` (one paragraph), the table, the legend, and
    the batch-statistics table if there is one."""
    text = f'# Test-set metrics\n\n{what}\n\n{table(means)}\n\n{LEGEND}\n'
    if batch_stats_means:
        text += ('\nThe same networks normalised with each batch\'s statistics instead of the '
                 'moving averages (large differences mean the averages lag the weights):\n\n'
                 f'{table(batch_stats_means)}\n')
    return text


def hide_holes(images, masks):
    """What a user has: the image with the hole's pixels set to 0 (a copy)."""
    out = np.array(images, np.uint8, copy=True)
    out[_holes(masks)] = 0
    return out


def mean_fill(images, masks, pixel):
    """Baseline: every hole pixel set to one RGB colour (uint8 [3])."""
    out = np.array(images, np.uint8, copy=True)
    out[_holes(masks)] = np.asarray(pixel, np.uint8)
    return out


def _telea_one(image, hole):
    """cv2.inpaint (Telea) of one RGB image; OpenCV gets BGR, as it expects."""
    bgr = np.ascontiguousarray(image[..., ::-1])
    bgr[hole] = 0  # Telea does not read the hole; zeroing it makes sure of that
    filled = cv2.inpaint(bgr, hole.astype(np.uint8) * 255, TELEA_RADIUS, cv2.INPAINT_TELEA)
    return filled[..., ::-1]


def telea(images, masks):
    """Baseline: OpenCV's fast-marching inpainting (Telea 2004) of every hole."""
    return np.stack([_telea_one(image, hole) for image, hole in zip(images, _holes(masks))])
