"""The stop rule (glcic/stopping.py) on simulated phase-3 runs with the realism number's own noise:
it does not stop runs that still improve, and it stops runs that do not."""
import numpy as np

import config
from glcic import realism, stopping

RUNS, EPOCHS = 400, 40


def series(rng, slope):
    """Validation realism per phase-3 epoch: a trend plus the critic's noise at VAL_IMAGES faces
    (realism.REAL_SD_AT_1000 scaled), correlated from epoch to epoch (lag-1 0.5), as training
    drifts; hole PSNR flat within 0.1 dB."""
    sd, rho = realism.REAL_SD_AT_1000 * np.sqrt(1000 / config.VAL_IMAGES), 0.5
    noise = np.zeros(EPOCHS)
    noise[0] = rng.randn() * sd
    for i in range(1, EPOCHS):
        noise[i] = rho * noise[i - 1] + rng.randn() * sd * np.sqrt(1 - rho ** 2)
    return 0.8 - slope * np.arange(EPOCHS) + noise, 20.0 + 0.1 * rng.randn(EPOCHS)


def stops(slope, seed=0):
    rng = np.random.RandomState(seed)
    found = [stopping.first_stop(*series(rng, slope), 20.0, config.STOP_EPOCHS, config.STOP_LOSS)
             for _ in range(RUNS)]
    return np.array([epoch or EPOCHS + 1 for epoch in found])


def test_on_a_stationary_run_it_never_fires_before_epoch_20_and_almost_always_by_30():
    fired = stops(0.0)
    assert np.mean(fired < 20) <= 0.05
    assert np.mean(fired <= 30) >= 0.85


def test_a_run_still_gaining_half_a_hundredth_an_epoch_is_rarely_stopped_by_epoch_30():
    fired = stops(0.005, seed=1)
    assert np.mean(fired < 20) <= 0.05
    assert np.mean(fired <= 30) <= 0.2


def test_train_py_scores_phase_3_on_the_validation_faces_stops_and_keeps_the_best(tmp_path, capsys):
    import to_npy
    from conftest import tiny_args, train_in_process
    from glcic import backup, plots
    to_npy.main(['--demo', '240', *tiny_args(tmp_path, VAL_IMAGES=20)])  # 228 for training: 20 held out
    assert len(np.load(tmp_path / 'npy' / 'x_val.npy')) == 20
    # a gain of 0.9 is out of reach: the rule stops at its first chance, phase-3 epoch 2
    status, printed = train_in_process(tmp_path, capsys, '--VAL_IMAGES=20', '--PRETRAIN_EPOCH=1', '--D_EPOCH=1',
                                       '--MAX_EPOCH=9', '--STOP_EPOCHS=1', '--STOP_LOSS=0.9')
    assert status == 0
    assert '208 training images' in printed and 'until its realism stops improving' in printed
    assert 'stopped: the mean realism of the last 1 epochs' in printed
    rows = plots.read_rows(str(tmp_path / 'output' / 'loss.csv'))
    assert [int(r['phase']) for r in rows] == [1, 2, 3, 3]
    assert [bool(r['val_realism']) for r in rows] == [False, False, True, True]
    assert all(0 <= float(r['val_realism']) <= 1 and 0 < float(r['val_hole_psnr']) < 100 for r in rows[2:])
    best = tmp_path / 'backup' / f'{backup.BEST}.index'
    assert best.exists() and ', the most realistic yet: also best' in printed
