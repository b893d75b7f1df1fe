"""What train.py does besides training, one call each: the command line, the lock and the
leftovers of a crash, --fresh/--resume/--continue, the outputs this run owns (loss.csv, the
sample grids), the saves, Ctrl-C/SIGTERM, the workers' agreement and the errors a run ends in.
"""
import argparse
import csv
import json
import os
import signal
import sys
import time

import cv2
import numpy as np
import tensorflow as tf

import config
import layer
from glcic import atomic, backup, data, errors, graphs, plots, realism, replicas, shipped, stopping

tf1 = tf.compat.v1
PENDING_ROW = 'epoch-row.json'  # in BACKUP_DIR: the newest epoch's loss row, written before its save
LOSS_FIELDS = ['epoch', 'phase', 'step', 'seconds', 'mse', 'd_loss', 'g_adv', 'val_realism', 'val_hole_psnr']


# --- before the graph: the command line, the data, BACKUP_DIR and OUTPUT_DIR ---

def arguments(argv, doc):
    """train.py's command line: --fresh, --resume, --continue and config.py's --KEY=value."""
    parser = argparse.ArgumentParser(description=doc.split('\n')[0], epilog=config.help_text(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--fresh', action='store_true', help='start over (old files are moved aside)')
    parser.add_argument('--resume', metavar='CHECKPOINT', help='resume from this checkpoint prefix')
    parser.add_argument('--continue', dest='go_on', action='store_true',
                        help='go on in phase 3 after the stop rule ended the run, to MAX_EPOCH')
    parser.add_argument('--init', metavar='WEIGHTS', help='start a new run from a completion network saved as '
                        'experiments/ship_model.py writes it (its epoch and phase too; the optimizers and '
                        'discriminators start afresh)')
    args = parser.parse_args(config.parse_overrides(argv))
    if args.fresh and (args.resume or args.go_on):
        raise errors.UserError(f'--fresh and {"--resume" if args.resume else "--continue"} exclude each other')
    return args


def load_splits(parallel):
    """(training images, test images, stopping.Validation or None), checked against one step's size."""
    parallel.check(config.BATCH_SIZE, config.ACCUM_STEPS)
    train_images = data.load_images(data.npy_path('train'))
    test_images = data.load_images(data.npy_path('test'))
    validation = load_validation()
    per_step = config.BATCH_SIZE * config.ACCUM_STEPS
    if len(train_images) < per_step:
        raise errors.UserError(f'{data.npy_path("train")} holds {len(train_images)} images, fewer than one '
                               f'step\'s BATCH_SIZE * ACCUM_STEPS = {per_step}; lower them or prepare more images')
    return train_images, test_images, validation


def load_validation():
    """stopping.Validation of NPY_DIR/x_val.npy, or None (said in one line): phase 3 then runs to MAX_EPOCH."""
    path = data.npy_path('val')
    count = len(np.load(path, mmap_mode='r')) if os.path.exists(path) else 0
    if count < realism.MIN_IMAGES:
        print(f'note: no stop rule: {path} holds {count} faces, it needs {realism.MIN_IMAGES} (to_npy.py holds '
              f'out VAL_IMAGES={config.VAL_IMAGES} where the training share has 10x as many); phase 3 runs '
              f'to MAX_EPOCH={config.MAX_EPOCH}')
        return None
    return stopping.Validation(data.load_images(path))


def take_over(args, parallel):
    """The lock (returned: hold it until the process ends; None on the other workers), a crash's
    leftovers, --fresh, OUTPUT_DIR's ownership, and the saved run's settings against these."""
    lock = take_over_files(args) if parallel.chief else None
    checkpoint = args.resume or backup.find(training=True)
    # The settings saved beside the checkpoint to restore, which --resume may take from another folder.
    folder = (os.path.dirname(args.resume) or '.') if args.resume else config.BACKUP_DIR
    saved = backup.read_run_config(folder) if checkpoint else None
    if saved:
        backup.check_compatible(saved, 'pass --{key}={saved!r} to resume it, or --fresh to start a new run', folder)
        changed = backup.changed_settings(saved)
        if changed:  # allowed (e.g. a smaller batch after running out of memory), but say so
            print(f'note: resuming with other settings than the saved run: {", ".join(changed)}')
    return lock


def take_over_files(args):
    """The writing worker's part before training: the lock, leftovers of a crash, --fresh, and
    OUTPUT_DIR's files, which must be this run's."""
    backup.make_folder('OUTPUT_DIR')
    lock = backup.lock()  # held until the process ends
    partial = backup.remove_partial(keep=args.resume)
    if partial:
        print(f'removed {len(partial)} file(s) of saves that a crash cut short or left unlisted')
    if args.fresh:
        moved = backup.move_aside()
        if moved:
            print(f'moved the previous run to {moved}/')
        outputs = backup.move_outputs_aside(moved)
        if outputs:
            print(f'moved its loss.csv, loss.png, logs/ and sample grids to {outputs}/')
    claim_outputs()
    return lock


def claim_outputs():
    """Refuse an OUTPUT_DIR whose loss.csv holds another run's rows: LossLog would cut them to
    this run's epoch."""
    if not plots.read_rows(os.path.join(config.OUTPUT_DIR, 'loss.csv')) or backup.owns_outputs():
        return
    owner = backup.read_owner()
    whose = ('another run' if not owner else f'the run in {owner}' if owner != os.path.realpath(config.BACKUP_DIR)
             else f'an earlier run in {owner} (its run id is not this one\'s)')
    own = os.path.join(os.path.dirname(os.path.normpath(config.BACKUP_DIR)), 'output')
    if os.path.realpath(own) == os.path.realpath(config.OUTPUT_DIR):
        own = os.path.normpath(config.BACKUP_DIR) + '-output'
    raise errors.UserError(f'{config.OUTPUT_DIR}/loss.csv holds the losses of {whose}, not of this one '
                           f'({config.BACKUP_DIR}); nothing was changed: give this run its own --OUTPUT_DIR={own}')


def describe_device(parallel):
    """The first line: device, dilation path, replicas and precision."""
    scaling = ' with dynamic loss scaling' if config.PRECISION == 'float16' else ''
    print(f'device: {replicas.device_name()}; dilated convolutions {layer.dilation_path(config.PRECISION)}; '
          f'{parallel.describe()}; {config.PRECISION}{scaling}')
    if config.PRECISION == 'float16' and not tf.config.list_physical_devices('GPU'):
        print('note: float16 has no fast CPU kernels (a step is 10x slower or more, BENCHMARKS.md): '
              'on a CPU train with --PRECISION=float32')


# --- the session's start: initial weights or a save to go on from ---

def start(sess, model, save, args, parallel, interrupt, images):
    """Initialise (several workers wait for each other here), then restore the save to go on from
    (--resume, --continue) or set the mean pixel of `images`; writes backup/config.json."""
    # Several workers: the initializer waits for all of them (worker 0 sends the initial
    # weights), so the others look for a checkpoint only after worker 0 has moved any aside.
    parallel.start(sess, [tf1.global_variables_initializer(), tf1.local_variables_initializer()],
                   lambda: interrupt.signal)
    checkpoint = args.resume or backup.find(training=True)
    if checkpoint and args.init:
        raise errors.UserError(f'--init starts a new run, but {config.BACKUP_DIR}/ holds {checkpoint}: add --fresh '
                               f'(which moves it aside) or leave out --init to resume it')
    if checkpoint:
        backup.restore(sess, save.saver, checkpoint, optional=graphs.ADDED_STATE, training=True)
        phase, epoch, epoch_step, step = model.state(sess)
        print(f'resumed {checkpoint}: phase {phase}, epoch {epoch + 1}, batch {epoch_step}, step {step}')
        if args.resume and parallel.chief:
            keep_newer(save.saver, checkpoint, epoch, step)
        if args.go_on:
            go_on(sess, model)
    elif args.go_on:
        raise errors.UserError(f'--continue: {config.BACKUP_DIR}/ holds no save to go on from')
    elif args.init:
        shipped.restore_into(sess, tf1.global_variables(), args.init)
        phase, epoch, _, step = model.state(sess)
        print(f'started from {args.init}: phase {phase}, epoch {epoch + 1}, step {step}; optimizers and '
              f'discriminators afresh')
    else:
        sess.run(model.set_mean_pixel, {model.mean_pixel_value: data.mean_pixel(images)})
    parallel.agree(sess, False, False, model.state(sess)[3])
    if parallel.chief:
        backup.write_run_config()


def keep_newer(saver, checkpoint, epoch, step):
    """--resume of a save older than others: set the newer saves, loss rows and grids aside (this
    run would write over them) and say where."""
    previous = backup.move_newer_aside(checkpoint, step)
    if not previous:
        return
    backup.adopt(saver)  # the Saver must not rotate the moved saves away
    outputs = backup.copy_outputs_aside(previous, epoch)
    also = f', a copy of the losses and the later sample grids to {outputs}/' if outputs else ''
    print(f'going back to {checkpoint}: moved the newer saves to {previous}/{also} (python train.py '
          f'--BACKUP_DIR={previous}{f" --OUTPUT_DIR={outputs}" if outputs else ""} goes on with them)')


def go_on(sess, model):
    """--continue: a run that met its stop rule goes on in phase 3 from its final save, to MAX_EPOCH."""
    phase, epoch, _, _ = model.state(sess)
    if phase != graphs.STOPPED:
        print('note: --continue: this run has not met its stop rule; it goes on as without --continue')
        return
    if epoch >= config.MAX_EPOCH:
        raise errors.UserError(f'--continue: the run has trained {epoch} epochs, MAX_EPOCH={config.MAX_EPOCH}; '
                               f'raise it, e.g. python train.py --continue '
                               f'--MAX_EPOCH={epoch + 10}')
    sess.run(model.set_phase, {model.phase_value: 3})
    print(f'continuing phase 3 after the stop rule ended it: epochs {epoch + 1} to {config.MAX_EPOCH}')


def describe_plan(count, validation):
    """The line before the first step: images, steps per epoch, and where each phase ends."""
    per_step = config.BATCH_SIZE * config.ACCUM_STEPS
    batches = f' ({config.ACCUM_STEPS} batches of {config.BATCH_SIZE})' if config.ACCUM_STEPS > 1 else ''
    print(f'{count} training images, {count // per_step} steps of '
          f'{per_step}{batches} per epoch; phases: 1 until epoch {config.PRETRAIN_EPOCH}, 2 until '
          f'{config.PRETRAIN_EPOCH + config.D_EPOCH}, 3 until '
          + (f'its realism stops improving (by STOP_LOSS={config.STOP_LOSS:g} over STOP_EPOCHS='
             f'{config.STOP_EPOCHS} epochs, on {len(validation.images)} validation faces) or ' if validation else '')
          + f'epoch {config.MAX_EPOCH}')


# --- during training: signals, workers, saves, outputs ---

class Interrupt:
    """SIGINT/SIGTERM set a flag the loop reads between steps, so no step or save is cut short."""

    def __init__(self):
        self.signal = None
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._handle)

    def _handle(self, signum, _frame):
        if self.signal is None:
            print('\nstopping: finishing this step, then saving...', flush=True)
        self.signal = signum

    def from_other_worker(self):
        print('\nstopping: another worker was stopped; finishing this step, then saving...', flush=True)
        self.signal = signal.SIGTERM

    def exit_status(self):
        return 130 if self.signal == signal.SIGINT else 0


def between_steps(run, step, save_due):
    """After a step, what every worker does alike: (stop here, saved now). Any worker's Ctrl-C or
    SIGTERM stops all; `save_due` (SAVE_MINUTES passed) on any worker saves on all."""
    interrupted = bool(run.interrupt.signal)
    stop, due = run.parallel.agree(run.sess, interrupted, save_due, step)
    if stop:
        if not interrupted:
            run.interrupt.from_other_worker()
        return True, False
    if due:
        run.save()
    return False, due


def recalibrate(sess, model, images):
    """Re-estimate the generator's batch-norm averages on BN_RECALIBRATE_BATCHES fixed training
    batches with holes (none: the moving averages stay)."""
    if not config.BN_RECALIBRATE_BATCHES:
        return
    rng = data.stream('recalibrate')
    feeds = []
    for _ in range(config.BN_RECALIBRATE_BATCHES):
        index = rng.choice(len(images), config.BATCH_SIZE, replace=False)
        masks, _ = data.sample_holes(rng, config.BATCH_SIZE)
        feeds.append(model.feed(data.batch(images, index), masks))
    model.recalibrate(sess, feeds)


class Diverged(errors.UserError):
    pass


def diverged(what):
    """The error for a NaN/Inf: nothing of it was saved, so the newest save is still good."""
    last = tf1.train.latest_checkpoint(config.BACKUP_DIR)
    kept = f'{last} stays the last good save' if last else 'nothing was saved'
    return Diverged(f'{what}; stopped without saving, so {kept}: lower LEARNING_RATE '
                    f'(now {config.LEARNING_RATE:g}) and rerun')


class Saves:
    """save(name, recalibrated) writes backup/<name> (latest-<step> by default) and returns its path.

    Before a save the batch-norm averages are recalibrated (unless `recalibrated`) and the weights
    checked for NaN/Inf. At the phase and step of this run's newest save nothing has changed: that
    save is kept (`latest`) or linked to (`pretrained`). Only worker 0 writes; every worker runs
    the same saves (recalibration is collective). Built before the session (its Saver and NaN
    check are part of the graph); set `sess` before the first save.
    """

    def __init__(self, model, images, parallel):
        self.sess, self.model, self.images, self.parallel = None, model, images, parallel
        self.saver = tf1.train.Saver(max_to_keep=config.KEEP_CHECKPOINTS + 1, save_relative_paths=True)
        backup.adopt(self.saver)
        self.weights_finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(v)) for v in tf1.global_variables()
                                             if v.dtype.base_dtype.is_floating])
        self.newest = {}  # this run's newest latest-<step> save: its (phase, step) and path

    def __call__(self, name=backup.LATEST, recalibrated=False):
        phase, epoch, _, step = self.model.state(self.sess)
        chief = self.parallel.chief
        if self.newest.get('state') == (phase, step):
            if name == backup.LATEST or not chief:
                return self.newest['path']
            return backup.alias(self.newest['path'], name)
        if not recalibrated:
            recalibrate(self.sess, self.model, self.images)
        if not self.sess.run(self.weights_finite):  # a step can blow up the weights before any loss shows it
            raise diverged(f'the weights became NaN or Inf by step {step} (phase {phase}, epoch {epoch + 1})')
        path = backup.save(self.sess, self.saver, name, step if name == backup.LATEST else None) if chief \
            else 'by worker 0'
        if name == backup.LATEST:
            self.newest.update(state=(phase, step), path=path)
        return path


