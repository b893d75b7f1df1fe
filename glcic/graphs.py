"""The graphs the scripts run, built from network.py's networks and losses.

create_model() is the paper's Algorithm 1 as a graph: the completion network, the discriminators,
the losses and each phase's update. Training() is train.py's graph: create_model on each replica's
share of the fed batch, with the batch norms' moving averages, the step count and the epoch's loss
sums around it; one train op per phase, one session.run per step. Inference() is the completion
network as test.py, export.py and the page use it: feed `images` (uint8) and `masks`, fetch
`output` or call complete(). A Saver over `variables` restores either from any checkpoint
train.py wrote.
"""
import collections

import numpy as np
import tensorflow as tf

import config
import layer
import network

tf1 = tf.compat.v1
LOSS_NAMES = ('mse', 'd_loss', 'g_adv')  # the losses train.py logs, in the order of state/loss_sums
# Newer than some checkpoints: a resume that lacks them starts them from their initial values.
ADDED_STATE = ('state/loss_sums', 'state/g_loss_scale', 'state/g_good_steps', 'state/d_loss_scale',
               'state/d_good_steps', 'state/val_scores', 'state/val_count', 'state/val_baseline')
STOPPED = 4  # state/phase once the stop rule has ended phase 3 (train.py --continue goes on)
VAL_HISTORY = 64  # the latest phase-3 epochs whose validation scores the stop rule sees (glcic/stopping.py)
DTYPES = {'float32': tf.float32, 'float16': tf.float16, 'bfloat16': tf.bfloat16}  # config.PRECISION
# float16's dynamic loss scale: its start, and the finite steps after which it doubles.
LOSS_SCALE_START, LOSS_SCALE_GROWTH_STEPS = 2.0 ** 15, 2000


def to_float(images):
    """data.to_float inside the graph: uint8 [0, 255] -> float32 [-1, 1]."""
    return tf.cast(images, tf.float32) / 127.5 - 1.0


def to_uint8(images):
    """data.to_uint8 inside the graph (round half to even, like np.rint): [-1, 1] -> uint8."""
    return tf.cast(tf.clip_by_value(tf.round((images + 1.0) * 127.5), 0.0, 255.0), tf.uint8)


def _counter(name, dtype):
    return tf1.get_variable(name, [], dtype, trainable=False, initializer=tf1.zeros_initializer())


class Inference:
    """The completion network with the moving-average batch norm, at any size divisible by 4,
    and the state every checkpoint holds (mean pixel, step, epoch, phase)."""

    def __init__(self, batch_stats=False, bfloat16=False):
        """batch_stats: also build `output_batch_stats` (each batch normalised with its own
        statistics). bfloat16: complete in bfloat16 (faster on CPUs with bfloat16 instructions,
        BENCHMARKS.md); the variables stay float32."""
        self.images = tf1.placeholder(tf.uint8, [None, None, None, 3], 'images')
        self.masks = tf1.placeholder(tf.float32, [None, None, None, 1], 'masks')
        with tf1.variable_scope('state'):
            self.mean_pixel = tf1.get_variable('mean_pixel', [3], trainable=False,
                                               initializer=tf1.zeros_initializer())
            self.step = _counter('step', tf.int64)
            self.epoch = _counter('epoch', tf.int64)
            self.epoch_step = _counter('epoch_step', tf.int64)
            self.phase = tf1.get_variable('phase', [], tf.int32, trainable=False,
                                          initializer=tf1.constant_initializer(1))
        self.x = to_float(self.images)
        dtype = tf.bfloat16 if bfloat16 else tf.float32
        net_input = tf.cast(network.generator_input(self.x, self.masks, self.mean_pixel), dtype)
        raw = tf.cast(network.generator(net_input, training=False), tf.float32)
        self.completion = network.keep_known(raw, self.x, self.masks)
        self.output = to_uint8(self.completion)
        self.output_batch_stats = None
        if batch_stats:
            raw = network.generator(network.generator_input(self.x, self.masks, self.mean_pixel), training=True)
            self.output_batch_stats = to_uint8(network.keep_known(raw, self.x, self.masks))
        self.variables = tf1.global_variables()

    def feed(self, images, masks):
        return {self.images: images, self.masks: masks}

    def state(self, sess):
        """(phase, epoch, epoch_step, step) as Python ints."""
        return tuple(int(v) for v in sess.run([self.phase, self.epoch, self.epoch_step, self.step]))

    def complete(self, sess, images, masks, batch_stats=False):
        """Fill the holes of uint8 images [N,H,W,3] with masks [N,H,W,1]; returns uint8.

        batch_stats: normalise with each batch's statistics instead of the moving averages.
        """
        fetch = self.output_batch_stats if batch_stats else self.output
        if fetch is None:
            raise ValueError('batch_stats=True needs Training() or Inference(batch_stats=True)')
        out = np.empty(images.shape, np.uint8)
        for i in range(0, len(images), config.BATCH_SIZE):
            part = slice(i, i + config.BATCH_SIZE)
            out[part] = sess.run(fetch, self.feed(images[part], masks[part]))
        return out


