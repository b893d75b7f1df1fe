"""experiments/branch_scores.py: checkpoints scored on the same faces and holes, with B - A paired."""
import json
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'experiments'))
import branch_scores  # noqa: E402


def test_each_checkpoint_is_scored_on_the_same_faces_and_paired_with_the_first(trained_run, tmp_path):
    backup = trained_run / 'backup'
    faces = str(trained_run / 'npy' / 'x_train.npy')  # 57 faces: enough for the realism number
    out = tmp_path / 'scores.json'
    assert branch_scores.main([f'--run=A={backup}/pretrained', f'--run=same={backup}/pretrained',
                               f'--run=later={backup}/latest-56', f'--faces=demo={faces}', f'--out={out}']) == 0

    entry = json.loads(out.read_text())['faces']['demo']
    assert entry['count'] == 57 and len(entry['A']['per_image']['hole_psnr']) == 57
    assert entry['same'] == entry['A']  # restoring the same weights again gives the same pixels
    assert entry['same - A'] == {'hole_psnr': 0.0, 'interval': [0.0, 0.0]}
    later = np.array(entry['later']['per_image']['hole_psnr']) - np.array(entry['A']['per_image']['hole_psnr'])
    assert np.any(later != 0)  # the second restore did load other weights
    low, high = entry['later - A']['interval']
    assert abs(entry['later - A']['hole_psnr'] - later.mean()) < 1e-9
    assert low <= later.mean() <= high
    assert entry['OpenCV Telea']['hole_psnr'] != entry['A']['hole_psnr']
    header, rule, row = (tmp_path / 'scores.md').read_text().splitlines()
    assert row.startswith('| demo (57) |') and header.count('|') == rule.count('|') == row.count('|') == 12


def test_a_missing_checkpoint_is_one_line_before_any_scoring(tmp_path):
    from glcic.errors import UserError
    with pytest.raises(UserError, match=r'latest-7\.index is missing'):
        branch_scores.main([f'--run=A={tmp_path}/latest-7', f'--faces=demo={tmp_path}/none.npy', f'--out={tmp_path}/s.json'])
    assert not (tmp_path / 's.json').exists()
