"""Where train.py's graph runs: one device, several GPUs of this machine, or several machines.

One replica builds graphs.Training as it is. More build it in a tf.distribute strategy's scope:
MirroredStrategy for the GPUs of this machine (REPLICAS), MultiWorkerMirroredStrategy when
TF_CONFIG names several workers. Every replica gets an equal share of each batch (graphs.share);
the gradients are all-reduced and one update is applied (graphs.Training). Also here: the sessions
every script opens, and the device line they print.
"""
import contextlib
import hashlib
import json
import os
import signal
import threading
import time

import numpy as np
import tensorflow as tf

import config
from glcic.errors import UserError

tf1 = tf.compat.v1
TF_CONFIG_EXAMPLE = ('(expected e.g. {"cluster": {"worker": ["host0:2222", "host1:2222"]}, '
                     '"task": {"type": "worker", "index": 0}})')


class Stopped(Exception):
    """Ctrl-C or SIGTERM while this worker waited for the others; args[0] is the signal."""


def check_tf_config():
    """One-line errors for a TF_CONFIG that TensorFlow would reject with a traceback."""
    text = os.environ.get('TF_CONFIG', '').strip()
    if not text:
        return
    try:
        spec = json.loads(text)
    except ValueError as error:
        raise UserError(f'TF_CONFIG is not valid JSON ({error}) {TF_CONFIG_EXAMPLE}')
    if not isinstance(spec, dict):
        raise UserError(f'TF_CONFIG holds a {type(spec).__name__}, not an object {TF_CONFIG_EXAMPLE}')
    cluster, task = spec.get('cluster') or {}, spec.get('task')
    if not isinstance(cluster, dict):
        raise UserError(f'TF_CONFIG\'s "cluster" is a {type(cluster).__name__}, not an object {TF_CONFIG_EXAMPLE}')
    if not cluster:
        return
    if not isinstance(task, dict) or 'type' not in task or 'index' not in task:
        raise UserError(f'TF_CONFIG names a cluster but not this worker\'s "task" with its "type" and "index" '
                        f'{TF_CONFIG_EXAMPLE}')
    kind, index = task['type'], task['index']
    if not isinstance(kind, str) or not isinstance(cluster.get(kind), list):
        raise UserError(f'TF_CONFIG\'s task type {kind!r} has no list of addresses in its "cluster" '
                        f'{TF_CONFIG_EXAMPLE}')
    count = len(cluster[kind])
    if type(index) is not int or not 0 <= index < count:
        raise UserError(f'TF_CONFIG\'s task {kind!r} index {index!r} is not in its cluster, which has {count} '
                        f'{kind} address(es): give each worker its own index from 0 to {count - 1}')


class Replicas:
    """The strategy (None for one device), its session, and which worker writes the files."""

    def __init__(self):
        check_tf_config()
        resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
        try:
            jobs = resolver.cluster_spec().as_dict()
        except (TypeError, ValueError) as error:
            raise UserError(f'TF_CONFIG: {error} {TF_CONFIG_EXAMPLE}')
        self.workers = max(1, sum(len(jobs.get(job, [])) for job in ('chief', 'worker')))
        self.cpu_devices = 1
        self.strategy = None
        if self.workers > 1:
            self.resolver = resolver
            self.task = f'{resolver.task_type} {resolver.task_id}'
            self.others = [address for job in ('chief', 'worker') for i, address in enumerate(jobs.get(job, []))
                           if (job, i) != (resolver.task_type, resolver.task_id)]
            # Worker 0 (or the 'chief' task) writes checkpoints and outputs, as TensorFlow's own tools do.
            self.chief = resolver.task_type == 'chief' or (resolver.task_type == 'worker' and resolver.task_id == 0
                                                             and 'chief' not in jobs)
            options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=config.WORKER_WAIT_SECONDS)
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
        if config.PRECISION == 'float16' and self.count > 1:
            raise UserError('PRECISION=float16 works with one replica only (its loss scale skips whole '
                            'steps): set --PRECISION=bfloat16 or float32, or --REPLICAS=1')

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
        settings = session_config()
        if self.cpu_devices > 1:
            settings.device_count['CPU'] = self.cpu_devices
        if self.workers == 1:
            return tf1.Session(config=settings)
        settings = self.strategy.update_config_proto(settings)
        self._server = tf.distribute.Server(self.resolver.cluster_spec(), job_name=self.resolver.task_type,
                                            task_index=self.resolver.task_id, config=settings)
        return tf1.Session(self._server.target, config=settings)

    def start(self, sess, fetches, stopped=lambda: None):
        """Run the session's first fetches. Several workers wait there until every one has joined:
        the wait runs in a thread so that Ctrl-C and SIGTERM still end it (raising Stopped), and
        it gives up after WORKER_WAIT_SECONDS. stopped(): the signal that came before, if any."""
        if self.workers == 1:
            return sess.run(fetches)
        print(f'waiting up to WORKER_WAIT_SECONDS={config.WORKER_WAIT_SECONDS:g} s for the other workers '
              f'({", ".join(self.others)})', flush=True)
        outcome = {}

        def run():
            try:
                outcome['value'] = sess.run(fetches)
            except Exception as error:  # handed to the main thread below
                outcome['error'] = error

        def stop(signum, _frame):
            raise Stopped(signum)
        thread = threading.Thread(target=run, daemon=True)  # daemon: an exit need not wait for it
        handlers = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            thread.start()
            deadline = time.monotonic() + config.WORKER_WAIT_SECONDS
            while thread.is_alive() and time.monotonic() < deadline:
                if stopped():
                    raise Stopped(stopped())
                thread.join(0.2)  # signal handlers run between these waits
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
        if thread.is_alive():
            raise UserError(f'not every worker answered within WORKER_WAIT_SECONDS={config.WORKER_WAIT_SECONDS:g} s '
                            f'({", ".join(self.others)}): start each with the same command and its own TF_CONFIG '
                            f'index, then this one again (or raise --WORKER_WAIT_SECONDS)')
        if 'error' in outcome:
            raise outcome['error']
        return outcome['value']

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


def session_config():
    """GPU memory grows as needed instead of being taken whole at the start."""
    settings = tf1.ConfigProto()
    settings.gpu_options.allow_growth = True
    return settings


def make_session():
    """A session on the GPU when TensorFlow sees one, else the CPU."""
    return tf1.Session(config=session_config())


def device_name():
    """The device train.py and test.py run on, for their first line."""
    gpus = tf.config.list_physical_devices('GPU')
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        return f"GPU {details.get('device_name', gpus[0].name)}"
    onednn = 'on' if onednn_enabled() else 'off'
    return f'CPU ({os.cpu_count()} cores, oneDNN {onednn}; no GPU visible to TensorFlow)'


def onednn_enabled():
    """Whether TensorFlow runs its CPU ops through oneDNN (TF_ENABLE_ONEDNN_OPTS, or its CPU default)."""
    from tensorflow.python.util import _pywrap_util_port  # TensorFlow's own answer; no public API
    return bool(_pywrap_util_port.IsMklEnabled())
