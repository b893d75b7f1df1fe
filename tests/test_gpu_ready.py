"""Every op that train.py and test.py put in their graphs can run on a GPU.

No GPU is needed: TensorFlow's GPU build registers its GPU kernels on any machine, and
get_registered_kernels_for_op lists them with the dtypes each one accepts. An op with no GPU
(or DEFAULT) kernel for its dtypes would be placed on the CPU, with a copy to and from the GPU
around it at every step.
"""
import functools
import signal

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.framework import kernels

import train
from glcic import inference, replicas

GPU_DEVICES = ('GPU', 'DEFAULT')  # DEFAULT kernels run on any device

# Ops without a GPU kernel for their dtypes that TensorFlow places on the CPU by itself:
# the int32 phase variable's handle (int32 resources live in host memory), string constants
# (checkpoint paths and tensor names for the Saver), and the Saver's own save and restore.
CPU_ONLY = {('VarHandleOp', 'int32'), ('Const', 'string'), ('SaveV2', None), ('RestoreV2', None)}


def gpu_build():
    """True if this TensorFlow registers GPU kernels (tensorflow, not tensorflow-cpu)."""
    return any(k.device_type == 'GPU' for k in kernels.get_registered_kernels_for_op('Conv2D').kernel)


pytestmark = pytest.mark.skipif(
    not gpu_build(), reason='this TensorFlow build registers no GPU kernels (tensorflow-cpu, or a '
    'system without a GPU build); pip install -r requirements-dev.txt on Linux x86_64 brings one')


def attr_types(node_def, name):
    """The dtypes a type or list(type) attr of a node holds."""
    value = node_def.attr[name]
    return list(value.list.type) if value.HasField('list') else [value.type]


@functools.lru_cache(maxsize=None)
def gpu_kernels(op_type):
    """The GPU and DEFAULT kernels registered for an op type (each lookup reads them all)."""
    return [k for k in kernels.get_registered_kernels_for_op(op_type).kernel
            if k.device_type in GPU_DEVICES]


def runs_on_gpu(node_def):
    """True if a GPU or DEFAULT kernel of the node's op type accepts its dtypes."""
    for kernel in gpu_kernels(node_def.op):
        if all(set(attr_types(node_def, c.name)) <= set(c.allowed_values.list.type)
               for c in kernel.constraint):
            return True
    return False


def lacking(graph):
    """{(op type, dtype or None)} of the ops in `graph`, and in the functions it calls (a
    tf.cond's branches), that have no GPU kernel."""
    graph_def = graph.as_graph_def()
    nodes = list(graph_def.node) + [n for f in graph_def.library.function for n in f.node_def]
    missing = set()
    for node_def in nodes:
        if not runs_on_gpu(node_def):
            dtype = tf.dtypes.as_dtype(node_def.attr['dtype'].type).name if 'dtype' in node_def.attr else None
            missing.add((node_def.op, dtype))
    return missing


def op_types(graph):
    """The op types in `graph` and in the functions it calls."""
    graph_def = graph.as_graph_def()
    return {n.op for n in graph_def.node} | {n.op for f in graph_def.library.function for n in f.node_def}


class GraphBuilt(Exception):
    """Raised where train.py would open its session: the graph is complete by then."""


def training_graph(tmp_path, monkeypatch):
    """The graph that train.py's main builds (model, Saver, NaN check) for these settings."""
    npy = tmp_path / 'npy'
    npy.mkdir()
    images = np.random.RandomState(0).randint(0, 256, (16, 32, 32, 3)).astype(np.uint8)
    np.save(npy / 'x_train.npy', images)
    np.save(npy / 'x_test.npy', images[:4])
    graph = tf.Graph()

    def stop():
        raise GraphBuilt

    monkeypatch.setattr(replicas.Replicas, 'session', lambda self: stop())
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with graph.as_default(), pytest.raises(GraphBuilt):
            train.main([f'--NPY_DIR={npy}', f'--BACKUP_DIR={tmp_path}/backup',
                        f'--OUTPUT_DIR={tmp_path}/output'])
    finally:
        for sig, handler in handlers.items():  # train.py's Interrupt replaced them
            signal.signal(sig, handler)
    return graph


@pytest.mark.parametrize('mask_channel, precision', [(True, 'float32'), (False, 'float32'),
                                                     (True, 'float16'), (True, 'bfloat16')])
def test_training_graph_has_a_gpu_kernel_for_every_op(tmp_path, monkeypatch, tiny_config, mask_channel,
                                                      precision):
    tiny_config.set_values({'MASK_CHANNEL': mask_channel, 'PRECISION': precision})
    graph = training_graph(tmp_path, monkeypatch)
    types = op_types(graph)
    assert {'Conv2D', 'ResourceApplyAdam', 'SaveV2', 'IsFinite'} <= types  # model, optimiser, Saver, NaN check
    missing = lacking(graph)
    assert missing <= CPU_ONLY, f'no GPU kernel for {sorted(missing - CPU_ONLY, key=str)}'


def test_inference_graph_has_a_gpu_kernel_for_every_op(tiny_config):
    nets = inference.Networks({}, batch_stats=True)  # test.py's graph and Saver, no checkpoint opened
    assert {'Conv2D', 'RestoreV2'} <= {op.type for op in nets.graph.get_operations()}
    missing = lacking(nets.graph)
    assert missing <= CPU_ONLY, f'no GPU kernel for {sorted(missing - CPU_ONLY, key=str)}'


def test_the_check_sees_a_cpu_only_op():
    """The check itself: an op that has only a CPU kernel is caught."""
    with tf.Graph().as_default() as graph:
        tf.strings.length(tf.constant(['a']))  # StringLength: CPU only
    assert ('StringLength', None) in lacking(graph)