Phase = collections.namedtuple('Phase', 'losses train')
Phase.__doc__ = 'One phase of Algorithm 1: its `losses` {name: scalar} and `train`, the op of one update.'
Model = collections.namedtuple('Model', 'fake real_logits fake_logits mse d_loss g_adv g_loss phases '
                                        'batch_norm optimizers')
Model.__doc__ = """create_model's record: the completions, D's logits on the real images and on the
completions, the losses, `phases` {1, 2, 3: Phase}, and per network ('g', 'd') its batch norms'
(moving average, batch value) pairs and its Optimizer."""


def create_model(x, masks, corners, real_corners, mean_pixel):
    """Algorithm 1's graph on one batch: the completion network C, the discriminators D, their
    losses, and for each phase its losses and its update.

    Args: x [B,S,S,3] in [-1, 1]; masks [B,S,S,1], 1 in the hole; corners, real_corners [B,2]: the
    local patches' top-left corners (y, x) in the completions and in the real images; mean_pixel [3].
    Returns: Model. Every update goes through an Optimizer: Adam, with the replicas' mean and
    float16's loss scale around it.
    """
    dtype = DTYPES[config.PRECISION]  # the networks compute in it; weights, batch norm and losses stay float32
    g_stats, d_stats, fake_stats = [], [], []  # layer.batch_norm's (moving average, batch value) pairs

    def judge(image, patch, stats=None):  # D's logits [B], real > 0
        return tf.cast(network.discriminator(tf.cast(image, dtype), tf.cast(patch, dtype), stats), tf.float32)

    # C fills the holes, C(x, M_c): its pixels in the hole, the input's everywhere else.
    net_input = tf.cast(network.generator_input(x, masks, mean_pixel), dtype)
    raw = tf.cast(network.generator(net_input, training=True, stats=g_stats), tf.float32)
    fake = network.keep_known(raw, x, masks)
    mse = network.mse_loss(x, fake, masks)
    # D judges the real images and the completions, each whole and by the local patch around a hole.
    fake_patches = network.crop_local(fake, corners, config.LOCAL_SIZE)
    real_logits = judge(x, network.crop_local(x, real_corners, config.LOCAL_SIZE), d_stats)
    fake_logits = judge(fake, fake_patches, fake_stats)
    d_loss = network.discriminator_loss(real_logits, fake_logits)
    g_vars, d_vars = tf1.trainable_variables('generator'), tf1.trainable_variables('discriminator')
    g_opt, d_opt = Optimizer('g'), Optimizer('d')  # G's updates are built first: Adam's beta1_power is G's

    # Phase 1: C on the MSE.
    pretrain = g_opt.minimize(network.generator_loss(mse), g_vars)
    # Phase 2: D on the real images against the completions.
    d_grads = d_opt.gradients(d_loss, d_vars)
    d_train = d_opt.apply(d_grads)
    # Phase 3: both. D_FIRST: D's update, then C on the MSE and the verdict of the updated D (a
    # second pass of D over the completions). Else both gradients from the one pass, then both updates.
    if config.D_FIRST:
        with tf.control_dependencies([d_train]):
            g_adv = network.adversarial_loss(judge(fake, fake_patches))
        g_loss = network.generator_loss(mse, g_adv)
        joint = tf.group(g_opt.minimize(g_loss, g_vars), d_train)
    else:
        g_adv = network.adversarial_loss(fake_logits)
        g_loss = network.generator_loss(mse, g_adv)
        g_grads = g_opt.gradients(g_loss, g_vars)
        with tf.control_dependencies([g for g, _ in g_grads + d_grads]):
            joint = tf.group(g_opt.apply(g_grads), d_opt.apply(d_grads))
    phases = {1: Phase({'mse': mse}, pretrain),
              2: Phase({'mse': mse, 'd_loss': d_loss}, d_train),
              3: Phase({'mse': mse, 'd_loss': d_loss, 'g_adv': g_adv}, joint)}
    # D's averages move once from both of its passes (D never uses them: it always normalises with
    # batch statistics; the checkpoint keeps them all the same).
    d_stats = [(average, (on_real + on_fake) / 2) for (average, on_real), (_, on_fake) in zip(d_stats, fake_stats)]
    return Model(fake, real_logits, fake_logits, mse, d_loss, g_adv, g_loss, phases,
                 batch_norm={'g': g_stats, 'd': d_stats}, optimizers={'g': g_opt, 'd': d_opt})


