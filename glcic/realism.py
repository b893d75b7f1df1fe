"""Realism of filled holes: a classifier two-sample test (C2ST; Lopez-Paz and Oquab, ICLR 2017).

A fixed critic, independent of the GAN's discriminators, tries to tell the filled holes of one half
of the faces from the real holes of the other half, from a few hundred hand-made features of the
patch around each hole: gradient histograms (HOG: blur, noise, structure) and the hole against its
surrounding ring (colour casts, detail, seams). Its cross-validated accuracy is the score:
0.5 means it cannot tell the fills from real faces (best), 1.0 that it always can.

Fixed protocol, so that models compare alike: the halves are the even and odd images, the folds
and the regularisation never change, and the features see only the patch. Plain numpy and OpenCV.
"""
import cv2
import numpy as np

PATCH = 64  # side the patch around each hole is resized to, px
RING = 6  # width of the band of known pixels around the hole the hole is compared with, px
FOLDS = 5  # cross-validation folds
L2 = 0.1  # ridge penalty of the critic on standardised features, per sample
NEWTON_STEPS = 25  # iterations of the critic's fit (converged well before on every set tried)
SEED = 0  # the folds' shuffle
# SD of real-against-real scores over 20 halvings of 1,000 held-out UTKFace faces at 128x128
# (experiments/results/realism/utk128-check.json); the binomial SD would be 0.016.
REAL_SD_AT_1000 = 0.019
MIN_IMAGES = 20  # fewer test images give no realism score (too few per fold)
_HOG = cv2.HOGDescriptor((PATCH, PATCH), (32, 32), (16, 16), (16, 16), 9)  # 3x3 blocks of 2x2 cells: 324 values


def _box(hole, side):
    """(top, left, size) of the square of `side` px centred on the hole's bounding box, inside the image."""
    rows, cols = np.nonzero(hole)
    height, width = hole.shape
    size = min(max(side, np.ptp(rows) + 1 + 2 * RING, np.ptp(cols) + 1 + 2 * RING), height, width)
    top = int(np.clip((rows.min() + rows.max() + 1 - size) // 2, 0, height - size))
    left = int(np.clip((cols.min() + cols.max() + 1 - size) // 2, 0, width - size))
    return top, left, size


def _log_ratio(a, b):
    return np.log((a + 1.0) / (b + 1.0))


def features(images, masks, side=None):
    """The critic's view of each hole: float32 [N, 337] from uint8 images [N,H,W,3] and masks
    [N,H,W,1] (one hole each). `side`: least side of the patch cut around the hole, px; by
    default half the image's, so the patch frames the same share of a face at every size."""
    images = np.asarray(images, np.uint8)
    side = side or images.shape[1] // 2
    out = []
    for image, hole in zip(images, np.asarray(masks)[..., 0] > 0.5):
        if not hole.any():
            raise ValueError('realism.features: an image has no hole')
        top, left, size = _box(hole, side)
        patch = image[top:top + size, left:left + size]
        inside = hole[top:top + size, left:left + size].astype(np.uint8)
        if size != PATCH:
            patch = cv2.resize(patch, (PATCH, PATCH), interpolation=cv2.INTER_AREA)
            inside = cv2.resize(inside, (PATCH, PATCH), interpolation=cv2.INTER_NEAREST)
        kernel = np.ones((2 * RING + 1, 2 * RING + 1), np.uint8)
        ring = cv2.dilate(inside, kernel).astype(bool) & ~inside.astype(bool)
        edge = cv2.dilate(inside, np.ones((5, 5), np.uint8)).astype(bool) & ~cv2.erode(
            inside, np.ones((5, 5), np.uint8)).astype(bool)  # 2 px either side of the hole's border
        inside = inside.astype(bool)
        if not ring.any():  # a hole that fills the whole patch: compare with the patch itself
            ring = np.ones_like(inside)
        gray = cv2.cvtColor(patch, cv2.COLOR_RGB2GRAY)
        lab = cv2.cvtColor(patch, cv2.COLOR_RGB2LAB).astype(np.float32)
        g = gray.astype(np.float32)
        detail = np.abs(cv2.Laplacian(g, cv2.CV_32F))
        noise = np.abs(g - cv2.GaussianBlur(g, (0, 0), 1.0))
        gradient = np.hypot(cv2.Sobel(g, cv2.CV_32F, 1, 0), cv2.Sobel(g, cv2.CV_32F, 0, 1))
        body = inside & ~edge
        if not body.any():
            body = inside
        statistics = np.concatenate([
            lab[inside].mean(0) - lab[ring].mean(0),                       # colour cast, 3
            _log_ratio(lab[inside].std(0), lab[ring].std(0)),              # flatness per channel, 3
            [_log_ratio(detail[inside].mean(), detail[ring].mean()),       # blur
             _log_ratio(noise[inside].mean(), noise[ring].mean()),         # noise
             _log_ratio(gradient[edge].mean(), gradient[ring | body].mean()),  # seam
             _log_ratio(detail[inside].std(), detail[ring].std())],
            lab[inside].mean(0) / 255.0])                                  # absolute colour, 3
        out.append(np.concatenate([_HOG.compute(gray).ravel(), statistics]).astype(np.float32))
    return np.stack(out)


def _fit(x, y):
    """L2-regularised logistic regression by Newton's method: weights [D+1] (last: bias)."""
    x = np.hstack([x, np.ones((len(x), 1))])
    w = np.zeros(x.shape[1])
    penalty = L2 * np.eye(x.shape[1])
    penalty[-1, -1] = 0.0  # the bias is free
    for _ in range(NEWTON_STEPS):
        p = 1.0 / (1.0 + np.exp(-np.clip(x @ w, -30, 30)))
        gradient = x.T @ (p - y) / len(x) + penalty @ w
        hessian = (x.T * (p * (1 - p))) @ x / len(x) + penalty
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if np.abs(step).max() < 1e-6:
            break
    return w


def accuracy(filled, real):
    """The critic's cross-validated accuracy at telling `filled` from `real` feature rows
    (features() of different faces). 0.5: indistinguishable."""
    x = np.concatenate([filled, real]).astype(np.float64)
    y = np.concatenate([np.ones(len(filled)), np.zeros(len(real))])
    order = np.random.RandomState(SEED).permutation(len(x))
    correct = 0
    for fold in np.array_split(order, FOLDS):
        train = np.setdiff1d(order, fold)
        mean, std = x[train].mean(0), x[train].std(0) + 1e-6
        w = _fit((x[train] - mean) / std, y[train])
        logits = np.hstack([(x[fold] - mean) / std, np.ones((len(fold), 1))]) @ w
        correct += int(((logits > 0) == (y[fold] > 0.5)).sum())
    return correct / len(x)


def interval(count):
    """Half-width of the 95 % interval of a score near chance with `count` test images: 1.96 times
    the spread of real-against-real scores measured at 1,000, scaled by 1/sqrt(count)."""
    return 1.96 * REAL_SD_AT_1000 * np.sqrt(1000 / count)


def score(filled_features, real_features):
    """The realism of one method on a test set: the even images' fills against the odd images'
    real holes. Both arguments are features() of the same N images in the same order."""
    return accuracy(filled_features[0::2], real_features[1::2])
