"""Train the completion network and the global + local discriminators.

Phase 1 (PRETRAIN_EPOCH epochs): completion network with the masked mse; saves backup/pretrained.
Phase 2 (D_EPOCH epochs): discriminators only.
Phase 3: both, until the validation faces' realism stops improving (glcic/stopping.py: STOP_LOSS,
STOP_EPOCHS; the most realistic epoch saved as backup/best) or MAX_EPOCH epochs in all.

    python train.py                  # starts, or resumes from backup/ exactly where it stopped
    python train.py --fresh          # start over; the old backup/ files are moved aside
    python train.py --continue --MAX_EPOCH=60   # go on in phase 3 after the stop rule ended it
    python train.py --BATCH_SIZE=8   # any key of config.py
"""
import argparse
import csv
import dataclasses
import json
import os
import signal
import sys
import time

from glcic import cli
import config
import cv2
import numpy as np
import tensorflow as tf
from tqdm import tqdm

import layer
from glcic import atomic, backup, data, errors, graphs, plots, realism, replicas, stopping

tf1 = tf.compat.v1
DONE = 4  # phase value of a run that met its stop rule
PENDING_ROW = 'epoch-row.json'  # in BACKUP_DIR: the newest epoch's loss row, written before its save
LOSS_FIELDS = ['epoch', 'phase', 'step', 'seconds', 'mse', 'd_loss', 'g_adv', 'val_realism', 'val_hole_psnr']


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


class LossLog:
    """output/loss.csv and loss.png once an epoch; TensorBoard scalars every LOG_EVERY steps
    and each epoch's sample grid. Only the worker that writes the files keeps one."""

    def __init__(self, epoch):
        self.csv = os.path.join(config.OUTPUT_DIR, 'loss.csv')
        self.png = os.path.join(config.OUTPUT_DIR, 'loss.png')
        # Rows past the restored epoch belong to work that was not saved.
        self.rows = [r for r in plots.read_rows(self.csv) if int(r['epoch']) <= epoch]
        self.pending = os.path.join(config.BACKUP_DIR, PENDING_ROW)
        row = self._saved_row(epoch)
        if row:  # its save landed, but the run stopped (killed, OUTPUT_DIR full) before the row
            self.rows.append(row)
        backup.write_owner()  # these files are this run's (train.claim_outputs checked it)
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


class Diverged(errors.UserError):
    pass


def diverged(what):
    """The error for a NaN/Inf: nothing of it was saved, so the newest save is still good."""
    last = tf1.train.latest_checkpoint(config.BACKUP_DIR)
    kept = f'{last} stays the last good save' if last else 'nothing was saved'
    return Diverged(f'{what}; stopped without saving, so {kept}: lower LEARNING_RATE '
                    f'(now {config.LEARNING_RATE:g}) and rerun')


def recalibration_feeds(model, images):
    """Fixed training batches with holes for re-estimating batch-norm statistics."""
    rng = data.stream('recalibrate')
    for _ in range(config.BN_RECALIBRATE_BATCHES):
        index = rng.choice(len(images), config.BATCH_SIZE, replace=False)
        masks, _ = data.sample_holes(rng, config.BATCH_SIZE)
        yield model.feed(data.batch(images, index), masks)


@dataclasses.dataclass
class Run:
    """What every epoch of one training run works with."""
    sess: tf1.Session
    model: graphs.Training
    images: np.ndarray  # the training split, uint8 [N,S,S,3] (memory-mapped)
    interrupt: Interrupt
    log: LossLog  # None on a worker that does not write the files
    save: callable  # save() writes backup/latest and returns its path
    parallel: replicas.Replicas = dataclasses.field(default_factory=replicas.Replicas)


def train_step(sess, model, phase, feeds):
    """One update from the micro-batches `feeds` (ACCUM_STEPS of them); returns its losses,
    each the mean over the micro-batches."""
    if len(feeds) == 1:
        _, losses = sess.run([model.train_ops[phase], model.losses[phase]], feeds[0])
        return losses
    losses = {}
    for accumulate, fetch, apply in model.stages[phase]:
        values = [sess.run([accumulate, fetch], feed)[1] for feed in feeds]
        sess.run(apply)
        losses.update({name: float(np.mean([v[name] for v in values])) for name in fetch})
    sess.run(model.count_step, {model.step_losses: [losses.get(n, 0.0) for n in graphs.LOSS_NAMES]})
    return losses


