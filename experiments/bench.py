"""Measure glcic's speed and memory on this machine and print one markdown table.

    python experiments/bench.py                         # all sections, 128x128, batch 16 (~10 min on 2 quiet CPU cores)
    python experiments/bench.py --out run.md            # also write the table with the machine's details
    python experiments/bench.py --only train,tf1        # some sections (names below)
    python experiments/bench.py --steps 9               # median of 9 timed steps instead of 5
    python experiments/bench.py --trace traces/         # also write a Chrome trace of one step per phase
    python experiments/bench.py --quick                 # tiny sizes and widths, 2 steps: checks that every row works (~2 min)
    python experiments/bench.py --BATCH_SIZE=8          # any key of config.py

Sections, numbered as the rows of the table:
 1 ceiling  GFLOP/s of a large matmul and of one 3x3 256->256 convolution, in this process
 2 flops    forward FLOPs per image of G and D, from the graph (tf.compat.v1.profiler) and
            from the layer tables; FLOPs of each phase's training step from its sub-graph
 3 train    images/s of train.run_epoch (the loop of train.py) in phases 1-3, and the
            model-FLOPs utilisation = step FLOPs per image x images/s / ceiling
 4 tf1      the joint step as the common TF1 GLCIC code writes it (two session.runs,
            numpy crops, D fed through placeholders) against ours, with and without the
            adversarial term of G
 5 (train)  share of the step spent outside session.run: batch, holes, tqdm, logging
 6 infer    graphs.Inference().complete on one image, a batch, and one image 4x the
            side, in float32 and bfloat16; the float32 floor (FLOPs / ceiling), the share
            of the convolutions, and one image through the whole training graph
 7 memory   peak RSS of a fresh process per phase; TensorFlow's peak allocator bytes in
            one step (RunMetadata allocation records); the GPU estimate from them
 8 scale    phase-1 step time and allocator peak against batch size and image side
 9 to_npy   images/s of python to_npy.py on ../shared/faces (skipped if absent)
10 startup  seconds from starting python train.py to its first finished step
11 profile  where a step's time goes: op types of one traced step per phase
12 replicas images/s of phases 1 and 3 with each batch split between 2 CPU devices
            (REPLICAS=2: MirroredStrategy, the all-reduce on the CPU) against one device
13 precision images/s of phases 1-3 in each PRECISION (float32, float16, bfloat16), the
            allocator peak of a phase-3 step in each, and the largest batch that fits 6 GiB
            (float16 on a CPU: timed at a quarter of the side, batch 2, one step: it is slow there)

Everything but 7, 9, 10 and 11 runs in this process, each section in its own
tf.Graph built by graphs.Training or graphs.Inference (or, for the TF1 comparison, by network.generator
and network.discriminator), so the figures are comparable.
"""
import argparse
import collections
import contextlib
import datetime
import io
import json
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
import types
from dataclasses import dataclass
from unittest import mock

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # the repository's modules

from glcic import cli  # noqa: E402  first: it quiets TensorFlow's C++ logs
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import config  # noqa: E402
import layer  # noqa: E402
import network  # noqa: E402
import train  # noqa: E402
from glcic import data, errors, graphs, housekeeping, replicas  # noqa: E402

tf1 = tf.compat.v1
SECTIONS = ('ceiling', 'flops', 'train', 'tf1', 'infer', 'memory', 'scale', 'to_npy', 'startup',
            'profile', 'replicas', 'precision')
QUICK = {'IMAGE_SIZE': 32, 'LOCAL_SIZE': 16, 'HOLE_MIN': 4, 'HOLE_MAX': 8, 'BATCH_SIZE': 2, 'WIDTH': 8}
GiB = 2 ** 30
GPU_BYTES = 6 * GiB  # the GPU BATCH_SIZE=16 must fit (6 GB cards have 6 GiB)
GPU_RESERVE = GiB // 2  # CUDA context and cuDNN/cuBLAS handles: device memory outside TF's allocator
MATMUL_SIDE = 4096  # side of the square float32 matrices of the ceiling matmul
TO_NPY_IMAGES = 5000  # images to_npy.py converts in section 9
DEMO_IMAGES = 64  # synthetic faces for train.py in section 10
SLOW_BATCH = 2  # section 13's float16 batch on a CPU
TIMEOUT = 900  # seconds a child process may take before it is killed
# The CPU's vector units that decide TensorFlow's speed (and whether it turns oneDNN on): name, /proc/cpuinfo flag.
VECTOR_FEATURES = (('AVX2', 'avx2'), ('AVX-512', 'avx512f'), ('AVX512_BF16', 'avx512_bf16'),
                   ('AVX512_FP16', 'avx512_fp16'), ('AMX', 'amx_tile'))


@dataclass
class Row:
    item: int  # section number (the list)
    key: str  # stable name, for tests
    label: str
    value: float  # None: not measured
    unit: str = ''
    note: str = ''
    target: str = ''  # e.g. '>= 70'
    met: bool = None


# Targets of the issue, on the 2-core CPU: key -> (comparison, bound in the row's unit).
# Memory rows are in GiB; the bounds are in GB (1e9 bytes).
TARGETS = {
    'train.mfu.1': ('>=', 70.0), 'train.mfu.3': ('>=', 70.0),
    'tf1.ratio': ('>=', 1.0), 'tf1.ratio_adv': ('>=', 0.95),
    'outside.1': ('<', 2.0), 'outside.2': ('<', 2.0), 'outside.3': ('<', 2.0),
    'memory.rss.1': ('<=', 3.5e9 / GiB), 'memory.rss.2': ('<=', 3.5e9 / GiB),
    'memory.rss.3': ('<=', 3.5e9 / GiB), 'memory.gpu': ('<=', 5e9 / GiB),
    'to_npy.ips': ('>=', 1000.0),
    'startup.seconds': ('<=', 30.0),
    'infer.one.ms': ('<=', 50.0), 'infer.bf16.one.ms': ('<=', 50.0),
    'infer.one.ratio': ('<=', 1.5),
}


