"""Time the completion network on batches of N random 128x128 faces (median of 5 runs after 2).

    python experiments/one_face.py 1 2 4 8 16
    TF_ENABLE_ONEDNN_OPTS=1 ONEDNN_MAX_CPU_ISA=AVX2 python experiments/one_face.py 1 2 4 8

BENCHMARKS.md uses it to show how oneDNN's AVX2 kernels handle a batch of one.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from glcic import cli  # noqa: E402,F401  (quiets TensorFlow's C++ logs before anything imports it)
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from glcic import graphs, replicas  # noqa: E402


def main(counts):
    with tf.Graph().as_default():
        model = graphs.Inference()
        sess = replicas.make_session()
        sess.run(tf.compat.v1.global_variables_initializer())
    rng = np.random.RandomState(0)
    print(replicas.device_name())
    for n in counts:
        masks = np.zeros((n, 128, 128, 1), np.float32)
        masks[:, 40:80, 40:80] = 1
        feed = {model.images: rng.randint(0, 256, (n, 128, 128, 3)).astype(np.uint8), model.masks: masks}
        for _ in range(2):
            sess.run(model.output, feed)
        times = []
        for _ in range(5):
            start = time.perf_counter()
            sess.run(model.output, feed)
            times.append(time.perf_counter() - start)
        ms = 1000 * float(np.median(times))
        print(f'{n} face(s): {ms:.0f} ms, {ms / n:.0f} ms per face')


if __name__ == '__main__':
    main([int(n) for n in sys.argv[1:]] or [1, 16])