class Optimizer:
    """Adam for one network ('g' or 'd'), wrapped in what train.py's settings add to an update.

    With several replicas each one's gradients are of its share of the mean loss: the strategy
    sums them into one update. In float16 the loss is scaled (LossScale).
    """

    def __init__(self, name):
        self.adam = tf1.train.AdamOptimizer(config.LEARNING_RATE, config.BETA1, name=f'{name}_adam')
        self.loss_scale = LossScale(name)
        self.replicas = tf.distribute.get_replica_context().num_replicas_in_sync

    def gradients(self, loss, variables):
        """[(gradient, variable)] of loss, as apply() takes them."""
        if self.replicas > 1:
            loss = loss / self.replicas
        return self.adam.compute_gradients(self.loss_scale.scale(loss), variables)

    def apply(self, grads_and_vars):
        """The update from gradients()'s list (or from its mean over micro-batches, ACCUM_STEPS)."""
        return self.loss_scale.apply(self.adam, grads_and_vars)

    def minimize(self, loss, variables):
        return self.apply(self.gradients(loss, variables))


class LossScale:
    """Dynamic loss scaling of one network's updates in float16 (a pass-through otherwise).

    float16 gradients of small losses underflow to zero. scale() multiplies the loss before
    the gradients; apply() divides them again, then updates only if every gradient is
    finite: a step with an inf or NaN is skipped and halves the scale, and each
    LOSS_SCALE_GROWTH_STEPS finite steps in a row double it. The variables exist in every
    precision, so every checkpoint holds the same names.
    """

    def __init__(self, name):
        with tf1.variable_scope('state'):
            self.value = tf1.get_variable(f'{name}_loss_scale', [], tf.float32, trainable=False,
                                          initializer=tf1.constant_initializer(LOSS_SCALE_START))
            self.good_steps = tf1.get_variable(f'{name}_good_steps', [], tf.int64, trainable=False,
                                               initializer=tf1.zeros_initializer())
        self.dynamic = config.PRECISION == 'float16'

    def scale(self, loss):
        return loss * self.value if self.dynamic else loss

    def apply(self, adam, grads_and_vars):
        """adam's update from gradients of scale(loss) (or of their sums, ACCUM_STEPS)."""
        if not self.dynamic:
            return adam.apply_gradients(grads_and_vars)
        grads = [g / self.value for g, _ in grads_and_vars]
        all_finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in grads])
        update = tf.cond(all_finite, lambda: tf.group(adam.apply_gradients(
            zip(grads, [v for _, v in grads_and_vars]))), tf.no_op)
        with tf.control_dependencies([update]):
            good = tf.where(all_finite, self.good_steps + 1, tf.zeros_like(self.good_steps))
            grow = good >= LOSS_SCALE_GROWTH_STEPS
            value = tf.where(all_finite, tf.where(grow, self.value * 2.0, self.value), self.value / 2.0)
            return tf.group(self.value.assign(value),
                            self.good_steps.assign(tf.where(grow, tf.zeros_like(good), good)))