def run_epoch(run, phase, epoch, first_step):
    """Train one epoch (from batch `first_step` on); returns the mean of each loss over every
    step of the epoch, those before a resume included."""
    sess, model, images = run.sess, run.model, run.images
    size = config.BATCH_SIZE * config.ACCUM_STEPS  # images per update
    steps = len(images) // size
    order = data.stream('shuffle', epoch).permutation(len(images))
    window, in_window, last_save = {}, 0, time.time()
    bar = tqdm(range(first_step, steps), initial=first_step, total=steps, unit='step',
               desc=f'phase {phase} epoch {epoch + 1}', dynamic_ncols=True)
    tick = time.time()
    for i in bar:
        rng = data.stream('step', epoch, i)  # same batch after a resume
        batch = data.batch(images, order[i * size:(i + 1) * size], rng if config.FLIP else None)
        masks, corners = data.sample_holes(rng, size)
        real_corners = data.sample_holes(rng, size)[1] if config.REAL_OWN_HOLES else None
        micro = [slice(j, j + config.BATCH_SIZE) for j in range(0, size, config.BATCH_SIZE)]
        losses = train_step(sess, model, phase, [
            model.feed(batch[m], masks[m], corners[m], None if real_corners is None else real_corners[m])
            for m in micro])
        for name, value in losses.items():
            if not np.isfinite(value):
                raise diverged(f'{name} became {value} at epoch {epoch + 1} batch {i + 1} (phase {phase})')
            window[name] = window.get(name, 0.0) + float(value)
        in_window += 1  # a resumed epoch's first window is shorter than LOG_EVERY
        if (i + 1) % config.LOG_EVERY == 0 or i + 1 == steps:
            means = {k: v / in_window for k, v in window.items()}
            speed = in_window * size / (time.time() - tick)
            bar.set_postfix({**{k: f'{v:.3g}' for k, v in means.items()}, 'img/s': f'{speed:.1f}'})
            if run.log:
                run.log.scalars(model.state(sess)[3], {**means, 'images_per_second': speed})
            window, in_window, tick = {}, 0, time.time()
        due = i + 1 < steps and time.time() - last_save > config.SAVE_MINUTES * 60  # the epoch end saves anyway
        interrupted = bool(run.interrupt.signal)
        stop, due = run.parallel.agree(sess, interrupted, due, i)
        if stop:
            if not interrupted:
                run.interrupt.from_other_worker()
            break
        if due:
            run.save()
            last_save = time.time()
    bar.close()
    return model.epoch_means(sess, phase)