def median_seconds(fn, steps, warmup):
    """Median wall time of `steps` calls of fn after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


@contextlib.contextmanager
def settings(**values):
    """Change config keys for a block; the old values come back after it."""
    saved = config.as_dict()
    config.set_values(values)
    try:
        yield
    finally:
        config.set_values(saved)


def progress(text):
    print(f'[bench {time.strftime("%H:%M:%S")}] {text}', file=sys.stderr, flush=True)


def random_batch(rng, count, size):
    """uint8 images [count,size,size,3] and holes; content does not change the cost of a step."""
    images = rng.randint(0, 256, (count, size, size, 3)).astype(np.uint8)
    masks, corners = data.sample_holes(rng, count, size)
    return images, masks, corners


def build_model(kind=graphs.Training, **kwargs):
    """kind(**kwargs) (graphs.Training or graphs.Inference) in a fresh graph with initialised
    variables: (model, session)."""
    with tf.Graph().as_default():
        tf1.set_random_seed(config.SEED)
        model = kind(**kwargs)
        sess = replicas.make_session()
        sess.run(tf1.global_variables_initializer())
    return model, sess


def traced_run(sess, fetches, feed):
    """One session.run with a full trace; returns its RunMetadata."""
    run_metadata = tf1.RunMetadata()
    sess.run(fetches, feed, options=tf1.RunOptions(trace_level=tf1.RunOptions.FULL_TRACE),
             run_metadata=run_metadata)
    return run_metadata


def allocator_peak(run_metadata):
    """Most bytes live at once in TensorFlow's allocator during the traced step.

    Replays every allocation record of the step in time order (allocations
    before frees at the same microsecond); on a GPU only its allocator counts.
    Tensors that outlive the step (variables) are not included.
    """
    records = collections.defaultdict(list)
    for device in run_metadata.step_stats.dev_stats:
        for node in device.node_stats:
            for memory in node.memory:
                records[memory.allocator_name] += [(r.alloc_micros, -r.alloc_bytes)
                                                   for r in memory.allocation_records]
    gpu = [name for name in records if name.upper().startswith('GPU')]
    events = sorted(e for name in (gpu or records) for e in records[name])
    return int(np.max(np.cumsum([-b for _, b in events]), initial=0))


def time_by_op(run_metadata):
    """Microseconds per op type (as executed, e.g. oneDNN's _MklNative* kernels) in a traced step."""
    totals = collections.Counter()
    for device in run_metadata.step_stats.dev_stats:
        if 'stream' in device.device:  # a GPU's kernels again, under CUDA names
            continue
        for node in device.node_stats:
            label = node.timeline_label
            kind = label.split(' = ', 1)[1].split('(', 1)[0] if ' = ' in label else node.node_name
            totals[kind] += node.op_end_rel_micros - node.op_start_rel_micros
    return totals


def variable_bytes(graph):
    """Bytes of every variable (weights, Adam slots, batch-norm statistics, counters)."""
    with graph.as_default():
        return sum(v.shape.num_elements() * v.dtype.base_dtype.size for v in tf1.global_variables())


def peak_rss():
    """Peak resident memory of this process so far, bytes.

    VmHWM starts afresh at exec; ru_maxrss would start from the parent's size at fork.
    """
    with contextlib.suppress(OSError):
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith('VmHWM:'):
                    return int(line.split()[1]) * 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == 'darwin' else peak * 1024  # bytes on macOS, KiB elsewhere


def child_command(script, *args, **overrides):
    """Run a script of this repo (a path from its root) with this process's whole config (plus overrides)
    on its command line."""
    values = {**config.as_dict(), **overrides}
    return [sys.executable, os.path.join(ROOT, script), *args] + [f'--{k}={v!r}' for k, v in values.items()]


def run_child(command):
    """Run a child process to its end; returns its stdout. Raises UserError with its last error line."""
    try:
        done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        raise errors.UserError(f'{os.path.basename(command[1])} took more than {TIMEOUT} s')
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ['no output'])[-1]
        raise errors.UserError(f'{os.path.basename(command[1])} failed ({last[:200]})')
    return done.stdout


# ---------------------------------------------------------------- 1: ceiling
def ceiling(args, ctx):
    """GFLOP/s of the two kernels the model is made of, on the device train.py uses."""
    side = MATMUL_SIDE if not args.quick else 256
    batch, grid = config.BATCH_SIZE, config.IMAGE_SIZE // 4  # the generator's middle
    with tf.Graph().as_default():
        init = tf1.random_normal_initializer()
        a = tf1.get_variable('a', [side, side], initializer=init)
        b = tf1.get_variable('b', [side, side], initializer=init)
        x = tf1.get_variable('x', [batch, grid, grid, 256], initializer=init)
        w = tf1.get_variable('w', [3, 3, 256, 256], initializer=init)
        # Fetch one number: the whole product is computed without copying it out.
        matmul = tf.matmul(a, b)[0, 0]
        conv = tf.nn.conv2d(x, w, 1, 'SAME')[0, 0, 0, 0]
        sess = replicas.make_session()
        sess.run(tf1.global_variables_initializer())
        mm = 2 * side ** 3 / median_seconds(lambda: sess.run(matmul), args.steps, args.warmup)
        cv = 2 * 9 * 256 * 256 * batch * grid * grid / median_seconds(lambda: sess.run(conv), args.steps,
                                                                       args.warmup)
        sess.close()
    ctx['ceiling'] = max(mm, cv)
    best = 'matmul' if mm >= cv else 'convolution'
    return [Row(1, 'ceiling.matmul', f'float32 matmul {side}x{side} @ {side}x{side}', mm / 1e9, 'GFLOP/s',
                'tf.matmul, 2 FLOPs per multiply-add'),
            Row(1, 'ceiling.conv', f'3x3 convolution 256->256 on [{batch},{grid},{grid},256]', cv / 1e9,
                'GFLOP/s', f'tf.nn.conv2d forward; the ceiling for MFU is the faster one ({best})')]


