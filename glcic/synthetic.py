"""Synthetic face-like images for the demo and the tests: no downloads needed.

Each face is drawn procedurally from its own seed: background, hair, head,
two eyes with brows mirrored about the face's axis, nose and mouth, with
varied skin tones and a sideways light. The mirror symmetry is what real
faces have, so a hole over one eye can be completed from the other.
"""
import numpy as np
import cv2

SKIN = np.array([[255, 224, 196], [241, 194, 160], [224, 172, 130], [198, 134, 96],
                 [141, 85, 56], [96, 60, 40]], np.float64)  # RGB, light to dark
HAIR = np.array([[20, 16, 14], [70, 45, 30], [130, 90, 50], [200, 170, 110],
                 [150, 60, 30], [120, 120, 120]], np.float64)
IRIS = np.array([[60, 40, 25], [50, 90, 140], [70, 110, 70], [110, 80, 50]], np.float64)


def _color(rng, palette, jitter=12.0):
    return np.clip(palette[rng.randint(len(palette))] + rng.randn(3) * jitter, 0, 255)


def face(size, seed):
    """One synthetic face, uint8 [size,size,3] RGB, fully determined by `seed`."""
    rng = np.random.RandomState(seed)
    s = 4 * size  # draw at 4x and shrink with INTER_AREA for smooth edges
    top, bottom = rng.uniform(40, 230, 3), rng.uniform(40, 230, 3)
    ramp = np.linspace(0.0, 1.0, s)[:, None, None]
    img = np.ascontiguousarray(np.broadcast_to(top * (1 - ramp) + bottom * ramp, (s, s, 3)))

    def ellipse(center, axes, color, angle=0.0, start=0, end=360, thickness=-1):
        c = tuple(int(round(v)) for v in center)
        a = tuple(max(1, int(round(v))) for v in axes)
        cv2.ellipse(img, c, a, angle, start, end, tuple(float(v) for v in color), thickness, cv2.LINE_AA)

    cx = s * (0.5 + rng.uniform(-0.04, 0.04))
    cy = s * (0.54 + rng.uniform(-0.03, 0.03))
    hw, hh = s * rng.uniform(0.26, 0.32), s * rng.uniform(0.34, 0.40)
    skin, hair = _color(rng, SKIN), _color(rng, HAIR)
    ellipse((cx, cy - hh * rng.uniform(0.15, 0.3)), (hw * 1.15, hh * 0.95), hair)  # hair behind
    ellipse((cx - hw, cy), (hw * 0.12, hh * 0.16), skin * 0.92)  # ears
    ellipse((cx + hw, cy), (hw * 0.12, hh * 0.16), skin * 0.92)
    ellipse((cx, cy), (hw, hh), skin)  # head
    ellipse((cx, cy - hh * 0.75), (hw * 0.95, hh * 0.35), hair, start=180, end=360)  # fringe

    eye_y, eye_dx = cy - hh * rng.uniform(0.08, 0.16), hw * rng.uniform(0.38, 0.48)
    eye_w, eye_h = hw * rng.uniform(0.17, 0.22), hh * rng.uniform(0.06, 0.085)
    iris, brow_lift = _color(rng, IRIS, 8.0), hh * rng.uniform(0.13, 0.2)
    for side in (-1, 1):  # the same eye and brow, mirrored
        ex = cx + side * eye_dx
        ellipse((ex, eye_y), (eye_w, eye_h), (245, 245, 240))
        ellipse((ex, eye_y), (eye_h * 0.95, eye_h * 0.95), iris)
        ellipse((ex, eye_y), (eye_h * 0.45, eye_h * 0.45), (15, 12, 10))
        ellipse((ex, eye_y - brow_lift), (eye_w * 1.1, eye_h * 0.9), hair * 0.8,
                start=200, end=340, thickness=max(2, int(s * 0.012)))
    nose_y = cy + hh * rng.uniform(0.12, 0.2)
    cv2.line(img, (int(cx), int(eye_y + eye_h * 2)), (int(cx), int(nose_y)),
             tuple(float(v) for v in skin * 0.8), max(2, int(s * 0.008)), cv2.LINE_AA)
    ellipse((cx, nose_y), (hw * 0.14, hh * 0.04), skin * 0.75, start=0, end=180,
            thickness=max(2, int(s * 0.008)))
    lips = np.clip(skin * np.array([0.85, 0.55, 0.55]) + 10, 0, 255)
    mouth_y = cy + hh * rng.uniform(0.42, 0.52)
    ellipse((cx, mouth_y), (hw * rng.uniform(0.28, 0.4), hh * rng.uniform(0.04, 0.08)), lips)

    light = rng.uniform(-0.25, 0.25)  # sideways light: one cheek brighter
    img *= (1.0 + light * np.linspace(-1.0, 1.0, s))[None, :, None]
    small = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
    small += rng.randn(size, size, 3) * 2.0
    return np.clip(np.rint(small), 0, 255).astype(np.uint8)


def faces(count, size, seed=0):
    """`count` synthetic faces, uint8 [count,size,size,3]; face i depends only on (seed, i)."""
    return np.stack([face(size, [seed, i]) for i in range(count)]) if count else \
        np.zeros((0, size, size, 3), np.uint8)
