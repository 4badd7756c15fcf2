"""research/class_prior.py: the three read-outs (argmax, distribution
alignment, best per-class shift) on hand-made probabilities, the shift
grid, and means over hand-made run folders."""
import json
import os
import os.path as osp

import numpy as np
import pytest


@pytest.fixture(scope='module')
def prior(load_script):
    return load_script('research/class_prior.py')


# true classes 0, 0, 1, 2, 2; class 2 (normal) is always scored second to
# class 0 (benign) but higher than on the other images: a prior error
GT = np.array([0, 0, 1, 2, 2])
P = np.array([[0.80, 0.10, 0.10],
              [0.70, 0.20, 0.10],
              [0.20, 0.70, 0.10],
              [0.55, 0.05, 0.40],
              [0.50, 0.05, 0.45]])


def test_shift_grid(prior):
    assert prior.shift_grid(1.0, 0.5) == [0.0, -0.5, 0.5, -1.0, 1.0]


def test_readouts_by_hand(prior):
    out = prior.readouts(P, GT, prior.shift_grid(2.0, 0.25))
    # argmax: both normal images called benign
    assert out['raw.accuracy'] == pytest.approx(60.0)
    assert (out['raw.recall.0'], out['raw.recall.1'],
            out['raw.recall.2']) == (100.0, 100.0, 0.0)
    # alignment to shares (.4, .2, .4): mean p (.55, .22, .23); normal is
    # scaled by .4/.23, benign by .4/.55 -> images 3 and 4 become normal,
    # benign images stay benign
    assert out['aligned.accuracy'] == pytest.approx(100.0)
    assert out['aligned.recall.2'] == 100.0
    # a shift of log(.55/.40) < s on class 2 fixes both: 100%
    assert out['best_shift.accuracy'] == pytest.approx(100.0)
    # features that cannot separate: identical probabilities for a benign
    # and a normal image -> no shift gets both right
    same = np.array([[0.6, 0.1, 0.3], [0.6, 0.1, 0.3]])
    flat = prior.readouts(same, np.array([0, 2]), prior.shift_grid(2, 0.5))
    assert flat['best_shift.accuracy'] == pytest.approx(50.0)
    # no shift is preferred on a tie (the grid starts at 0)
    assert flat['best_shift.recall.0'] == 100.0
    with pytest.raises(ValueError, match='no images'):
        prior.readouts(P[:0], GT[:0], [0.0])


def test_means_over_seeds_and_report(prior, tmp_path):
    root = str(tmp_path / 'study')
    for seed, probs in ((0, P), (1, np.eye(3)[GT] * 0.9 + 0.05)):
        run = osp.join(root, 'speckle', 'runs', 'twin', 'r0.125',
                       f'seed{seed}')
        os.makedirs(run)
        with open(osp.join(run, 'selection_signals_dev.json'), 'w') as f:
            json.dump(dict(gt_label=GT.tolist(),
                           probs=dict(teacher=probs.tolist(),
                                      teacher_flip=probs.tolist(),
                                      student=probs.tolist())), f)
    out = str(tmp_path / 'prior.md')
    assert prior.main(['--out-dir', root, '--styles', 'crowded', 'speckle',
                       '--variants', 'twin', '--seeds', '0', '1', '--out',
                       out]) == 0
    with open(osp.splitext(out)[0] + '.json') as f:
        summary = json.load(f)['summary']
    assert list(summary) == ['speckle']
    m = summary['speckle']['twin']
    assert m['seeds'] == 2
    assert m['raw.accuracy'] == pytest.approx(80.0)
    assert m['raw.recall.2'] == pytest.approx(50.0)
    with open(out) as f:
        md = f.read()
    row = next(line for line in md.splitlines() if 'speckle' in line)
    cells = [c.strip() for c in row.strip('|').split('|')]
    assert cells == ['speckle', 'twin', '80.0 (100 / 100 / 50)',
                     '100.0 (100 / 100 / 100)', '100.0 (100 / 100 / 100)',
                     '2']
    with pytest.raises(SystemExit, match='no run of'):
        prior.main(['--out-dir', root, '--styles', 'crowded', '--variants',
                    'twin', '--seeds', '0', '--out', out])