# ---------------------------------------------------------------- 2: flops
def table_flops():
    """Forward FLOPs per image of (G, D) from the layer tables: convolutions and dense layers,
    2 per multiply-add; a transposed convolution does kernel^2 x C_in x C_out per input pixel."""
    side, channels, g = config.IMAGE_SIZE, 4 if config.MASK_CHANNEL else 3, 0
    for i, (kind, out, kernel, arg) in enumerate(network.GENERATOR, 1):
        out = out if i == len(network.GENERATOR) else network.width(out)
        if kind == 'deconv':
            g += 2 * kernel ** 2 * channels * out * side ** 2
            side *= arg
        else:
            side = -(-side // arg) if kind == 'conv' else side  # stride for conv, dilation rate otherwise
            g += 2 * kernel ** 2 * channels * out * side ** 2
        channels = out
    units = network.width(network.BRANCH_UNITS)
    d = 2 * 2 * units  # the final FC 2048 -> 1
    for convs, side in ((network.GLOBAL_CONVS, config.IMAGE_SIZE), (network.LOCAL_CONVS, config.LOCAL_SIZE)):
        channels = 3
        for out in map(network.width, convs):
            side = -(-side // 2)
            d += 2 * 25 * channels * out * side ** 2
            channels = out
        d += 2 * side ** 2 * channels * units
    return g, d


def graph_flops(graph_def, fetches, shapes):
    """FLOPs that running `fetches` computes, counted by tf.compat.v1.profiler.

    Only the sub-graph the fetches depend on is kept, and it is re-imported with
    the placeholders in `shapes` ({name: static shape}) so every op has a full
    shape to count. Returns (FLOPs, number of ops the profiler could not size).
    """
    sub = tf1.graph_util.extract_sub_graph(graph_def, fetches)
    placeholders = {n.name: n for n in sub.node if n.op == 'Placeholder'}
    with tf.Graph().as_default() as graph:
        mapping = {f'{name}:0': tf1.placeholder(tf.as_dtype(placeholders[name].attr['dtype'].type), shape,
                                                name=f'static_{name}')
                   for name, shape in shapes.items() if name in placeholders}
        tf.import_graph_def(sub, input_map=mapping, name='')
        options = tf1.profiler.ProfileOptionBuilder.float_operation()
        options['output'] = 'none'
        messages = io.StringIO()
        with contextlib.redirect_stderr(messages):  # it reports ops without shapes there
            total = tf1.profiler.profile(graph, cmd='scope', options=options).total_float_ops
    unsized = re.search(r'(\d+) ops no flops stats', messages.getvalue())
    return total, int(unsized.group(1)) if unsized else 0


def flops(args, ctx):
    size, local, batch = config.IMAGE_SIZE, config.LOCAL_SIZE, config.BATCH_SIZE
    channels = 4 if config.MASK_CHANNEL else 3
    with tf.Graph().as_default() as graph:
        network.generator(tf1.placeholder(tf.float32, [1, size, size, channels], 'x'), training=True)
        network.discriminator(tf1.placeholder(tf.float32, [1, size, size, 3], 'image'),
                              tf1.placeholder(tf.float32, [1, local, local, 3], 'patch'))
        graph_def = graph.as_graph_def()
    g_out = [n.name for n in graph_def.node if n.name.startswith('generator/') and n.op == 'Tanh']
    d_out = [n.name for n in graph_def.node if n.name.startswith('discriminator/') and n.op == 'Squeeze']
    g_graph, _ = graph_flops(graph_def, g_out, {})
    d_graph, _ = graph_flops(graph_def, d_out, {})
    g_table, d_table = table_flops()
    path = layer.dilation_path(config.PRECISION)
    rows = [Row(2, 'flops.g', 'generator forward, per image (graph)', g_graph / 1e9, 'GFLOP',
                f'layer table: {g_table / 1e9:.3f} GFLOP; graph / table = {g_graph / g_table:.4f} '
                + ('(dilated layers by space-to-batch, counted as the graph runs them)'
                   if path == 'space-to-batch' else '(the graph also counts bias adds)')),
            Row(2, 'flops.d', 'discriminator forward, per image (graph)', d_graph / 1e9, 'GFLOP',
                f'layer table: {d_table / 1e9:.3f} GFLOP; graph / table = {d_graph / d_table:.4f}')]
    model, _ = main_model(ctx)
    graph_def = model.images.graph.as_graph_def()
    shapes = {'images': [batch, size, size, 3], 'masks': [batch, size, size, 1], 'corners': [batch, 2]}
    ctx['step_flops'] = {}
    for phase, what in ((1, 'G fwd + bwd (mse)'), (2, 'G fwd, D fwd + bwd on real and fake'),
                        (3, 'G and D fwd + bwd, both updates')):
        total, unsized = graph_flops(graph_def, [model.train_ops[phase].name], shapes)
        per_image = total / batch
        ctx['step_flops'][phase] = per_image
        rows.append(Row(2, f'flops.step.{phase}', f'phase {phase} training step, per image (graph)',
                        per_image / 1e9, 'GFLOP',
                        f'{what}: {per_image / g_graph:.2f} x G forward; sub-graph of train_ops[{phase}]'
                        + (f'; {unsized} ops without a static shape not counted' if unsized else '')))
    return rows


# ---------------------------------------------------------------- 3, 4, 5: train, tf1
def main_model(ctx):
    """graphs.Training at the configured size, built once and shared by several sections."""
    if 'model' not in ctx:
        progress('building graphs.Training')
        ctx['model'] = build_model()
    return ctx['model']


def training_images(ctx, count):
    """`count` random training images in an .npy file, opened as train.py opens its data."""
    path = os.path.join(ctx['tmp'], f'x_{count}_{config.IMAGE_SIZE}.npy')
    if not os.path.exists(path):
        np.save(path, np.random.RandomState(config.SEED).randint(
            0, 256, (count, config.IMAGE_SIZE, config.IMAGE_SIZE, 3)).astype(np.uint8))
    return data.load_images(path)


class TimedSession:
    """Passes run() on to a session, adds up the time spent inside it and notes when each step ends."""

    def __init__(self, sess, step_ops):
        self.sess, self.step_ops = sess, list(step_ops)
        self.inside, self.step_ends = 0.0, []

    def run(self, fetches, *args, **kwargs):
        start = time.perf_counter()
        out = self.sess.run(fetches, *args, **kwargs)
        end = time.perf_counter()
        self.inside += end - start
        if isinstance(fetches, list) and fetches and any(fetches[0] is op for op in self.step_ops):
            self.step_ends.append(end)
        return out


def epoch_speed(args, ctx, model, sess, phase):
    """Run train.run_epoch, the loop of train.py, and time it.

    Returns (median seconds per step, share of the measured epoch outside
    session.run, share of the cores' time this process was busy).
    """
    batch = config.BATCH_SIZE
    images = training_images(ctx, max(args.steps, args.warmup) * batch)
    interrupt = types.SimpleNamespace(signal=None)
    with settings(OUTPUT_DIR=os.path.join(ctx['tmp'], 'output')):
        os.makedirs(config.OUTPUT_DIR, exist_ok=True)
        log = housekeeping.LossLog(0)
        with contextlib.redirect_stderr(io.StringIO()):  # tqdm's bar
            warmup = train.Run(sess, model, images[:args.warmup * batch], interrupt, log, lambda: None)
            train.run_epoch(warmup, phase, 0, 0)
            timed = TimedSession(sess, model.train_ops.values())
            cpu, start = time.process_time(), time.perf_counter()
            run = train.Run(timed, model, images[:args.steps * batch], interrupt, log, lambda: None)
            train.run_epoch(run, phase, 1, 0)
            cpu, end = time.process_time() - cpu, time.perf_counter()
        log.writer.close()
    step = float(np.median(np.diff([start] + timed.step_ends)))
    return step, 1.0 - timed.inside / (end - start), cpu / (end - start) / os.cpu_count()


def speed(args, ctx, phase, adversarial=None):
    """What epoch_speed returns for a phase, measured once per setting."""
    adversarial = config.ADVERSARIAL_G if adversarial is None else adversarial
    key = (phase, adversarial)
    if key not in ctx['speed']:
        if adversarial == config.ADVERSARIAL_G:
            model, sess = main_model(ctx)
            progress(f'timing phase {phase}')
            ctx['speed'][key] = epoch_speed(args, ctx, model, sess, phase)
        else:
            progress(f'timing phase {phase} with ADVERSARIAL_G={adversarial}')
            with settings(ADVERSARIAL_G=adversarial):
                model, sess = build_model()
                ctx['speed'][key] = epoch_speed(args, ctx, model, sess, phase)
            sess.close()
    return ctx['speed'][key]


def need(args, ctx, section):
    """Run a section whose numbers another one uses, unless it ran already."""
    if section not in ctx['done']:
        ctx['done'][section] = RUNNERS[section](args, ctx)


def training(args, ctx):
    need(args, ctx, 'ceiling')
    need(args, ctx, 'flops')
    batch, rows = config.BATCH_SIZE, []
    steps = int(round(config.NUM_IMAGES * config.TRAIN_RATIO)) // batch  # as to_npy.py splits
    for phase, name in ((1, 'completion'), (2, 'discriminator'), (3, 'joint')):
        seconds, outside, busy = speed(args, ctx, phase)
        ips = batch / seconds
        mfu = 100 * ctx['step_flops'][phase] * ips / ctx['ceiling']
        rows += [Row(3, f'train.ips.{phase}', f'phase {phase} ({name}) training step', ips, 'images/s',
                     f'{seconds:.3f} s per step of {batch}; train.run_epoch'),
                 Row(3, f'train.epoch.{phase}', f'phase {phase} epoch of NUM_IMAGES={config.NUM_IMAGES}',
                     steps * seconds / 60, 'min', f'{steps} steps; the save and samples after it not included'),
                 Row(3, f'train.mfu.{phase}', f'phase {phase} model-FLOPs utilisation', mfu, '%',
                     f'{ctx["step_flops"][phase] / 1e9:.1f} GFLOP/image x {ips:.2f} images/s / '
                     f'{ctx["ceiling"] / 1e9:.0f} GFLOP/s'),
                 Row(3, f'train.busy.{phase}', f'phase {phase}: CPU cores busy during the steps', 100 * busy,
                     '%', f'process CPU time / (wall time x {os.cpu_count()} cores); low means idle cores'),
                 Row(5, f'outside.{phase}', f'phase {phase}: time outside session.run', 100 * outside, '%',
                     f'batch gather + flip, holes, loss checks, tqdm, log every LOG_EVERY={config.LOG_EVERY} '
                     f'(here once per {args.steps} steps)')]
    return rows + dilation_paths(args, ctx)


def dilation_paths(args, ctx):
    """A phase-1 step on each way of differentiating the dilated convolutions (layer.dilated_conv)."""
    rows, usable = [], layer.dilation_path(config.PRECISION)
    for path in layer.DILATION_PATHS:
        note = 'the path train.py takes here' if path == usable else 'forced'
        if path == usable:
            seconds = speed(args, ctx, 1)[0]
        elif path == 'native' and layer.DILATION_PATHS.index(usable) > 0:
            rows.append(Row(3, 'train.path.native', 'phase-1 step, dilated convolutions native', None, 's',
                            f'no native {config.PRECISION} gradient in this TensorFlow on this device'))
            continue
        else:
            progress(f'timing phase 1 with dilated convolutions {path}')
            with mock.patch.object(layer, 'dilation_path', lambda dtype='float32': path):
                model, sess = build_model()
            seconds = epoch_speed(args, ctx, model, sess, 1)[0]
            sess.close()
        rows.append(Row(3, f'train.path.{path}', f'phase-1 step, dilated convolutions {path}', seconds, 's',
                        f'{config.BATCH_SIZE / seconds:.2f} images/s; {note}'))
    return rows


def crop(images, corners, size):
    """Local patches cut in numpy, as the common TF1 code does between its two runs."""
    return np.stack([image[y:y + size, x:x + size] for image, (y, x) in zip(images, corners)])


def two_run_seconds(args, ctx):
    """Median seconds per joint step written the common TF1 way.

    One session.run for the completion, numpy crops, then a second run with the
    discriminator fed the completion through placeholders and both updates. The
    feed cuts the path from D back to G, so like that code G learns from the
    mse only: the same maths as ours with ADVERSARIAL_G=False.
    """
    size, local, batch = config.IMAGE_SIZE, config.LOCAL_SIZE, config.BATCH_SIZE

    def bce(logits, label):
        return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(
            labels=tf.fill(tf.shape(logits), label), logits=logits))

    with tf.Graph().as_default():
        x = tf1.placeholder(tf.float32, [None, size, size, 3], 'x')
        masks = tf1.placeholder(tf.float32, [None, size, size, 1], 'masks')
        mean_pixel = tf.zeros([3])  # what graphs.Training holds before train.py sets it
        stats = []  # batch norms' (moving average, batch value) pairs
        raw = network.generator(network.generator_input(x, masks, mean_pixel), training=True, stats=stats)
        completion = raw * masks + x * (1.0 - masks)
        mse = tf.reduce_mean(masks * tf.square(completion - x))
        real_patch = tf1.placeholder(tf.float32, [None, local, local, 3], 'real_patch')
        fake = tf1.placeholder(tf.float32, [None, size, size, 3], 'fake')
        fake_patch = tf1.placeholder(tf.float32, [None, local, local, 3], 'fake_patch')
        d_loss = config.ALPHA * (bce(network.discriminator(x, real_patch, stats), 1.0)
                                 + bce(network.discriminator(fake, fake_patch, stats), 0.0))
        g_step = tf1.train.AdamOptimizer(config.LEARNING_RATE, config.BETA1).minimize(
            mse, var_list=tf1.trainable_variables('generator'))
        d_step = tf1.train.AdamOptimizer(config.LEARNING_RATE, config.BETA1).minimize(
            d_loss, var_list=tf1.trainable_variables('discriminator'))
        step = tf.group(g_step, d_step, *layer.moving_average_updates(stats, config.BN_DECAY))
        sess = replicas.make_session()
        sess.run(tf1.global_variables_initializer())
    images = training_images(ctx, max(args.steps, args.warmup) * batch)
    order = iter(range(10 ** 9))

    def one_step():
        i = next(order) % (len(images) // batch)
        rng = np.random.RandomState([config.SEED, i])
        batch_x = data.to_float(data.batch(images, np.arange(i * batch, (i + 1) * batch), rng))
        batch_masks, corners = data.sample_holes(rng, batch)
        filled = sess.run(completion, {x: batch_x, masks: batch_masks})
        sess.run([step, mse, d_loss], {x: batch_x, masks: batch_masks, fake: filled,
                                       real_patch: crop(batch_x, corners, local),
                                       fake_patch: crop(filled, corners, local)})

    seconds = median_seconds(one_step, args.steps, args.warmup)
    sess.close()
    return seconds


def tf1_way(args, ctx):
    batch = config.BATCH_SIZE
    ours = speed(args, ctx, 3, adversarial=False)[0]
    ours_adv = speed(args, ctx, 3, adversarial=True)[0]
    progress('timing the two-run TF1 joint step')
    theirs = two_run_seconds(args, ctx)
    return [Row(4, 'tf1.theirs', 'joint step, common TF1 way (2 runs, numpy crops)', batch / theirs,
                'images/s', f'{theirs:.3f} s per step; G learns from the mse only'),
            Row(4, 'tf1.ours', 'joint step, ours, ADVERSARIAL_G=False (same maths)', batch / ours,
                'images/s', f'{ours:.3f} s per step; one session.run'),
            Row(4, 'tf1.ours_adv', 'joint step, ours, ADVERSARIAL_G=True (paper)', batch / ours_adv,
                'images/s', f'{ours_adv:.3f} s per step; G also gets the adversarial gradient'),
            Row(4, 'tf1.ratio', 'speed ours / TF1 way, same maths', theirs / ours, 'x'),
            Row(4, 'tf1.ratio_adv', 'speed ours with adversarial term / TF1 way', theirs / ours_adv, 'x')]


# ---------------------------------------------------------------- 6: infer
def completion_speed(args, precision):
    """Rows of graphs.Inference().complete at three sizes; op times of one traced 1-image run."""
    size, batch, rows = config.IMAGE_SIZE, config.BATCH_SIZE, []
    model, sess = build_model(graphs.Inference, bfloat16=precision == 'bfloat16')
    rng, tag = np.random.RandomState(config.SEED), '' if precision == 'float32' else 'bf16.'
    for key, count, side in (('one', 1, size), ('batch', batch, size), ('large', 1, 4 * size)):
        images, masks, _ = random_batch(rng, count, side)
        seconds = median_seconds(lambda: model.complete(sess, images, masks), args.steps, args.warmup)
        what = f'{count} image{"s" * (count > 1)} {side}x{side}, {precision}'
        rows += [Row(6, f'infer.{tag}{key}.ms', f'inference latency, {what}', 1000 * seconds, 'ms',
                     'graphs.Inference().complete, uint8 in and out'),
                 Row(6, f'infer.{tag}{key}.ips', f'inference throughput, {what}', count / seconds, 'images/s')]
    images, masks, _ = random_batch(rng, 1, size)
    ops = time_by_op(traced_run(sess, model.output, model.feed(images, masks)))
    sess.close()
    return rows, ops


def inference(args, ctx):
    need(args, ctx, 'ceiling')
    size = config.IMAGE_SIZE
    rows, ops = completion_speed(args, 'float32')
    rows += completion_speed(args, 'bfloat16')[0]
    conv, total = sum(micros for kind, micros in ops.items() if 'Conv2D' in kind), sum(ops.values()) or 1
    g_flops, _ = table_flops()
    rows += [Row(6, 'infer.conv_share', 'convolutions\' share of the op time, 1 image, float32',
                 100 * conv / total, '%', f'{conv / 1000:.1f} ms of {total / 1000:.1f} ms in one traced run '
                 f'(op types named *Conv2D*, fused ones included)'),
             Row(6, 'infer.floor.ms', f'float32 floor, 1 image {size}x{size}', 1000 * g_flops / ctx['ceiling'],
                 'ms', f'{g_flops / 1e9:.1f} GFLOP (layer table) at the {ctx["ceiling"] / 1e9:.0f} GFLOP/s '
                 f'of section 1')]
    one, batch = (next(r.value for r in rows if r.key == key) for key in ('infer.one.ms', 'infer.batch.ms'))
    rows.append(Row(6, 'infer.one.ratio', 'one image against a batch\'s time per image, float32',
                    one / (batch / config.BATCH_SIZE), 'x', f'{one:.0f} ms against {batch:.0f} ms / {config.BATCH_SIZE}'))
    model, sess = main_model(ctx)
    images, masks, _ = random_batch(np.random.RandomState(config.SEED), 1, size)
    seconds = median_seconds(lambda: model.complete(sess, images, masks), args.steps, args.warmup)
    rows.append(Row(6, 'infer.full.ms', f'inference latency, 1 image {size}x{size}, whole training graph',
                    1000 * seconds, 'ms', 'graphs.Training(): session.run already runs only what the fetch needs'))
    return rows


# ---------------------------------------------------------------- 7, 11: memory, profile (children)
def child(args):
    """In a fresh process: a few steps of each phase asked for; prints one JSON line for the parent."""
    model, sess = build_model()
    rng = np.random.RandomState(config.SEED)
    feed = model.feed(*random_batch(rng, config.BATCH_SIZE, config.IMAGE_SIZE))
    results = {}
    for phase in args.child_phases:
        for _ in range(args.warmup):
            sess.run(model.train_ops[phase], feed)
        rss = peak_rss()  # before tracing, which keeps its own records
        run_metadata = traced_run(sess, model.train_ops[phase], feed)
        result = {'rss': rss, 'alloc': allocator_peak(run_metadata),
                  'variables': variable_bytes(model.images.graph),
                  'ops': time_by_op(run_metadata).most_common()}
        if args.trace:
            from tensorflow.python.client import timeline
            os.makedirs(args.trace, exist_ok=True)
            with open(os.path.join(args.trace, f'phase{phase}.json'), 'w') as f:
                f.write(timeline.Timeline(run_metadata.step_stats).generate_chrome_trace_format())
        if phase == 3:  # a second batch size gives the memory per image
            small = model.feed(*random_batch(rng, args.small_batch, config.IMAGE_SIZE))
            sess.run(model.train_ops[phase], small)
            result['alloc_small'] = allocator_peak(traced_run(sess, model.train_ops[phase], small))
        results[phase] = result
    print(json.dumps(results))
    return 0


def children(args, ctx):
    """Peak RSS, allocator peak and op times of one step per phase, each phase in a fresh process.

    The peak RSS only grows, so only a process that ran nothing else gives a phase's
    own peak. --quick runs the three phases in one process to save time: its RSS
    rows are then the peak so far.
    """
    if 'children' not in ctx:
        small = max(1, config.BATCH_SIZE // 4)
        groups = [(1, 2, 3)] if args.quick else [(1,), (2,), (3,)]
        progress(f'{len(groups)} child process(es) for peak RSS, allocator peak and trace')
        ctx['children'] = {'small_batch': small}
        for phases in groups:
            out = run_child(child_command(
                'experiments/bench.py', '--child-phases', ','.join(map(str, phases)), '--warmup', str(args.warmup),
                '--small-batch', str(small), *(['--trace', args.trace] if args.trace else [])))
            ctx['children'].update({int(k): v for k, v in json.loads(out.strip().splitlines()[-1]).items()})
    return ctx['children']


def memory(args, ctx):
    runs = children(args, ctx)
    batch, small = config.BATCH_SIZE, runs['small_batch']
    how = (f'VmHWM of a fresh process: graphs.Training built, {args.warmup} warm-up step(s)'
           + (' (--quick: phases in one process, peak so far)' if args.quick else ''))
    rows = [Row(7, f'memory.rss.{phase}', f'peak RSS of a process training phase {phase}, batch {batch}',
                runs[phase]['rss'] / GiB, 'GiB', how) for phase in (1, 2, 3)]
    rows += [Row(7, f'memory.alloc.{phase}', f'TensorFlow allocator peak in one phase-{phase} step',
                 runs[phase]['alloc'] / GiB, 'GiB', 'RunMetadata allocation records replayed; variables '
                 'not included') for phase in (1, 2, 3)]
    variables = runs[3]['variables']
    peak = max(runs[phase]['alloc'] for phase in (1, 2, 3))
    gpu = variables + peak + GPU_RESERVE
    per_image = (runs[3]['alloc'] - runs[3]['alloc_small']) / max(1, batch - small)
    fixed = runs[3]['alloc'] - per_image * batch
    # Op scheduling moves the peak a little; at tiny sizes that can hide the per-image part.
    fits = int((GPU_BYTES - GPU_RESERVE - variables - fixed) // per_image) if per_image > 0 else None
    rows += [Row(7, 'memory.variables', 'variables: weights, Adam slots, batch-norm statistics',
                 variables / GiB, 'GiB'),
             Row(7, 'memory.gpu', f'estimated GPU memory at BATCH_SIZE={batch}', gpu / GiB, 'GiB',
                 f'variables + largest step peak + {GPU_RESERVE / GiB:.1f} GiB CUDA/cuDNN reserve; '
                 f'allocator fragmentation not included'),
             Row(7, 'memory.max_batch', f'largest batch in {GPU_BYTES // GiB} GiB (estimate)', fits, 'images',
                 f'phase 3 at batch {small} and {batch}: {per_image / 2**20:.0f} MiB per image + '
                 f'{fixed / 2**20:.0f} MiB fixed' + ('' if fits else '; per-image part not measurable here'))]
    return rows


def profile(args, ctx):
    runs, rows = children(args, ctx), []
    for phase in (1, 2, 3):
        ops = runs[phase]['ops']
        total = sum(micros for _, micros in ops) or 1
        for rank, (kind, micros) in enumerate(ops[:args.top], 1):
            rows.append(Row(11, f'profile.{phase}.{rank}', f'phase {phase} step, op type #{rank}: {kind}',
                            100 * micros / total, '%', f'{micros / 1000:.0f} ms of {total / 1000:.0f} ms '
                            f'op time (ops of a step overlap)' if rank == 1 else ''))
    return rows


# ---------------------------------------------------------------- 8: scale
def step_profile(args, model, sess, batch, size):
    """(median seconds per phase-1 session.run, allocator peak bytes) at a batch size."""
    feed = model.feed(*random_batch(np.random.RandomState(config.SEED), batch, size))
    for _ in range(args.warmup - 1):
        sess.run(model.train_ops[1], feed)
    peak = allocator_peak(traced_run(sess, model.train_ops[1], feed))  # the last warm-up step
    return median_seconds(lambda: sess.run(model.train_ops[1], feed), args.steps, 0), peak


def scaling(args, ctx):
    size, batch = config.IMAGE_SIZE, config.BATCH_SIZE
    batches = sorted({1, max(1, batch // 4), batch, 2 * batch})
    sizes = sorted({max(config.LOCAL_SIZE, size // 8 * 4), size, 2 * size})
    model, sess = main_model(ctx)
    results = {}
    for b in batches:  # the placeholders take any batch size: one graph
        progress(f'phase-1 step at batch {b}, {size}x{size}')
        results[b, size] = step_profile(args, model, sess, b, size)
    for s in sizes:
        if (batch, s) not in results:
            progress(f'phase-1 step at batch {batch}, {s}x{s}')
            with settings(IMAGE_SIZE=s):
                other, other_sess = build_model()
                results[batch, s] = step_profile(args, other, other_sess, batch, s)
            other_sess.close()
    base_seconds, base_peak = results[batch, size]
    rows = []
    for (b, s), (seconds, peak) in sorted(results.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        work = b * s * s / (batch * size * size)
        rows += [Row(8, f'scale.time.{b}.{s}', f'phase-1 step, batch {b}, {s}x{s}', seconds, 's',
                     f'{work:.3g} x the work of batch {batch} at {size}: {seconds / base_seconds / work:.2f} '
                     f'x linear time'),
                 Row(8, f'scale.memory.{b}.{s}', f'allocator peak, batch {b}, {s}x{s}', peak / 2**20, 'MiB',
                     f'{peak / base_peak / work:.2f} x linear memory')]
    return rows


# ---------------------------------------------------------------- 9, 10: to_npy, startup
def to_npy_speed(args, ctx):
    count = TO_NPY_IMAGES if not args.quick else 100
    label = f'python to_npy.py on {count} photos, end to end'
    if not os.path.isdir(args.faces):
        return [Row(9, 'to_npy.ips', label, None, 'images/s', f'skipped: no folder {args.faces}')]
    out = os.path.join(ctx['tmp'], 'faces_npy')
    progress(f'to_npy.py on {args.faces}')
    start = time.perf_counter()
    run_child(child_command('to_npy.py', '--src', args.faces, NUM_IMAGES=count, NPY_DIR=out))
    seconds = time.perf_counter() - start
    with open(os.path.join(out, 'meta.json')) as f:
        meta = json.load(f)
    done = meta['train'] + meta['test']
    return [Row(9, 'to_npy.ips', label, done / seconds, 'images/s',
                f'{done} images in {seconds:.1f} s with {os.cpu_count()} worker processes, '
                f'process start included; {os.path.relpath(args.faces, ROOT)}')]


def startup(args, ctx):
    """Seconds from starting python train.py to the end of its first step.

    The child writes its tqdm bar to stderr; with LOG_EVERY=1 the bar gets the
    'img/s=' postfix right after step 1, which is what we wait for.
    """
    root = tempfile.mkdtemp(dir=ctx['tmp'])
    paths = {k: os.path.join(root, k.lower()) for k in ('NPY_DIR', 'BACKUP_DIR', 'OUTPUT_DIR')}
    demo = DEMO_IMAGES if not args.quick else 4 * config.BATCH_SIZE
    run_child(child_command('to_npy.py', '--demo', str(demo), **paths))
    progress('timing python train.py to its first step')
    command = child_command('train.py', LOG_EVERY=1, **paths)
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    killer = threading.Timer(TIMEOUT, proc.kill)
    killer.start()
    seen, seconds = b'', None
    try:
        while True:
            chunk = proc.stderr.read1(4096)
            if not chunk:
                break
            seen += chunk
            if b'img/s=' in seen:
                seconds = time.perf_counter() - start
                break
    finally:
        killer.cancel()
        proc.kill()  # our own child, on throw-away data
        proc.wait()
        proc.stderr.close()
    label = 'python train.py to its first finished step'
    if seconds is None:
        last = (seen.decode(errors='replace').strip().splitlines() or ['no output'])[-1]
        return [Row(10, 'startup.seconds', label, None, 's', f'failed: {last[:200]}')]
    return [Row(10, 'startup.seconds', label, seconds, 's',
                f'{demo} synthetic faces (to_npy.py --demo, not timed); imports, graph, init, mean pixel, '
                f'step 1')]


def replica_speed(args, ctx):
    """Phases 1 and 3 with the batch split between 2 CPU devices, against section 3's one device.

    On 2 cores no speed-up is possible: the row shows what the split and the all-reduce cost.
    """
    with settings(REPLICAS=2):
        parallel = replicas.Replicas()
        progress('building graphs.Training on 2 CPU devices')
        with tf.Graph().as_default():
            tf1.set_random_seed(config.SEED)
            with parallel.scope():
                model = graphs.Training()
            sess = parallel.session()
            sess.run(tf1.global_variables_initializer())
        rows = []
        for phase in (1, 3):
            one = config.BATCH_SIZE / speed(args, ctx, phase)[0]
            progress(f'timing phase {phase} on 2 CPU devices')
            two = config.BATCH_SIZE / epoch_speed(args, ctx, model, sess, phase)[0]
            rows.append(Row(12, f'replicas.ips.{phase}', f'phase {phase} on 2 CPU devices (REPLICAS=2)', two,
                            'images/s', f'{100 * two / one:.0f} % of one device ({one:.2f} images/s, row 3); '
                            f'{config.BATCH_SIZE // 2} images per device per step'))
        sess.close()
    return rows


# ---------------------------------------------------------------- 13: precision
def one_precision(args, ctx, batch, small):
    """Training at config.PRECISION: images/s per phase at `batch`, the allocator peak of a
    phase-3 step at `batch` and `small` (none if small is None), and the variables' bytes."""
    rng = np.random.RandomState(config.SEED)
    with settings(BATCH_SIZE=batch):
        model, sess = build_model()
        ips = {phase: batch / epoch_speed(args, ctx, model, sess, phase)[0] for phase in (1, 2, 3)}
        peaks = {}
        for n in (batch, small) if small else ():
            feed = model.feed(*random_batch(rng, n, config.IMAGE_SIZE))
            sess.run(model.train_ops[3], feed)
            peaks[n] = allocator_peak(traced_run(sess, model.train_ops[3], feed))
        variables = variable_bytes(model.images.graph)
        sess.close()
    return {'ips': ips, 'peaks': peaks, 'variables': variables}


def precision_speed(args, ctx):
    """Each PRECISION's training speed per phase against float32, and its phase-3 memory.

    The allocator peak counts activations in the precision's own bytes, as a GPU holds them;
    cuDNN's workspaces differ from the CPU kernels', so the batch that fits is an estimate.
    """
    rows, base = [], {}
    on_gpu = bool(tf.config.list_physical_devices('GPU'))
    for precision in graphs.DTYPES:
        slow = precision == 'float16' and not on_gpu
        if slow:
            # float16 has no fast CPU kernels: oneDNN's float16 convolution gradients took about 6 s
            # for one 32x32 image, and at 128x128 over 27 minutes for one step per phase. This times
            # one step per phase at a quarter of the side and SLOW_BATCH. Its memory is not
            # measured: at that side the per-image part drowns in the fixed one.
            side = max(32, config.IMAGE_SIZE // 4)
            scale = config.IMAGE_SIZE // side
            progress(f'timing PRECISION={precision} at {side}x{side}, batch {SLOW_BATCH}')
            with settings(PRECISION=precision, IMAGE_SIZE=side, LOCAL_SIZE=config.LOCAL_SIZE // scale,
                          HOLE_MIN=config.HOLE_MIN // scale, HOLE_MAX=config.HOLE_MAX // scale):
                result = one_precision(argparse.Namespace(**{**vars(args), 'steps': 1, 'warmup': 1}), ctx,
                                       SLOW_BATCH, None)
            note = f'{side}x{side}, batch {SLOW_BATCH}, one timed step (float16 is slow on a CPU)'
        else:
            batch, small = config.BATCH_SIZE, max(1, config.BATCH_SIZE // 4)
            progress(f'timing PRECISION={precision} at batch {batch}')
            with settings(PRECISION=precision):
                result = one_precision(args, ctx, batch, small)
            note = None
        for phase, ips in result['ips'].items():
            base.setdefault(phase, ips)  # float32 comes first
            rows.append(Row(13, f'precision.ips.{precision}.{phase}', f'phase {phase} step, {precision}', ips,
                            'images/s', note or f'{ips / base[phase]:.2f} x float32'))
        if slow:
            why = 'not measured on a CPU (too slow at full size); on a GPU it holds bfloat16\'s two-byte tensors'
            rows += [Row(13, f'precision.alloc.{precision}', f'allocator peak of a phase-3 step, batch '
                         f'{config.BATCH_SIZE}, {precision}', None, 'GiB', why),
                     Row(13, f'precision.max_batch.{precision}', f'largest batch in {GPU_BYTES // GiB} GiB, '
                         f'{precision} (estimate)', None, 'images', why)]
            continue
        peaks, variables = result['peaks'], result['variables']
        per_image = (peaks[batch] - peaks[small]) / max(1, batch - small)
        fixed = peaks[batch] - per_image * batch
        fits = int((GPU_BYTES - GPU_RESERVE - variables - fixed) // per_image) if per_image > 0 else None
        rows += [Row(13, f'precision.alloc.{precision}', f'allocator peak of a phase-3 step, batch {batch}, '
                     f'{precision}', peaks[batch] / GiB, 'GiB', f'{per_image / 2**20:.0f} MiB per image + '
                     f'{fixed / 2**20:.0f} MiB fixed; variables ({variables / 2**20:.0f} MiB, float32) apart'),
                 Row(13, f'precision.max_batch.{precision}', f'largest batch in {GPU_BYTES // GiB} GiB, {precision} '
                     f'(estimate)', fits, 'images', f'6 GiB - {GPU_RESERVE / GiB:.1f} GiB reserve - variables - '
                     f'fixed, / per image')]
    return rows


RUNNERS = {'ceiling': ceiling, 'flops': flops, 'train': training, 'tf1': tf1_way, 'infer': inference,
           'memory': memory, 'scale': scaling, 'to_npy': to_npy_speed, 'startup': startup,
           'profile': profile, 'replicas': replica_speed, 'precision': precision_speed}


# ---------------------------------------------------------------- report
def check_targets(rows):
    """Fill in target and met for the rows the issue sets a target for."""
    for row in rows:
        if row.key in TARGETS and row.value is not None:
            op, bound = TARGETS[row.key]
            row.target = f'{op} {bound:.3g}' + (f' ({bound * GiB / 1e9:g} GB)' if row.unit == 'GiB' else '')
            row.met = {'>=': row.value >= bound, '<=': row.value <= bound, '<': row.value < bound}[op]


def number(value):
    if value is None:
        return 'n/a'
    if abs(value) >= 100:
        return f'{value:,.0f}'
    return f'{value:.1f}' if abs(value) >= 10 else f'{value:.3g}'


def table(rows):
    lines = ['| # | measurement | value | unit | target | met | how / note |',
             '|---|---|---:|---|---|---|---|']
    for r in rows:
        met = '' if r.met is None else ('yes' if r.met else '**no**')
        lines.append(f'| {r.item} | {r.label} | {number(r.value)} | {r.unit} | {r.target} | {met} '
                     f'| {r.note} |')
    return '\n'.join(lines)


def machine():
    """CPU model, cores, TensorFlow, date and load, for the header of the table."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        with open('/proc/cpuinfo') as f:
            fields = dict(line.split(':', 1) for line in f.read().split('\n\n')[0].splitlines() if ':' in line)
        fields = {k.strip(): v.strip() for k, v in fields.items()}
        flags = fields.get('flags', '').split()
        vector = ', '.join(name if flag in flags else f'no {name}' for name, flag in VECTOR_FEATURES)
        cpu = (f'{fields.get("model name", cpu)} (family {fields.get("cpu family", "?")}, '
               f'model {fields.get("model", "?")}, {vector})')
    return {'cpu': cpu, 'cores': os.cpu_count(), 'device': replicas.device_name(),
            'tensorflow': tf.__version__, 'python': platform.python_version(),
            'date': datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC'),
            'load': os.getloadavg()[0]}


def cpu_seconds():
    """(CPU seconds all processes have used, CPU seconds this process and its children have used)."""
    own = sum(getattr(resource.getrusage(who), f) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
              for f in ('ru_utime', 'ru_stime'))
    try:
        with open('/proc/stat') as f:
            user, nice, system, _idle, _iowait, irq, softirq = map(int, f.readline().split()[1:8])
    except (OSError, ValueError):
        return None, own
    return (user + nice + system + irq + softirq) / os.sysconf('SC_CLK_TCK'), own


def report(rows, argv, info, seconds, others, quick):
    """The markdown the run prints: how, where and when it ran, then the table.

    others: share of the cores other processes used during the run (None if unknown).
    """
    busy = info['load'] > 0.5 if others is None else others > 0.05  # the load lags behind
    head = [f'Command: `{" ".join(["python experiments/bench.py", *argv])}`',
            f'Machine: {info["cpu"]}, {info["cores"]} cores; device {info["device"]}',
            f'TensorFlow {info["tensorflow"]}, Python {info["python"]}; {info["date"]}; '
            f'run took {seconds / 60:.1f} min',
            f'Sizes: {config.IMAGE_SIZE}x{config.IMAGE_SIZE}, local {config.LOCAL_SIZE}, '
            f'BATCH_SIZE={config.BATCH_SIZE}; medians of the timed steps after warm-up',
            f'Load average at start {info["load"]:.2f}; other processes used '
            + ('an unknown share' if others is None else f'{100 * others:.0f} %') + ' of the cores during the run'
            + (': BUSY MACHINE, timings are distorted (preliminary)' if busy else ': quiet machine')]
    if quick:
        head.append('QUICK MODE: tiny sizes and widths (WIDTH=8), 2 steps; the numbers only show that every row works')
    return '\n'.join(f'- {line}' for line in head) + '\n\n' + table(rows) + '\n'


def parse_args(argv):
    """Apply config overrides (and --quick's tiny sizes); returns the other options."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--quick', action='store_true', help="tiny sizes and widths, 2 steps (a smoke test)")
    parser.add_argument('--steps', type=int, default=None, help='timed steps per measurement (default 5)')
    parser.add_argument('--warmup', type=int, default=None, help='untimed steps first (default 2)')
    parser.add_argument('--only', default=','.join(SECTIONS),
                        help=f'sections, comma-separated: {",".join(SECTIONS)}')
    parser.add_argument('--faces', default=os.path.join(ROOT, '..', 'shared', 'faces'),
                        help='photos for the to_npy.py section (default ../shared/faces)')
    parser.add_argument('--top', type=int, default=5, help='op types per phase in the profile section')
    parser.add_argument('--trace', default=None, help='write a Chrome trace of one step per phase here')
    parser.add_argument('--out', default=None, help='also write the table with the machine details here')
    parser.add_argument('--child-phases', type=lambda text: [int(p) for p in text.split(',')],
                        help=argparse.SUPPRESS)  # run as a child process of section 7
    parser.add_argument('--small-batch', type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args(config.parse_overrides(argv))
    if args.quick:  # tiny sizes, except the keys given on the command line
        given = {arg[2:].partition('=')[0] for arg in argv}
        config.set_values({k: v for k, v in QUICK.items() if k not in given})
    args.steps = args.steps or (2 if args.quick else 5)
    args.warmup = args.warmup or (1 if args.quick else 2)
    if args.steps < 1 or args.warmup < 1:
        raise errors.UserError('--steps and --warmup must be >= 1')
    args.sections = [s.strip() for s in args.only.split(',') if s.strip()]
    unknown = sorted(set(args.sections) - set(SECTIONS))
    if unknown:
        raise errors.UserError(f'--only {unknown[0]}: unknown section; choose from {", ".join(SECTIONS)}')
    return args


def measure(args):
    """Run the chosen sections; returns their rows in table order, targets checked."""
    rows = []
    with tempfile.TemporaryDirectory(prefix='glcic-bench-') as tmp:
        ctx = {'tmp': tmp, 'speed': {}, 'done': {}}
        try:
            for section in SECTIONS:
                if section in args.sections:
                    start = time.perf_counter()
                    progress(f'section {section}')
                    need(args, ctx, section)
                    rows += ctx['done'][section]
                    progress(f'section {section} done in {time.perf_counter() - start:.0f} s')
        finally:
            if 'model' in ctx:
                ctx['model'][1].close()
    rows.sort(key=lambda r: r.item)
    check_targets(rows)
    return rows


def main(argv):
    args = parse_args(argv)
    if args.child_phases:
        return child(args)
    info, start, (cpu_all, cpu_own) = machine(), time.perf_counter(), cpu_seconds()
    rows = measure(args)
    seconds, (cpu_all_end, cpu_own_end) = time.perf_counter() - start, cpu_seconds()
    others = (None if cpu_all is None else
              max(0.0, (cpu_all_end - cpu_all) - (cpu_own_end - cpu_own)) / (seconds * os.cpu_count()))
    text = report(rows, argv, info, seconds, others, args.quick)
    print(text)
    if args.out:
        with open(args.out, 'w') as f:
            f.write(text)
    return 0


if __name__ == '__main__':
    cli.run(main)