def train(sess, model, saver, finite, train_images, test_images, interrupt, parallel, validation=None):
    """The three phases; returns the exit status. `finite`: op, True if no variable holds NaN/Inf;
    `parallel`: the replicas.Replicas the graph was built for; `validation`: a stopping.Validation
    for the stop rule (None: phase 3 runs to MAX_EPOCH)."""
    phase, epoch, _, _ = model.state(sess)
    log = LossLog(epoch) if parallel.chief else None
    count = min(config.SAMPLE_COUNT, len(test_images))
    samples = np.asarray(test_images[:count])
    sample_masks, _ = data.sample_holes(data.stream('samples'), count)

    newest = {}  # this run's newest latest-<step> save: its (phase, step) and path

    def save(name=backup.LATEST, recalibrated=False):
        """Save as `name`; returns its path. At the phase and step of the newest save nothing
        has changed: that save is kept (`latest`) or linked to (`pretrained`)."""
        now_phase, now_epoch, _, step = model.state(sess)
        if newest.get('state') == (now_phase, step):
            if name == backup.LATEST or not parallel.chief:
                return newest['path']
            return backup.alias(newest['path'], name)
        if config.BN_RECALIBRATE_BATCHES and not recalibrated:
            model.recalibrate(sess, recalibration_feeds(model, train_images))
        if not sess.run(finite):  # a step can blow up the weights before any loss shows it
            raise diverged(f'the weights became NaN or Inf by step {step} (phase {now_phase}, '
                           f'epoch {now_epoch + 1})')
        if parallel.chief:
            path = backup.save(sess, saver, name, step if name == backup.LATEST else None)
        else:
            path = 'by worker 0'
        if name == backup.LATEST:  # on every worker: they skip the same saves (recalibration is collective)
            newest.update(state=(now_phase, step), path=path)
        return path

    def set_phase(value):
        sess.run(model.set_phase, {model.phase_value: value})

    run = Run(sess, model, train_images, interrupt, log, save, parallel)

    def validate():
        """The validation faces' (realism, hole PSNR) with freshly recalibrated batch norm."""
        if config.BN_RECALIBRATE_BATCHES:
            model.recalibrate(sess, recalibration_feeds(model, train_images))
        return validation.scores(lambda images, masks: np.asarray(model.complete(sess, images, masks)))

    while True:
        phase, epoch, epoch_step, step = model.state(sess)
        if phase == 1 and epoch >= config.PRETRAIN_EPOCH:
            print(f'phase 1 done after {epoch} epochs: saved {save(backup.PRETRAINED)}')
            set_phase(2)
            continue
        if phase == 2 and epoch >= config.PRETRAIN_EPOCH + config.D_EPOCH:
            if validation:  # phase 1's network: what phase 3 has to improve on
                sess.run(model.set_val_baseline, {model.val_value: validate()})
            set_phase(3)
            continue
        if phase == DONE:
            print(f'this run already met its stop rule (epoch {epoch}): python train.py --continue '
                  f'--MAX_EPOCH={epoch + 10} --STOP_LOSS=0 goes on in phase 3 from its final save (without '
                  f'--STOP_LOSS=0 the rule may end it again), --fresh starts a new run')
            return 0
        if epoch >= config.MAX_EPOCH:
            print(f'stopped: reached MAX_EPOCH={config.MAX_EPOCH}; saved {save()}')
            return 0
        start = time.time()
        means = run_epoch(run, phase, epoch, epoch_step)
        if interrupt.signal:
            print(f'saved {save()}; run python train.py to resume')
            return interrupt.exit_status()
        scored = phase == 3 and validation is not None
        if scored:
            started = time.time()
            means['val_realism'], means['val_hole_psnr'] = validate()
            sess.run(model.record_val, {model.val_value: [means['val_realism'], means['val_hole_psnr']]})
            validation_seconds = time.time() - started
        sess.run(model.next_epoch)
        stop, best = None, False
        if scored:
            realism_history, psnr_history, (_, baseline_psnr) = model.val_history(sess)
            stop = None if config.STOP_LOSS == 0 else stopping.stop_rule(realism_history, psnr_history, baseline_psnr, config.STOP_EPOCHS,
                                      config.STOP_LOSS)
            best = stopping.best_epoch(realism_history, psnr_history, baseline_psnr) == len(realism_history) - 1
        finished = stop is not None
        if finished:
            set_phase(DONE)
        # The row waits in BACKUP_DIR and reaches loss.csv only after the save: a crash or a full
        # disk before the save drops it, one after keeps it (LossLog adds it on resume).
        if log:
            log.stage({'epoch': epoch + 1, 'phase': phase, 'step': model.state(sess)[3],
                       'seconds': round(time.time() - start, 1), **means})
        path = save(recalibrated=scored)
        if best and parallel.chief:
            backup.alias(path, backup.BEST)
        if log:
            log.epoch()
            completed = np.asarray(model.complete(sess, samples, sample_masks))
            grid = os.path.join(config.OUTPUT_DIR, f'epoch_{epoch + 1:04d}.png')
            plots.save_grid(grid, [plots.show_holes(samples, sample_masks), completed, samples],
                            ['input', f'completion (epoch {epoch + 1})', 'ground truth'])
            log.image(model.state(sess)[3], 'samples', grid)
        print(f'epoch {epoch + 1} phase {phase}: ' + ' '.join(f'{k} {v:.5g}' for k, v in means.items())
              + f' ({time.time() - start:.0f} s' + (f', validation {validation_seconds:.0f} s' if scored else '')
              + f') saved {path}' + (f', the most realistic yet: also {backup.BEST}' if best else ''))
        if finished:
            print(f'stopped: {stop}; the most realistic epoch is {config.BACKUP_DIR}/{backup.BEST}: '
                  f'python test.py --model {backup.BEST}')
            return 0


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
    if plots.read_rows(os.path.join(config.OUTPUT_DIR, 'loss.csv')):
        owner = backup.read_owner()
        if owner != os.path.realpath(config.BACKUP_DIR):
            own = os.path.join(os.path.dirname(os.path.normpath(config.BACKUP_DIR)), 'output')
            if os.path.realpath(own) == os.path.realpath(config.OUTPUT_DIR):
                own = os.path.normpath(config.BACKUP_DIR) + '-output'
            raise errors.UserError(f'{config.OUTPUT_DIR}/loss.csv holds the losses of '
                                   f'{f"the run in {owner}" if owner else "another run"}, not of this one '
                                   f'({config.BACKUP_DIR}); nothing was changed: give this run its own '
                                   f'--OUTPUT_DIR={own}')


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