class LossLog:
    """output/loss.csv and loss.png once an epoch, with the sample grid of the same test images
    and holes each epoch; TensorBoard scalars every LOG_EVERY steps. Only the worker that writes
    the files keeps one."""

    def __init__(self, epoch, test_images=()):
        self.csv = os.path.join(config.OUTPUT_DIR, 'loss.csv')
        self.png = os.path.join(config.OUTPUT_DIR, 'loss.png')
        count = min(config.SAMPLE_COUNT, len(test_images))
        self.samples = np.asarray(test_images[:count])
        self.sample_masks, _ = data.sample_holes(data.stream('samples'), count)
        # Rows past the restored epoch belong to work that was not saved.
        self.rows = [r for r in plots.read_rows(self.csv) if int(r['epoch']) <= epoch]
        self.pending = os.path.join(config.BACKUP_DIR, PENDING_ROW)
        row = self._saved_row(epoch)
        if row:  # its save landed, but the run stopped (killed, OUTPUT_DIR full) before the row
            self.rows.append(row)
        backup.write_owner()  # these files are this run's (claim_outputs checked it)
        self._write()
        if row:
            plots.plot_losses(self.csv, self.png)
        self.writer = tf1.summary.FileWriter(os.path.join(config.OUTPUT_DIR, 'logs'))

    def scalars(self, step, values):
        summary = tf1.Summary(value=[tf1.Summary.Value(tag=k, simple_value=float(v))
                                     for k, v in values.items()])
        self.writer.add_summary(summary, step)

    def image(self, step, tag, path):
        """Show a PNG file in TensorBoard's Images tab: the same bytes, so the same picture."""
        with open(path, 'rb') as f:
            png = f.read()
        height, width, channels = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED).shape
        image = tf1.Summary.Image(height=height, width=width, colorspace=channels,  # 3 RGB, 4 RGBA
                                  encoded_image_string=png)
        self.writer.add_summary(tf1.Summary(value=[tf1.Summary.Value(tag=tag, image=image)]), step)
        self.writer.flush()

    def stage(self, row):
        """Keep an epoch's row beside the checkpoints until epoch() adds it after the save."""
        self.row = {k: row.get(k, '') for k in LOSS_FIELDS}
        self.row = {k: v.item() if isinstance(v, np.generic) else v for k, v in self.row.items()}  # JSON's types
        try:
            atomic.write_json(self.pending, self.row)
        except OSError as error:
            raise errors.UserError(f'could not save to {config.BACKUP_DIR}/ ({error.strerror or error}); the '
                                   f'previous checkpoint is unchanged: free disk space or fix permissions, then rerun')

    def epoch(self):
        """Add the staged row to loss.csv and loss.png: only once its save has landed."""
        self.rows.append(self.row)
        self._write()
        plots.plot_losses(self.csv, self.png)
        self.writer.flush()

    def grid(self, epoch, step, complete):
        """output/epoch_NNNN.png (and TensorBoard's image): the samples, complete(images, masks)'s
        completion of them, and the ground truth."""
        completed = np.asarray(complete(self.samples, self.sample_masks))
        path = os.path.join(config.OUTPUT_DIR, f'epoch_{epoch + 1:04d}.png')
        plots.save_grid(path, [plots.show_holes(self.samples, self.sample_masks), completed, self.samples],
                        ['input', f'completion (epoch {epoch + 1})', 'ground truth'])
        self.image(step, 'samples', path)

    def _saved_row(self, epoch):
        """The staged row of a saved epoch (<= the restored `epoch`) that loss.csv lacks, or None."""
        try:
            with open(self.pending) as f:
                row = json.load(f)
            number = int(row['epoch'])
        except (OSError, ValueError, KeyError, TypeError):
            return None  # none staged, or left damaged by a crash: nothing saved depends on it
        if number > epoch or any(int(r['epoch']) == number for r in self.rows):
            return None
        return {k: row.get(k, '') for k in LOSS_FIELDS}

    def _write(self):
        with atomic.replace(self.csv, newline='') as f:
            writer = csv.DictWriter(f, LOSS_FIELDS)
            writer.writeheader()
            writer.writerows(self.rows)