class Training(Inference):
    """train.py's graph: Inference, plus create_model on the fed batch and what turns it into
    train.py's steps; feed `corners` and `real_corners` too.

    - Replicas (glcic/replicas.py): the strategy whose scope the graph is built in runs
      create_model once per replica, on its share of the batch; the optimizers all-reduce the
      gradients into one update; the losses and batch statistics are the replicas' means. Outside
      a scope the default strategy runs it once, on the whole batch.
    - `train_ops[phase]`: the phase's update, the batch norms' moving averages moved, the step
      counted and its losses added to the epoch's sums, in one session.run.
    - ACCUM_STEPS > 1: `stages` (accumulation_stages), then `count_step`.
    """

    def __init__(self):
        super().__init__()
        self._add_state()
        self.corners = tf1.placeholder(tf.int32, [None, 2], 'corners')
        self.real_corners = tf1.placeholder(tf.int32, [None, 2], 'real_corners')
        self.bn_decay = tf1.placeholder_with_default(config.BN_DECAY, [], 'bn_decay')
        strategy = tf.distribute.get_strategy()
        if config.ACCUM_STEPS > 1 and strategy.num_replicas_in_sync > 1:
            raise ValueError('ACCUM_STEPS > 1 works with one replica only')
        if config.PRECISION == 'float16' and strategy.num_replicas_in_sync > 1:
            raise ValueError('PRECISION=float16 works with one replica only (its loss scale skips steps)')
        replica = strategy.run(self.replica)
        self.mse, self.d_loss, self.g_adv, self.g_loss = (
            replicas_mean(loss) for loss in (replica.mse, replica.d_loss, replica.g_adv, replica.g_loss))
        self.real_logits, self.fake_logits, self.fake = (
            whole_batch(value) for value in (replica.real_logits, replica.fake_logits, replica.fake))
        self.output_batch_stats = to_uint8(self.fake)
        # The batch norms' moving averages, each moved towards its batch value's mean over the replicas.
        self.g_bn_updates = average_updates(self.bn_averages['g'], replicas_mean(replica.batch_norm['g']),
                                            self.bn_decay)
        d_bn_updates = average_updates(self.bn_averages['d'], replicas_mean(replica.batch_norm['d']), config.BN_DECAY)
        bn_updates = {1: self.g_bn_updates, 2: d_bn_updates, 3: self.g_bn_updates + d_bn_updates}
        means = {'mse': self.mse, 'd_loss': self.d_loss, 'g_adv': self.g_adv}
        self.losses = {phase: {name: means[name] for name in p.losses} for phase, p in replica.phases.items()}
        self.train_ops = {}
        for phase, p in replica.phases.items():
            losses = [tf.cast(self.losses[phase].get(name, 0.0), tf.float64) for name in LOSS_NAMES]
            self.train_ops[phase] = self._count_step(
                tf.stack(losses), after=[tf.group(*local_results(p.train))] + bn_updates[phase])
        if config.ACCUM_STEPS > 1:  # one replica: its values are plain tensors
            self.stages = accumulation_stages(replica, self.optimizers, self.g_bn_updates, d_bn_updates)
            self.step_losses = tf1.placeholder(tf.float64, [len(LOSS_NAMES)], 'step_losses')
            self.count_step = self._count_step(self.step_losses)
        self._add_state_ops()
        self.g_vars = tf1.trainable_variables('generator')
        self.d_vars = tf1.trainable_variables('discriminator')
        self.variables = tf1.global_variables()

    def replica(self):
        """create_model on this replica's share of the fed batch. The batch norms' values leave as
        one vector per network, for one all-reduce of their mean; their averages, the same
        variables on every replica, and the optimizers stay here."""
        size = config.IMAGE_SIZE
        x = tf.ensure_shape(to_float(share(self.images)), [None, size, size, 3])
        masks = tf.ensure_shape(share(self.masks), [None, size, size, 1])
        model = create_model(x, masks, share(self.corners), share(self.real_corners), self.mean_pixel)
        self.bn_averages = {net: [average for average, _ in pairs] for net, pairs in model.batch_norm.items()}
        self.optimizers = model.optimizers
        return model._replace(batch_norm={net: batch_values(pairs) for net, pairs in model.batch_norm.items()},
                              optimizers=None)

    def _add_state(self):
        with tf1.variable_scope('state'):
            # Sums of LOSS_NAMES over the epoch's steps so far, so a resumed epoch's mean covers all.
            self.loss_sums = tf1.get_variable('loss_sums', [len(LOSS_NAMES)], tf.float64, trainable=False,
                                              initializer=tf1.zeros_initializer())
            # The stop rule's memory: the validation (realism, hole PSNR) of the latest phase-3 epochs,
            # oldest first, how many epochs that was, and phase 1's scores; saved with the weights.
            self.val_scores = tf1.get_variable('val_scores', [VAL_HISTORY, 2], tf.float64, trainable=False,
                                               initializer=tf1.zeros_initializer())
            self.val_count = _counter('val_count', tf.int64)
            self.val_baseline = tf1.get_variable('val_baseline', [2], tf.float64, trainable=False,
                                                 initializer=tf1.zeros_initializer())

    def _count_step(self, losses, after=()):
        """Count one step and add its losses (float64 [len(LOSS_NAMES)]) to the epoch's sums, after
        the ops `after`."""
        with tf.control_dependencies(after):
            return tf.group(self.step.assign_add(1), self.epoch_step.assign_add(1),
                            self.loss_sums.assign_add(losses))

    def _add_state_ops(self):
        """The ops train.py changes the saved state with between steps."""
        self.val_value = tf1.placeholder(tf.float64, [2], 'val_value')
        self.record_val = tf.group(
            self.val_scores.assign(tf.concat([self.val_scores[1:], [self.val_value]], axis=0)),
            self.val_count.assign_add(1))
        self.set_val_baseline = self.val_baseline.assign(self.val_value)
        self.next_epoch = tf.group(self.epoch.assign_add(1), self.epoch_step.assign(0),
                                   self.loss_sums.assign(tf.zeros_like(self.loss_sums)))
        self.phase_value = tf1.placeholder(tf.int32, [], 'phase_value')
        self.set_phase = self.phase.assign(self.phase_value)
        self.mean_pixel_value = tf1.placeholder(tf.float32, [3], 'mean_pixel_value')
        self.set_mean_pixel = self.mean_pixel.assign(self.mean_pixel_value)

    def feed(self, images, masks, corners=None, real_corners=None):
        """The feed dict of one batch; the real images' patches sit at `corners` unless
        `real_corners` (their own holes' patches, REAL_OWN_HOLES) is given."""
        feed = {self.images: images, self.masks: masks}
        if corners is not None:
            feed[self.corners] = corners
            feed[self.real_corners] = corners if real_corners is None else real_corners
        return feed

    def epoch_means(self, sess, phase):
        """Each loss of `phase` averaged over every step of the epoch so far, resumes included."""
        sums, steps = sess.run([self.loss_sums, self.epoch_step])
        return {name: float(total) / max(1, steps) for name, total in zip(LOSS_NAMES, sums)
                if name in self.losses[phase]}

    def val_history(self, sess):
        """(realism, hole PSNR) lists of each phase-3 epoch recorded (record_val), oldest first, at
        most VAL_HISTORY, and phase 1's (realism, hole PSNR) (set_val_baseline)."""
        values, count, baseline = sess.run([self.val_scores, self.val_count, self.val_baseline])
        kept = values[VAL_HISTORY - min(int(count), VAL_HISTORY):]
        return [float(v) for v in kept[:, 0]], [float(v) for v in kept[:, 1]], tuple(float(v) for v in baseline)

    def recalibrate(self, sess, feeds):
        """Re-estimate the generator's batch-norm averages with the current weights.

        The moving averages lag weights that change fast; a cumulative average
        over fresh batches (decay k/(k+1) at batch k) matches them again.
        """
        for k, feed in enumerate(feeds):
            sess.run(self.g_bn_updates, {**feed, self.bn_decay: k / (k + 1.0)})


