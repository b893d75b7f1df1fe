"""Write the completion network as a TensorFlow SavedModel, for TF2 code and TensorFlow Serving.

    python export.py                        # backup/latest -> output/export/1/
    python export.py --model pretrained     # the checkpoint of the end of phase 1
    python export.py --out models/glcic/2   # TensorFlow Serving serves the highest number
    python export.py --overwrite            # replace the earlier export in --out
    python export.py --bfloat16             # compute in bfloat16 (BENCHMARKS.md: speed, error)

Its signature 'serving_default' takes images uint8 [N,H,W,3] (0-255) and masks uint8
[N,H,W,1] (above 127 = hole, as in test.py's mask files; a mask of only 0s and 1s, as bool
masks become, has its 1s as the hole), N at least 1, H and W divisible by 4, and returns
'completion' uint8 [N,H,W,3] with the known pixels unchanged. An image of only 0s and 1s
(float images in [0,1] cast to uint8) is refused. TensorFlow casts other NumPy dtypes to
uint8 without a range check before the graph sees them: clip to 0-255 first. The weights, the training
set's mean pixel and the batch-norm averages are constants in its graph, so loading it
needs TensorFlow only, not this repository. The architecture comes from
BACKUP_DIR/config.json, as in test.py.
"""
import argparse
import os
import re
import shutil

from glcic import cli
import config
import tensorflow as tf

import network
from glcic import backup, errors, graphs, photos, replicas, shipped

tf1 = tf.compat.v1
SIGNATURE = 'serving_default'  # the name TensorFlow Serving and tf.saved_model.load callers look up
# What a SavedModel folder holds (paths under it): --overwrite replaces nothing else.
EXPORT_FILES = r'saved_model\.pb|fingerprint\.pb|assets|variables(/variables\.(index|data-\d+-of-\d+))?'


def check_out(out, overwrite):
    """Refuse to replace anything but an earlier export, and that only with --overwrite."""
    if not os.path.lexists(out):
        return
    if not overwrite:
        parent, name = os.path.split(os.path.normpath(out))
        other = os.path.join(parent, str(int(name) + 1)) if name.isdigit() else f'{out}-2'
        raise errors.UserError(f'{out} exists; pass --overwrite to replace it, or write a new version '
                            f'with --out {other}')
    if not os.path.isfile(os.path.join(out, 'saved_model.pb')):
        raise errors.UserError(f'{out} is not an earlier export (no saved_model.pb in it); not replacing '
                            f'it: choose another --out')
    other = other_files(out)
    if other:
        raise errors.UserError(f'{out}/ holds {", ".join(other[:3])}{" ..." if other[3:] else ""}, which '
                               f'export.py did not write, and --overwrite replaces the whole folder: '
                               f'move them out, or choose another --out')


def other_files(folder):
    """Paths under folder that are not part of a SavedModel, sorted."""
    found = []
    for root, subdirs, files in os.walk(folder):
        for name in subdirs + files:
            path = os.path.relpath(os.path.join(root, name), folder).replace(os.sep, '/')
            if not re.fullmatch(EXPORT_FILES, path):
                found.append(path)
    return sorted(found)


def frozen_network(checkpoint, bfloat16):
    """graphs.Inference() with the checkpoint's values as constants.

    Returns: (GraphDef, names of its images and masks placeholders, name of its uint8
    output, (phase, epoch, epoch_step, step) of the checkpoint).
    """
    with tf.Graph().as_default():
        model = graphs.Inference(bfloat16=bfloat16)
        saver = tf1.train.Saver(model.variables)
        with replicas.make_session() as sess:
            if checkpoint == shipped.path():
                shipped.restore(sess, model.variables, checkpoint)
            else:
                backup.restore(sess, saver, checkpoint)
            state = model.state(sess)
            frozen = tf1.graph_util.convert_variables_to_constants(
                sess, sess.graph.as_graph_def(), [model.output.op.name])
    return frozen, (model.images.name, model.masks.name), model.output.name, state