def output_failed(error):
    """The error for OUTPUT_DIR full or unwritable. The saves go to BACKUP_DIR first (backup.save
    says if that fails), so the newest one holds everything trained."""
    last = tf1.train.latest_checkpoint(config.BACKUP_DIR)
    kept = f'{last} holds all the training so far' if last else 'nothing was trained yet'
    return errors.UserError(f'could not write in {config.OUTPUT_DIR}/ ({error.strerror or error}); {kept}: '
                            f'free disk space or fix permissions, then python train.py resumes')


def go_on(sess, model):
    """--continue: a run that met its stop rule goes on in phase 3 from its final save, to MAX_EPOCH."""
    phase, epoch, _, _ = model.state(sess)
    if phase != DONE:
        print('note: --continue: this run has not met its stop rule; it goes on as without --continue')
        return
    if epoch >= config.MAX_EPOCH:
        raise errors.UserError(f'--continue: the run has trained {epoch} epochs, MAX_EPOCH={config.MAX_EPOCH}; '
                               f'raise it, e.g. python train.py --continue '
                               f'--MAX_EPOCH={epoch + 10}')
    sess.run(model.set_phase, {model.phase_value: 3})
    print(f'continuing phase 3 after the stop rule ended it: epochs {epoch + 1} to {config.MAX_EPOCH}')


