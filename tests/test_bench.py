"""bench.py in --quick mode: every section gives its rows, with sane numbers."""
import math
import os
import sys

import cv2
import pytest
import tensorflow as tf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, 'experiments'))

import bench  # noqa: E402
import config  # noqa: E402
import layer  # noqa: E402
from glcic import replicas, synthetic  # noqa: E402

PER_PHASE = ['flops.step.{}', 'train.ips.{}', 'train.epoch.{}', 'train.mfu.{}', 'train.busy.{}',
             'outside.{}', 'memory.rss.{}', 'memory.alloc.{}', 'profile.{}.1']
SINGLE = ['ceiling.matmul', 'ceiling.conv', 'flops.g', 'flops.d',
          'tf1.theirs', 'tf1.ours', 'tf1.ours_adv', 'tf1.ratio', 'tf1.ratio_adv',
          'infer.one.ms', 'infer.one.ips', 'infer.batch.ms', 'infer.batch.ips',
          'infer.large.ms', 'infer.large.ips',
          'memory.variables', 'memory.gpu', 'memory.max_batch', 'to_npy.ips', 'startup.seconds',
          'replicas.ips.1', 'replicas.ips.3',
          'train.path.native', 'train.path.custom-gradient', 'train.path.space-to-batch', 'infer.one.ratio'] + [
          f'precision.{kind}.{p}' for kind in ('alloc', 'max_batch') for p in ('float32', 'float16', 'bfloat16')] + [
          f'precision.ips.{p}.{phase}' for p in ('float32', 'float16', 'bfloat16') for phase in (1, 2, 3)]


@pytest.fixture
def restore_config():
    saved = config.as_dict()
    yield
    config.set_values(saved)


@pytest.fixture
def faces(tmp_path):
    """A few 200x200 JPEGs, like ../shared/faces."""
    folder = tmp_path / 'faces'
    folder.mkdir()
    for i, face in enumerate(synthetic.faces(12, 200, seed=1)):
        cv2.imwrite(str(folder / f'face_{i:02d}.jpg'), face[:, :, ::-1])
    return folder


@pytest.mark.slow
def test_quick_run_has_every_row_with_sane_numbers(restore_config, faces, tmp_path):
    args = bench.parse_args(['--quick', '--faces', str(faces)])
    assert (config.IMAGE_SIZE, config.BATCH_SIZE) == (32, 2)
    rows = bench.measure(args)
    by_key = {r.key: r for r in rows}
    assert len(by_key) == len(rows), 'keys are unique'
    expected = SINGLE + [k.format(p) for k in PER_PHASE for p in (1, 2, 3)]
    missing = [k for k in expected if k not in by_key]
    assert not missing
    # scaling: batches 1, 2, 4 at 32x32 and sides 16, 64 at batch 2, each timed and sized
    for kind in ('time', 'memory'):
        assert sorted(k for k in by_key if k.startswith(f'scale.{kind}.')) == sorted(
            f'scale.{kind}.{b}.{s}' for b, s in ((1, 32), (2, 32), (4, 32), (2, 16), (2, 64)))
    assert [r.item for r in rows] == sorted(r.item for r in rows)
    assert {r.item for r in rows} == set(range(1, 14))

    for row in rows:
        if row.key == 'memory.max_batch' or row.key.startswith('precision.max_batch.'):  # may be unmeasurable at tiny sizes
            assert row.value is None or row.value >= 1
            continue
        if row.key == 'precision.alloc.float16' and not tf.config.list_physical_devices('GPU'):  # too slow on a CPU
            assert row.value is None
            continue
        if row.key == 'train.path.native' and layer.dilation_path(config.PRECISION) != 'native':  # none to time
            assert row.value is None
            continue
        assert row.value is not None and math.isfinite(row.value), row
        assert row.value >= 0, row
        if not row.key.startswith(('outside.', 'profile.')):
            assert row.value > 0, row

    g_table, d_table = bench.table_flops()
    native = layer.dilation_path(config.PRECISION) != 'space-to-batch'  # custom-gradient runs the same convs
    if native:
        assert by_key['flops.g'].value * 1e9 == pytest.approx(g_table, rel=0.01)
    else:  # space-to-batch (oneDNN off on a CPU) pads an 8x8 map into blocks at rate 16: more work
        assert g_table < by_key['flops.g'].value * 1e9 < 1.5 * g_table
    assert by_key['flops.d'].value * 1e9 == pytest.approx(d_table, rel=0.01)
    # a training step is forward + backward: about 3x the generator's forward pass (by
    # space-to-batch the profiler counts 8x at 32x32)
    assert 2.5 < by_key['flops.step.1'].value / by_key['flops.g'].value < (3.2 if native else 10)
    assert by_key['flops.step.3'].value > by_key['flops.step.1'].value
    for phase in (1, 2, 3):
        assert by_key[f'outside.{phase}'].value < 100
        assert by_key[f'memory.rss.{phase}'].value < 8  # GiB
    assert by_key['memory.gpu'].value > by_key['memory.variables'].value
    assert by_key['startup.seconds'].value < 120
    assert 'skipped' not in by_key['to_npy.ips'].note

    for key in bench.TARGETS:
        assert by_key[key].target and by_key[key].met in (True, False), key
    text = bench.table(rows)
    assert len(text.splitlines()) == len(rows) + 2
    for row in rows:
        assert row.label in text


def test_main_skips_to_npy_without_photos_and_writes_the_table(restore_config, tmp_path, capsys):
    out = tmp_path / 'bench.md'
    assert bench.main(['--quick', '--only', 'to_npy', '--faces', str(tmp_path / 'none'),
                       '--out', str(out)]) == 0
    text = out.read_text()
    assert text == capsys.readouterr().out.rstrip('\n') + '\n'
    assert 'Command: `python experiments/bench.py --quick --only to_npy' in text
    assert 'TensorFlow ' in text and 'cores' in text
    assert 'skipped: no folder' in text and '| 9 |' in text


def test_unknown_section_is_one_line_error(restore_config):
    with pytest.raises(bench.errors.UserError, match='unknown section'):
        bench.parse_args(['--only', 'speed'])