def share(batch):
    """This replica's rows of a batch that is fed whole (all of them with one replica)."""
    context = tf.distribute.get_replica_context()
    count = context.num_replicas_in_sync
    if count == 1:
        return batch
    rows, index = tf.shape(batch)[0], context.replica_id_in_sync_group
    return batch[index * rows // count:(index + 1) * rows // count]


def replicas_mean(value):
    """The mean over the replicas of a value each computed (a scalar or a vector)."""
    return tf.distribute.get_strategy().reduce(tf.distribute.ReduceOp.MEAN, value, axis=None)


def local_results(value):
    """The values of this process's replicas, in order (one without a strategy)."""
    return tf.distribute.get_strategy().experimental_local_results(value)


def whole_batch(value):
    """This process's replicas' rows of a batch, in batch order."""
    parts = local_results(value)
    return parts[0] if len(parts) == 1 else tf.concat(parts, axis=0)


def batch_values(pairs):
    """The batch values of layer.batch_norm's (moving average, batch value) `pairs` as one vector,
    so the replicas' means take one all-reduce."""
    return tf.concat([value for _, value in pairs], axis=0)


def average_updates(averages, values, decay):
    """layer.moving_average_updates for `averages` from `values`, batch_values' vector of the same pairs."""
    sizes = [average.shape[0] for average in averages]
    return layer.moving_average_updates(zip(averages, tf.split(values, sizes)), decay)


def accumulation_stages(model, optimizers, g_bn_updates, d_bn_updates):
    """ACCUM_STEPS > 1: {phase: [(accumulate, losses, apply), ...]} that train.train_step runs:
    `accumulate` once per micro-batch (its gradients summed, batch norm updated on it), then
    `apply` once (the Optimizer's update from the mean gradient, the sums zeroed).

    model: create_model's record of the one replica; optimizers: its {'g', 'd'}. Phase 3 with
    D_FIRST runs D's stage before C's, so C's adversarial loss is D's first pass over the
    completions: the updated D's verdict already.
    """
    g_opt, d_opt = optimizers['g'], optimizers['d']
    g_vars, d_vars = tf1.trainable_variables('generator'), tf1.trainable_variables('discriminator')
    g_adv = network.adversarial_loss(model.fake_logits)
    losses = {'mse': model.mse, 'd_loss': model.d_loss, 'g_adv': g_adv}
    g_mse = (g_opt, g_opt.gradients(network.generator_loss(model.mse), g_vars))
    g_joint = (g_opt, g_opt.gradients(network.generator_loss(model.mse, g_adv), g_vars))
    d_update = (d_opt, d_opt.gradients(model.d_loss, d_vars))

    def stage(updates, names, bn_updates):
        adds, applies, all_sums = [], [], []
        for optimizer, grads in updates:
            with tf1.variable_scope('accumulate', reuse=tf1.AUTO_REUSE):
                sums = [tf1.get_variable(v.op.name, v.shape, trainable=False, initializer=tf1.zeros_initializer(),
                                         collections=[tf1.GraphKeys.LOCAL_VARIABLES]) for _, v in grads]
            adds += [s.assign_add(g) for s, (g, _) in zip(sums, grads)]
            applies.append(optimizer.apply([(s / config.ACCUM_STEPS, v) for s, (_, v) in zip(sums, grads)]))
            all_sums += sums
        with tf.control_dependencies(applies):  # zeroed only once the update has read them
            apply = tf.group(*[s.assign(tf.zeros_like(s)) for s in all_sums])
        return tf.group(*adds, *bn_updates), {name: losses[name] for name in names}, apply

    d_stage = stage([d_update], ('mse', 'd_loss'), d_bn_updates)
    return {1: [stage([g_mse], ('mse',), g_bn_updates)],
            2: [d_stage],
            3: ([d_stage, stage([g_joint], ('mse', 'g_adv'), g_bn_updates)] if config.D_FIRST else
                [stage([g_joint, d_update], ('mse', 'd_loss', 'g_adv'), g_bn_updates + d_bn_updates)])}