def lost_worker(error):
    """The error for a worker that died or stopped answering: nothing after the last save is kept."""
    last = tf1.train.latest_checkpoint(config.BACKUP_DIR)
    kept = f'{last} stays the last save' if last else 'nothing was saved yet'
    return errors.UserError(f'another worker stopped or stopped answering ({type(error).__name__}: '
                            f'{errors.tf_reason(error)}); {kept}: start every worker again with the same '
                            'command to resume')


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0], epilog=config.help_text(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--fresh', action='store_true', help='start over (old files are moved aside)')
    parser.add_argument('--resume', metavar='CHECKPOINT', help='resume from this checkpoint prefix')
    parser.add_argument('--continue', dest='go_on', action='store_true',
                        help='go on in phase 3 after the stop rule ended the run, to MAX_EPOCH')
    args = parser.parse_args(config.parse_overrides(argv))
    if args.fresh and (args.resume or args.go_on):
        raise errors.UserError(f'--fresh and {"--resume" if args.resume else "--continue"} exclude each other')
    parallel = replicas.Replicas()
    parallel.check(config.BATCH_SIZE, config.ACCUM_STEPS)
    train_images = data.load_images(data.npy_path('train'))
    test_images = data.load_images(data.npy_path('test'))
    validation = load_validation()
    per_step = config.BATCH_SIZE * config.ACCUM_STEPS
    if len(train_images) < per_step:
        raise errors.UserError(f'{data.npy_path("train")} holds {len(train_images)} images, fewer than one '
                               f'step\'s BATCH_SIZE * ACCUM_STEPS = {per_step}; lower them or prepare more images')
    lock = take_over_files(args) if parallel.chief else None  # noqa: F841  held until the process ends
    saved = backup.read_run_config()
    if saved and (args.resume or backup.find(training=True)):
        backup.check_compatible(saved, 'pass --{key}={saved!r} to resume, or --fresh to start a new run')
        changed = backup.changed_settings(saved)
        if changed:  # allowed (e.g. a smaller batch after running out of memory), but say so
            print(f'note: resuming with other settings than the saved run: {", ".join(changed)}')

    interrupt = Interrupt()
    tf1.set_random_seed(config.SEED)
    with parallel.scope():
        model = graphs.Training()
        parallel.build_agreement()
    saver = tf1.train.Saver(max_to_keep=config.KEEP_CHECKPOINTS + 1, save_relative_paths=True)
    backup.adopt(saver)
    finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(v)) for v in tf1.global_variables()
                            if v.dtype.base_dtype.is_floating])
    sess = parallel.session()
    scaling = ' with dynamic loss scaling' if config.PRECISION == 'float16' else ''
    print(f'device: {replicas.device_name()}; dilated convolutions {layer.dilation_path(config.PRECISION)}; {parallel.describe()}; '
          f'{config.PRECISION}{scaling}')
    if config.PRECISION == 'float16' and not tf.config.list_physical_devices('GPU'):
        print('note: float16 has no fast CPU kernels (a step is 10x slower or more, BENCHMARKS.md): '
              'on a CPU train with --PRECISION=float32')
    try:
        # Several workers: the initializer waits for all of them (worker 0 sends the initial
        # weights), so the others look for a checkpoint only after worker 0 has moved any aside.
        parallel.start(sess, [tf1.global_variables_initializer(), tf1.local_variables_initializer()],
                       lambda: interrupt.signal)
        checkpoint = args.resume or backup.find(training=True)
        if checkpoint:
            backup.restore(sess, saver, checkpoint, optional=graphs.ADDED_STATE, training=True)
            phase, epoch, epoch_step, step = model.state(sess)
            print(f'resumed {checkpoint}: phase {phase}, epoch {epoch + 1}, batch {epoch_step}, step {step}')
            if args.resume and parallel.chief:
                keep_newer(saver, checkpoint, epoch, step)
            if args.go_on:
                go_on(sess, model)
        elif args.go_on:
            raise errors.UserError(f'--continue: {config.BACKUP_DIR}/ holds no save to go on from')
        else:
            sess.run(model.set_mean_pixel, {model.mean_pixel_value: data.mean_pixel(train_images)})
        parallel.agree(sess, False, False, model.state(sess)[3])
        if parallel.chief:
            backup.write_run_config()
        sess.graph.finalize()  # the loop must not grow the graph
        batches = f' ({config.ACCUM_STEPS} batches of {config.BATCH_SIZE})' if config.ACCUM_STEPS > 1 else ''
        print(f'{len(train_images)} training images, {len(train_images) // per_step} steps of '
              f'{per_step}{batches} per epoch; phases: 1 until epoch {config.PRETRAIN_EPOCH}, 2 until '
              f'{config.PRETRAIN_EPOCH + config.D_EPOCH}, 3 until '
              + (f'its realism stops improving (by STOP_LOSS={config.STOP_LOSS:g} over STOP_EPOCHS='
                 f'{config.STOP_EPOCHS} epochs, on {len(validation.images)} validation faces) or ' if validation else '')
              + f'epoch {config.MAX_EPOCH}')
        status = train(sess, model, saver, finite, train_images, test_images, interrupt, parallel, validation)
        if parallel.workers > 1:
            print(f'weights digest {replicas.digest(sess, model.g_vars + model.d_vars)} (the same on every worker)')
        return status
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


if __name__ == '__main__':
    cli.run(main)
