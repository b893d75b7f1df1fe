"""Image-quality numbers, the classical baselines and Poisson blending.

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
BLEND_TOLERANCE = 1e-6  # the blending solve stops when its residual is this share of where it began
BLEND_BOX_FILL = 0.5  # holes filling this share of their bounding box use its exact solve as a guide

SHARPNESS_FLOOR = 1.0  # gray levels: the truth's hole detail never counts as less (flat holes stay finite)
GRAY = (0.299, 0.587, 0.114)  # RGB weights of the gray level (ITU-R BT.601)

# name, column title, which value is best: 'higher', 'lower' or 'near 1'
METRICS = (('hole_l1', 'hole L1', 'lower'),
           ('hole_psnr', 'hole PSNR (dB)', 'higher'),
           ('psnr', 'PSNR (dB)', 'higher'),
           ('ssim', 'SSIM', 'higher'),
           ('sharpness', 'sharpness', 'near 1'),
           ('identity', 'identity distance', 'lower'))  # only with dlib installed (FaceIdentity)
FORMATS = {'hole_l1': '{:.2f}', 'hole_psnr': '{:.2f}', 'psnr': '{:.2f}', 'ssim': '{:.4f}',
           'sharpness': '{:.3f}', 'identity': '{:.4f}'}  # table cells
LEGEND = ('Means over the test images. hole L1: mean absolute difference over the hole pixels, '
          '0-255, lower is better. hole PSNR: PSNR over the hole pixels, dB, higher is better. '
          'PSNR, SSIM: whole image (SSIM with an 11x11 Gaussian window, sigma 1.5, per RGB channel), '
          'higher is better. sharpness: the detail inside the hole (mean absolute gray-level '
          'difference of neighbouring hole pixels) over the ground truth\'s; 1 = as detailed as the '
          'real face, below 1 = blurred, above 1 = noisier; best is nearest 1. identity distance: '
          'Euclidean distance between the dlib face-recognition embeddings of the completion and '
          'of the ground truth (dlib calls < 0.6 the same person), lower is better. PSNR and L1 '
          'reward a blurred fill; sharpness and identity do not. Best value per column in bold.')


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


def _shifted(a, dy, dx):
    """a[y + dy, x + dx] at every (y, x) of float [H,W,C] a; NaN where that lies outside a."""
    h, w = a.shape[:2]
    out = np.full_like(a, np.nan)
    out[max(-dy, 0):h - max(dy, 0), max(-dx, 0):w - max(dx, 0)] = \
        a[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)]
    return out


def _neighbour_sum(a):
    """Sum of each pixel's 4 neighbours that lie inside float [H,W,C] a."""
    total = np.zeros_like(a)
    total[1:] += a[:-1]
    total[:-1] += a[1:]
    total[:, 1:] += a[:, :-1]
    total[:, :-1] += a[:, 1:]
    return total


def _second_difference(n, open_start, open_end):
    """Eigenvalues [n] and orthonormal eigenvectors (columns of [n,n]) of the 1-D second difference
    on n pixels: 2 on the diagonal and -1 beside it, with 1 at an open end (the image border, no
    neighbour beyond it). They are sines and cosines (DST and DCT bases), so no solver is needed.
    """
    k, j = np.arange(n)[:, None], np.arange(n)[None, :]
    if open_start and open_end:
        theta = np.pi * k / n
        vectors = np.cos(theta * (j + 0.5))
    elif open_start or open_end:
        theta = np.pi * (k + 0.5) / (n + 0.5)
        vectors = np.cos(theta * (j + 0.5))[:, ::-1 if open_end else 1]
    else:
        theta = np.pi * (k + 1) / (n + 1)
        vectors = np.sin(theta * (j + 1))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return 2 - 2 * np.cos(theta[:, 0]), vectors.T


