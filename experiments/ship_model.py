"""Write a training checkpoint's completion network as the shipped model (glcic/shipped.py).

    python experiments/ship_model.py CHECKPOINT --backup-dir DIR [--out models/faces128] --description "..."

CHECKPOINT: a save of train.py (e.g. $RUNS/faces128/backup/latest-9000); DIR: its BACKUP_DIR, whose
config.json gives the architecture. Only the inference graph's variables are kept, as float16.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from glcic import cli  # noqa: E402,F401  (quiets TensorFlow's C++ logs before anything imports it)
import tensorflow as tf  # noqa: E402

import config  # noqa: E402
from glcic import backup, graphs, replicas, shipped  # noqa: E402

tf1 = tf.compat.v1


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('checkpoint')
    parser.add_argument('--backup-dir', required=True)
    parser.add_argument('--out', default=shipped.FOLDER)
    parser.add_argument('--description', required=True, help='one line: what the model is')
    args = parser.parse_args(argv)
    with open(os.path.join(args.backup_dir, 'config.json')) as f:
        trained_with = json.load(f)
    config.set_values({key: trained_with[key] for key in config.ARCHITECTURE_KEYS})
    with tf.Graph().as_default():
        model = graphs.Inference()
        with replicas.make_session() as sess:
            backup.restore(sess, tf1.train.Saver(model.variables), args.checkpoint)
            phase, epoch, _, step = model.state(sess)
            settings = {key: trained_with[key] for key in ('BATCH_SIZE', 'LEARNING_RATE', 'PRECISION', 'ALPHA',
                                                           'PRETRAIN_EPOCH', 'D_EPOCH', 'HOLE_MIN', 'HOLE_MAX',
                                                           'SEED') if key in trained_with}
            worst = shipped.save(sess, model.variables, args.out, args.description,
                                 {'phase': phase, 'epoch': epoch, 'step': step, 'trained_with': settings})
    size = os.path.getsize(os.path.join(args.out, shipped.WEIGHTS))
    print(f'wrote {args.out}/{shipped.WEIGHTS} ({size / 2**20:.1f} MiB; phase {phase}, epoch {epoch}, '
          f'step {step}); float16 changed a value by at most {worst:.2e} of its tensor\'s largest')
    return 0


if __name__ == '__main__':
    sys.exit(main())