# --- how a run ends when something outside the training fails ---

def guard(parallel, interrupt, body):
    """body()'s exit status, or the one-line error of what ended it: a signal while the workers
    waited, OUTPUT_DIR full or unwritable, out of memory, a lost worker."""
    try:
        return body()
    except replicas.Stopped as stop:
        interrupt.signal = stop.args[0]
        print(f'stopped by {signal.Signals(interrupt.signal).name} while waiting for the other workers; '
              f'nothing was trained or saved', file=sys.stderr)
        return interrupt.exit_status()
    except OSError as error:
        if error.errno not in atomic.WRITE_ERRORS:
            raise
        raise output_failed(error)
    except tf.errors.ResourceExhaustedError:
        half = max(1, config.BATCH_SIZE // 2)
        raise errors.UserError(f'out of memory at BATCH_SIZE={config.BATCH_SIZE}: run python train.py '
                               f'--BATCH_SIZE={half} --ACCUM_STEPS={config.ACCUM_STEPS * config.BATCH_SIZE // half} '
                               f'(the same images per update; or set them in config.py); '
                               f'training resumes from the last save')
    except (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.AbortedError,
            tf.errors.CancelledError, tf.errors.InternalError) as error:
        if parallel.workers == 1:
            raise
        raise lost_worker(error)


def output_failed(error):
    """The error for OUTPUT_DIR full or unwritable. The saves go to BACKUP_DIR first (backup.save
    says if that fails), so the newest one holds everything trained."""
    last = tf1.train.latest_checkpoint(config.BACKUP_DIR)
    kept = f'{last} holds all the training so far' if last else 'nothing was trained yet'
    return errors.UserError(f'could not write in {config.OUTPUT_DIR}/ ({error.strerror or error}); {kept}: '
                            f'free disk space or fix permissions, then python train.py resumes')


def lost_worker(error):
    """The error for a worker that died or stopped answering: nothing after the last save is kept."""
    last = tf1.train.latest_checkpoint(config.BACKUP_DIR)
    kept = f'{last} stays the last save' if last else 'nothing was saved yet'
    return errors.UserError(f'another worker stopped or stopped answering ({type(error).__name__}: '
                            f'{errors.tf_reason(error)}); {kept}: start every worker again with the same '
                            'command to resume')