def serving_graph(frozen, input_names, output_name):
    """uint8 images and masks, checked, into the frozen network: (graph, inputs, outputs)."""
    graph = tf.Graph()
    with graph.as_default():
        images = tf1.placeholder(tf.uint8, [None, None, None, 3], 'images')
        masks = tf1.placeholder(tf.uint8, [None, None, None, 1], 'masks')
        shape = tf.shape(images)
        step = network.SIZE_STEP
        # Checked here, since the network would fail later with a message about its layers.
        checks = [tf.debugging.assert_positive(shape[0], message='images: the batch is empty; pass at '
                                               'least one image'),
                  tf.debugging.assert_equal(shape[1:3] % step, 0, message=f'images: height and width '
                                            f'must be divisible by {step}; pad them'),
                  tf.debugging.assert_equal(tf.shape(masks)[:3], shape[:3], message='masks: need '
                                            '[N,H,W,1] with the N, H and W of images'),
                  # What float images in [0,1] become once cast to uint8: nothing to complete from.
                  tf.debugging.assert_greater(tf.reduce_min(tf.reduce_max(images, axis=[1, 2, 3])),
                                              tf.constant(1, tf.uint8),
                                              message='images: an image holds only 0s and 1s, as float '
                                              'images in [0,1] do once cast to uint8; pass uint8 0-255 '
                                              '(multiply floats by 255)')]
        with tf.control_dependencies(checks):
            # Bool masks arrive as 0/1: a mask whose largest value is 1 has its 1s as the hole.
            binary = tf.equal(tf.reduce_max(masks, axis=[1, 2, 3], keepdims=True), 1)
            holes = tf.cast(tf.where(binary, tf.equal(masks, 1), masks > photos.HOLE_ABOVE), tf.float32)
            checked = tf.identity(images)
        completion, = tf.import_graph_def(frozen, {input_names[0]: checked, input_names[1]: holes},
                                          [output_name], name='glcic')
    return graph, {'images': images, 'masks': masks}, {'completion': completion}


def _fsync_tree(folder):
    """Flush every file to disk, so a power cut after the rename cannot leave empty files."""
    for root, _, files in os.walk(folder):
        for name in files:
            with open(os.path.join(root, name), 'rb') as f:
                os.fsync(f.fileno())


def write(graph, inputs, outputs, out):
    """Write the SavedModel under a temporary name next to `out`, then rename it into place.

    A symlink `out` stays: the folder it points to is the one replaced.
    """
    target = os.path.realpath(out)
    parent, name = os.path.split(target)
    tmp = os.path.join(parent, f'.{name}.partial-{os.getpid()}')
    old = os.path.join(parent, f'.{name}.replaced-{os.getpid()}')
    try:
        os.makedirs(parent, exist_ok=True)
        for leftover in (tmp, old):  # of an earlier process that had this pid and was killed
            shutil.rmtree(leftover, ignore_errors=True)
        os.mkdir(tmp)
    except OSError as error:
        raise errors.UserError(f'cannot write to {parent}/ ({error.strerror}); choose another --out')
    try:
        builder = tf1.saved_model.Builder(tmp)
        signature = tf1.saved_model.predict_signature_def(inputs, outputs)
        with tf1.Session(graph=graph) as sess:
            builder.add_meta_graph_and_variables(sess, [tf1.saved_model.SERVING],
                                                 signature_def_map={SIGNATURE: signature},
                                                 strip_default_attrs=True)
        builder.save()
        _fsync_tree(tmp)
        replacing = os.path.lexists(target)  # an earlier export and --overwrite, as check_out made sure
        if replacing:
            os.replace(target, old)
        try:
            os.replace(tmp, target)
        except OSError:
            if replacing:
                os.replace(old, target)
            raise
    except (OSError, tf.errors.OpError) as error:
        raise errors.UserError(f'could not write {out} ({str(error).splitlines()[0]}); nothing was changed')
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone already after a successful rename
    shutil.rmtree(old, ignore_errors=True)


def folder_bytes(folder):
    return sum(os.path.getsize(os.path.join(root, name))
               for root, _, files in os.walk(folder) for name in files)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split('\n\n', 1)[1])
    parser.add_argument('--model', choices=[backup.PRETRAINED, backup.LATEST, shipped.NAME],
                        help='checkpoint to export (default: latest, else pretrained, else the shipped '
                             'face model in models/faces128/)')
    parser.add_argument('--out', help='folder to create (default OUTPUT_DIR/export/1)')
    parser.add_argument('--overwrite', action='store_true', help='replace an earlier export in --out')
    parser.add_argument('--bfloat16', action='store_true',
                        help='compute in bfloat16: faster on CPUs with AVX512_BF16 or AMX, a few levels off')
    return parser.parse_args(argv)


def main(argv):
    args = parse_args(backup.apply_run_config(argv))
    out = args.out or os.path.join(config.OUTPUT_DIR, 'export', '1')
    found = backup.trained(args.model)
    checkpoint = next(found[n] for n in (backup.LATEST, backup.PRETRAINED, shipped.NAME) if n in found)
    check_out(out, args.overwrite)
    frozen, input_names, output_name, (phase, epoch, _, step) = frozen_network(checkpoint, args.bfloat16)
    write(*serving_graph(frozen, input_names, output_name), out)
    print(f'wrote {out} ({folder_bytes(out) / 2**20:.1f} MiB): the completion network of {checkpoint} '
          f'(epoch {epoch}, phase {phase}, step {step}), {"bfloat16" if args.bfloat16 else "float32"}, '
          f'MASK_CHANNEL={config.MASK_CHANNEL}')
    print(f"use: tf.saved_model.load('{out}').signatures['{SIGNATURE}'](images=..., masks=...)['completion']")
    return 0


if __name__ == '__main__':
    cli.run(main)
