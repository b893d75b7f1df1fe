"""experiments/shipped_goal.py: the shipped model's goal table from test.py's metrics.json files."""
import json
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'experiments'))
import shipped_goal  # noqa: E402
from glcic.errors import UserError  # noqa: E402


def metrics(path, telea, alone, blended, realism=(0.9, 0.85, 0.8)):
    rows = [{'method': method, 'hole_psnr': psnr, 'realism': real} for method, psnr, real in
            zip(('OpenCV Telea', 'shipped model', 'shipped model + blending'), (telea, alone, blended), realism)]
    path.write_text(json.dumps({'images': 1500, 'rows': [{'method': 'mean-pixel fill', 'hole_psnr': 14.0}, *rows]}))
    return f'{path}'


def test_each_goal_is_judged_against_telea_on_its_own_set(tmp_path, capsys):
    utk = metrics(tmp_path / 'utk.json', 19.6, 21.5, 22.7)  # +1.9 alone: short of 2; +3.1 blended
    celeba = metrics(tmp_path / 'celeba.json', 17.0, 18.1, 20.5, realism=(0.95, 0.96, 0.94))
    assert shipped_goal.main([f'utk={utk}', f'celeba={celeba}', '--out', str(tmp_path / 'goal.md')]) == 0
    header, rule, first, second = (tmp_path / 'goal.md').read_text().splitlines()
    assert first == '| utk (1,500) | +1.90 dB (2: not met) | +3.10 dB (3: met) | 0.850, 0.800, 0.900 (met) |'
    assert second.startswith('| celeba (1,500) | +1.10 dB (1: met) | +3.50 dB (3: met) |')
    assert second.endswith('0.960, 0.940, 0.950 (not met) |')  # the network alone is less real than Telea
    assert capsys.readouterr().out.endswith('not every goal met\n')


def test_a_table_without_the_shipped_model_is_one_line(tmp_path):
    path = tmp_path / 'other.json'
    path.write_text(json.dumps({'images': 50, 'rows': [{'method': 'OpenCV Telea', 'hole_psnr': 19.0}]}))
    with pytest.raises(UserError, match='not a table of test.py --model shipped'):
        shipped_goal.main([f'utk={path}'])
    with pytest.raises(UserError, match='that exists'):
        shipped_goal.main([f'utk={tmp_path}/none.json'])
