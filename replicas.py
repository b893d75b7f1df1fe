"""Where train.py's graph runs: one device, several GPUs of this machine, or several machines.

One replica builds network.Model as it is. More build it in a tf.distribute strategy's scope:
MirroredStrategy for the GPUs of this machine (REPLICAS), MultiWorkerMirroredStrategy when
TF_CONFIG names several workers. Every replica gets an equal share of each batch; the gradients
are all-reduced and one update is applied (network.Model._build_training).
"""
import contextlib
import hashlib

import numpy as np
import tensorflow as tf

import config
import network
from errors import UserError

tf1 = tf.compat.v1
WAIT_SECONDS = 600  # how long a collective op waits for another worker before the run stops


class Replicas:
    """The strategy (None for one device), its session, and which worker writes the files."""

    def __init__(self):
        resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
        jobs = resolver.cluster_spec().as_dict()
        self.workers = max(1, sum(len(jobs.get(job, [])) for job in ('chief', 'worker')))
        self.cpu_devices = 1
        self.strategy = None
        if self.workers > 1:
            self.resolver = resolver
            self.task = f'{resolver.task_type} {resolver.task_id}'
            # Worker 0 (or the 'chief' task) writes checkpoints and outputs, as TensorFlow's own tools do.
            self.chief = resolver.task_type == 'chief' or (resolver.task_type == 'worker' and resolver.task_id == 0
                                                             and 'chief' not in jobs)
            options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=WAIT_SECONDS)
            self.strategy = tf.distribute.MultiWorkerMirroredStrategy(resolver, options)
        else:
            self.chief, self.task = True, None
            gpus = tf.config.list_physical_devices('GPU')
            count = config.REPLICAS or max(1, len(gpus))
            if count > 1 and gpus and count > len(gpus):
                raise UserError(f'REPLICAS={count} but TensorFlow sees {len(gpus)} GPU(s): set --REPLICAS='
                                f'{len(gpus)} (or 0 for all of them)')
            if count > 1:
                if not gpus:  # the CPU split into logical devices: the same code path, for tests
                    self.cpu_devices = count
                kind = 'GPU' if gpus else 'CPU'
                self.strategy = tf.distribute.MirroredStrategy([f'/{kind}:{i}' for i in range(count)])
        self.count = self.strategy.num_replicas_in_sync if self.strategy else 1
        self._server = None

    def check(self, batch_size, accum_steps):
        """The settings that cannot be split, as one-line errors."""
        if batch_size % self.count:
            raise UserError(f'BATCH_SIZE={batch_size} does not split into {self.count} replicas: make it '
                            f'a multiple of {self.count}')
        if accum_steps > 1 and self.count > 1:
            raise UserError(f'ACCUM_STEPS={accum_steps} works with one replica only: set --ACCUM_STEPS=1 '
                            f'(the {self.count} replicas already share BATCH_SIZE={batch_size}) or --REPLICAS=1')

    def describe(self):
        if self.workers > 1:
            return (f'{self.count} replicas on {self.workers} workers (this is {self.task}'
                    f'{", which writes the files" if self.chief else ""})')
        if self.strategy:
            return f'{self.count} replicas, {config.BATCH_SIZE // self.count} images each per step'
        return 'one replica'

    def scope(self):
        """The context to build the training graph in."""
        return self.strategy.scope() if self.strategy else contextlib.nullcontext()

    def session(self):
        """A session with the strategy's devices: this process's, or the cluster's through a
        server of its own (collective ops between workers)."""
        settings = network.session_config()
        if self.cpu_devices > 1:
            settings.device_count['CPU'] = self.cpu_devices
        if self.workers == 1:
            return tf1.Session(config=settings)
        settings = self.strategy.update_config_proto(settings)
        self._server = tf.distribute.Server(self.resolver.cluster_spec(), job_name=self.resolver.task_type,
                                            task_index=self.resolver.task_id, config=settings)
        return tf1.Session(self._server.target, config=settings)

    def build_agreement(self):
        """Several workers: an op that gives every worker the same stop/save decision (any worker's
        flag counts) and checks they all stand at the same step. Call inside scope()."""
        if self.workers == 1:
            return
        self._flags = tf1.placeholder(tf.float64, [4], 'worker_flags')

        def total(flags):
            return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, flags)
        self._agreed = self.strategy.experimental_local_results(self.strategy.run(total, (self._flags,)))[0]

    def agree(self, sess, stop, save, step):
        """(stop, save) as every worker will act on them after this step; `step` is where this
        worker stands (a step or a batch), which must be the same on all."""
        if self.workers == 1:
            return stop, save
        # Every replica adds its worker's flags: the sums over the replicas, means of the workers.
        stops, saves, steps, squares = sess.run(self._agreed, {self._flags: [stop, save, step, step * step]})
        mean = steps / self.count
        if squares / self.count != mean * mean:
            raise UserError(f'the workers stand at different steps (this one at {step}, the mean {mean:g}): '
                            f'they must all resume from the same BACKUP_DIR, shared storage that worker 0 writes')
        return stops > 0, saves > 0


def digest(sess, variables):
    """A short fingerprint of the variables' values, equal on workers that hold the same weights."""
    sha = hashlib.sha256()
    for value in sess.run(variables):
        sha.update(np.ascontiguousarray(value).tobytes())
    return sha.hexdigest()[:16]
