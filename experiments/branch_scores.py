"""Two checkpoints of one model on the same held-out faces: which completes them better, with a
paired interval (the shipped model's CelebA question: a branch trained on UTKFace and CelebA
against the run's own steps on UTKFace alone, experiments/README.md).

    python experiments/branch_scores.py --run A=RUN/backup/latest-S --run B=BRANCH/backup/latest-S \
        --faces utk=RUN/npy/x_test.npy --faces celeba=HELDOUT/npy/x_test.npy \
        --out experiments/results/faces128/celeba-question.json

Each set gets test.py's holes (data.test_holes); the scores are hole PSNR (per face, for the
paired bootstrap of B - A), hole L1 and the realism number (glcic/realism.py), and OpenCV
Telea's once. The architecture comes from the first checkpoint's config.json.
"""
import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from glcic import cli  # noqa: E402  (quiets TensorFlow's C++ logs before anything imports it)
import config  # noqa: E402
from glcic import atomic, data, errors, evaluate, realism  # noqa: E402
import numpy as np  # noqa: E402

import stop_run  # noqa: E402  (its scores and paired bootstrap)

EVAL_BATCH = 32


def pairs(values, what):
    """['A=path', ...] -> {'A': 'path', ...}"""
    out = {}
    for value in values:
        name, sep, path = value.partition('=')
        if not sep or not name or not path:
            raise errors.UserError(f'{what} {value!r}: write NAME=PATH')
        out[name] = path
    return out


def measure(runs, faces):
    import tensorflow as tf
    from glcic import backup, graphs, replicas
    first = next(iter(runs.values()))
    backup.apply_run_config([f'--BACKUP_DIR={os.path.dirname(first)}', f'--BATCH_SIZE={EVAL_BATCH}'])
    with tf.Graph().as_default():
        model = graphs.Inference()
        saver = tf.compat.v1.train.Saver(model.variables)
        sess = replicas.make_session()
    result = {'checkpoints': runs, 'faces': {}}
    with sess:
        for set_name, path in faces.items():
            truth = np.asarray(data.load_images(path))
            masks, _ = data.test_holes(len(truth))
            masked = evaluate.hide_holes(truth, masks)
            real = realism.features(truth, masks)
            telea = stop_run.scores(evaluate.telea(masked, masks), truth, masks, real)
            entry = {'path': path, 'count': len(truth), 'OpenCV Telea': telea}
            for name, checkpoint in runs.items():
                backup.restore(sess, saver, checkpoint)
                entry[name] = stop_run.scores(model.complete(sess, masked, masks), truth, masks, real)
            result['faces'][set_name] = entry
    return result


def summary(result):
    names = list(result['checkpoints'])
    lines = ['| faces | ' + ' | '.join(f'{n} hole PSNR | {n} realism' for n in names + ['OpenCV Telea'])
             + ' | ' + ' | '.join(f'{n} - {names[0]} (95 %)' for n in names[1:]) + ' |',
             '|---' * (1 + 2 * (len(names) + 1) + len(names) - 1) + '|']
    for set_name, entry in result['faces'].items():
        cells = [f'{entry[n]["hole_psnr"]:.2f} | {entry[n]["realism"]:.3f}' for n in names + ['OpenCV Telea']]
        for n in names[1:]:
            diff, (low, high) = stop_run.paired_psnr(entry[names[0]]['per_image']['hole_psnr'],
                                               entry[n]['per_image']['hole_psnr'])
            entry[f'{n} - {names[0]}'] = {'hole_psnr': diff, 'interval': [low, high]}
            cells.append(f'{diff:+.2f} dB ({low:+.2f} to {high:+.2f})')
        lines.append(f'| {set_name} ({entry["count"]}) | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--run', action='append', required=True, metavar='NAME=CHECKPOINT')
    parser.add_argument('--faces', action='append', required=True, metavar='NAME=X_TEST_NPY')
    parser.add_argument('--out', required=True, help='a .json; the table goes beside it as .md')
    args = parser.parse_args(config.parse_overrides(argv))
    runs, faces = pairs(args.run, '--run'), pairs(args.faces, '--faces')
    from glcic import backup
    for path in runs.values():
        backup.require(path)  # a typo fails before minutes of scoring
    result = measure(runs, faces)
    table = summary(result)
    atomic.write_json(args.out, result)
    atomic.write_text(os.path.splitext(args.out)[0] + '.md', table)
    print(table + f'wrote {args.out}')
    return 0


if __name__ == '__main__':
    cli.run(main)