def _box_inverse(inside, border):
    """The exact solve of the blending equations on the hole's bounding box, all of it taken as hole.

    The equations there are the sum of a 1-D second difference along each axis, so the
    eigenvectors of the two small matrices solve them: exactly for a rectangular hole, and as
    the preconditioner of the conjugate gradients for other shapes. border: ((top, bottom),
    (left, right)), True where the box meets the image border (no neighbour beyond it).
    Returns a function float [H,W,3] -> [H,W,3] (zero outside the hole).
    """
    rows, cols = np.nonzero(inside)
    box = np.s_[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    (row_values, row_vectors), (col_values, col_vectors) = [
        _second_difference(n, *ends) for n, ends in
        zip((rows.max() + 1 - rows.min(), cols.max() + 1 - cols.min()), border)]
    values = row_values[:, None] + col_values[None, :]
    values = np.where(values > 1e-9, values, np.inf)  # 0 only for a hole that is the whole image

    def solve(r):
        out = np.zeros_like(r)
        channels = r[box].transpose(2, 0, 1)  # [3,h,w]
        spectrum = row_vectors.T @ channels @ col_vectors / values
        out[box] = (row_vectors @ spectrum @ col_vectors.T).transpose(1, 2, 0)
        return out * inside[..., None]
    return solve


def _solve_hole(image, completed, known, inside, border):
    """Poisson-blend one 4-connected hole of a crop; returns the crop with the hole solved.

    Args: image and completed float [H,W,3]; known bool [H,W] (outside every hole); inside bool
    [H,W] (this hole); border as for _box_inverse. Each hole pixel p, with q its neighbours in
    the image, gets sum_q (f_p - f_q) = sum_q v_pq (Perez et al. 2003, eq. 7), where v_pq is the
    completion's own difference if q is in the hole. If q is known, f_q is the known pixel and
    v_pq the mean of two estimates one pixel on, the known pixels' step f_q - f_(q+1) and the
    completion's g_(p-1) - g_p: the known pixels set the level, the completion's seam is dropped.
    A neighbour past the image border is no neighbour: nothing flows across the border.
    """
    g = np.where(inside[..., None], completed, np.nan)
    f = np.where(known[..., None], image, np.nan)
    degree = np.zeros(g.shape)
    b = np.zeros(g.shape)  # the right-hand side for d = f - g: where the known pixels pull
    for dy, dx in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        degree += ~np.isnan(_shifted(np.zeros(g.shape), dy, dx))
        neighbour = _shifted(f, dy, dx)
        steps = np.stack([neighbour - _shifted(f, 2 * dy, 2 * dx), _shifted(g, -dy, -dx) - g])
        count = (~np.isnan(steps)).sum(axis=0)
        step = np.where(count > 0, np.nansum(steps, axis=0) / np.maximum(count, 1), 0.0)
        b += np.nan_to_num(neighbour + step - g)
    # Preconditioned conjugate gradients on degree * d - (sum of d over hole neighbours) = b,
    # each channel alone. The box's exact solve makes a rectangle one step; a thin hole in a
    # large box (a stroke) converges fast without it, and the box would cost more than it saves.
    hole = inside[..., None]
    rows, cols = np.nonzero(inside)
    box_area = (rows.max() + 1 - rows.min()) * (cols.max() + 1 - cols.min())
    guide = _box_inverse(inside, border) if len(rows) >= BLEND_BOX_FILL * box_area else lambda r: r

    def apply(x):
        return (degree * x - _neighbour_sum(x)) * hole

    tiny = np.finfo(float).tiny  # keeps a channel that has converged from dividing 0 by 0
    d = np.zeros(g.shape)
    r = b * hole
    z = guide(r)
    p = z.copy()
    rz = (r * z).sum(axis=(0, 1))
    stop = BLEND_TOLERANCE ** 2 * (r * r).sum(axis=(0, 1))
    for _ in range(len(rows)):  # CG is exact after as many steps as unknowns
        if ((r * r).sum(axis=(0, 1)) <= stop).all():
            break
        ap = apply(p)
        alpha = rz / np.maximum((p * ap).sum(axis=(0, 1)), tiny)
        d += alpha * p
        r -= alpha * ap
        z = guide(r)
        rz, previous = (r * z).sum(axis=(0, 1)), rz
        p = z + rz / np.maximum(previous, tiny) * p
    return np.where(hole, np.nan_to_num(g) + d, image)


def _blend_one(image, completed, hole):
    """Poisson-blend one completion, each 4-connected hole on its own crop."""
    out = np.array(image, np.float64)
    completed = np.asarray(completed, np.float64)
    height, width = hole.shape
    _, labels, stats, _ = cv2.connectedComponentsWithStats(hole.astype(np.uint8), connectivity=4)
    for k, (x, y, w, h, _) in enumerate(stats[1:], 1):  # row 0 is the background
        # The equations read up to 2 px beyond the hole (a known pixel and the one past it).
        crop = np.s_[max(y - 2, 0):y + h + 2, max(x - 2, 0):x + w + 2]
        border = ((y == 0, y + h == height), (x == 0, x + w == width))
        out[crop] = _solve_hole(out[crop], completed[crop], ~hole[crop], labels[crop] == k, border)
    return np.where(hole[..., None], np.clip(np.round(out), 0, 255), image).astype(np.uint8)


def blend(images, completed, masks):
    """The paper's post-processing: Poisson blending of the network's output into its surroundings.

    Inside each hole the result keeps the completion's gradients (its detail); its colours are
    solved so that they meet the known pixels around the hole without a seam (Perez et al. 2003,
    on the hole's own shape, so L-shaped holes have no corner seams). Where a hole touches the
    image border nothing flows across it, so holes there blend as well as holes inside: a
    perfect completion comes back unchanged up to rounding, wherever the hole is.
    Reads only the pixels outside the holes of `images` (the masked input, never the ground
    truth) and the completion; pixels outside the holes come back unchanged.
    """
    return np.stack([_blend_one(image, done, hole)
                     for image, done, hole in zip(images, completed, _holes(masks))])
