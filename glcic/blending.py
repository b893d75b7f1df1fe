"""The paper's post-processing: Poisson blending of a completion into the known pixels around it.

Plain functions on uint8 RGB arrays [N,H,W,3] and masks [N,H,W,1] (1 or True in the hole), used
by test.py --blend, the browser page and the experiments.
"""
import cv2
import numpy as np

TOLERANCE = 1e-6  # the solve stops when its residual is this share of where it began
BOX_FILL = 0.5  # holes filling this share of their bounding box use its exact solve as a guide


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
    guide = _box_inverse(inside, border) if len(rows) >= BOX_FILL * box_area else lambda r: r

    def apply(x):
        return (degree * x - _neighbour_sum(x)) * hole

    tiny = np.finfo(float).tiny  # keeps a channel that has converged from dividing 0 by 0
    d = np.zeros(g.shape)
    r = b * hole
    z = guide(r)
    p = z.copy()
    rz = (r * z).sum(axis=(0, 1))
    stop = TOLERANCE ** 2 * (r * r).sum(axis=(0, 1))
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
                     for image, done, hole in zip(images, completed, np.asarray(masks)[..., 0] > 0.5)])
