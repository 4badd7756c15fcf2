"""research/image_calibration.py: coverage / precision per threshold on
hand-made per-image records, means over seeds from hand-made run folders
(the record kept in the run is used, not recomputed), and clear errors for
an unfinished run or a record without ``max_score``."""
import json
import os
import os.path as osp

import pytest


@pytest.fixture(scope='module')
def cal(load_script):
    return load_script('research/image_calibration.py')


def image(gt, pred, score, agree=True):
    # class 2 is lesion-free; ``agree``: the mask says the same
    free = pred == 2
    return dict(gt_label=gt, pred_label=pred, max_score=score,
                argmax_lesion_free=free,
                predicts_lesion=free if not agree else not free)


ROWS = [image(0, 0, 0.99), image(1, 2, 0.95, agree=False), image(2, 2, 0.85),
        image(1, 1, 0.6), image(0, 1, 0.4, agree=False)]


def test_calibration_by_hand(cal):
    out = cal.calibration(ROWS, [0.5, 0.9, 0.999])
    assert out['images'] == 5
    # true class 0: rows 0 (right) and 4 (wrong); 1: rows 1 (wrong), 3
    # (right); 2: row 2 (right)
    assert (out['recall.0'], out['recall.1'], out['recall.2']) == \
        pytest.approx((50.0, 50.0, 100.0))
    assert out['accuracy'] == pytest.approx(60.0)
    # >= 0.5: 4 images, 3 right
    assert out['coverage@0.5'] == pytest.approx(80.0)
    assert out['precision@0.5'] == pytest.approx(75.0)
    # >= 0.9: the 0.99 (right) and the 0.95 (wrong) images
    assert out['coverage@0.9'] == pytest.approx(40.0)
    assert out['precision@0.9'] == pytest.approx(50.0)
    # nothing that confident: no precision, not a division by zero
    assert out['coverage@0.999'] == 0.0
    assert out['precision@0.999'] is None
    # the two tasks disagree on rows 1 (wrong) and 4 (wrong)
    assert out['agree_coverage@0.5'] == pytest.approx(60.0)
    assert out['agree_precision@0.5'] == pytest.approx(100.0)
    assert out['agree_coverage@0.9'] == pytest.approx(20.0)
    assert out['agree_precision@0.9'] == pytest.approx(100.0)
    assert out['agree_precision@0.999'] is None
    assert [cal.tasks_agree(r) for r in ROWS] == [
        True, False, True, True, False]
    with pytest.raises(ValueError, match='no images'):
        cal.calibration([], [0.5])


def write_run(root, style, variant, seed, rows, wall_s=1.5):
    run = osp.join(root, style, 'runs', variant, 'r0.125', f'seed{seed}')
    os.makedirs(run)
    with open(osp.join(run, 'false_lesions_dev.json'), 'w') as f:
        json.dump(dict(images=rows, wall_time_s=wall_s), f)
    return run


def test_means_over_seeds_and_report(cal, tmp_path):
    root = str(tmp_path / 'study')
    write_run(root, 'crowded', 'hermes', 0, ROWS)
    # seed 1: every image right and at 0.95
    write_run(root, 'crowded', 'hermes', 1,
              [image(1, 1, 0.95) for _ in range(4)])
    out = str(tmp_path / 'cal.md')
    assert cal.main(['--out-dir', root, '--styles', 'crowded', 'speckle',
                     '--variants', 'hermes', '--seeds', '0', '1', '2',
                     '--thresholds', '0.9', '0.99', '--out', out]) == 0
    with open(osp.splitext(out)[0] + '.json') as f:
        record = json.load(f)
    # what computing the two per-image records took, not this call
    assert record['records_wall_s'] == pytest.approx(3.0)
    assert record['wall_time_s'] > 0
    summary = record['summary']
    assert list(summary) == ['crowded']  # speckle has no run: left out
    m = summary['crowded']['hermes']
    assert m['seeds'] == 2
    assert m['accuracy'] == pytest.approx((60.0 + 100.0) / 2)
    assert m['coverage@0.9'] == pytest.approx((40.0 + 100.0) / 2)
    assert m['precision@0.9'] == pytest.approx((50.0 + 100.0) / 2)
    # seed 1 has nothing at 0.99: the mean is over the seeds that do
    assert m['coverage@0.99'] == pytest.approx(10.0)
    assert m['precision@0.99'] == pytest.approx(100.0)
    with open(out) as f:
        md = f.read()
    row = next(line for line in md.splitlines() if 'crowded' in line)
    cells = [c.strip() for c in row.strip('|').split('|')]
    assert cells == ['crowded', 'hermes', '80.0', '70.0 / 75.0',
                     '10.0 / 100.0', '2']
    # class 1 recall: seed 0 50%, seed 1 100%; class 0 only in seed 0
    assert m['recall.1'] == pytest.approx(75.0)
    assert m['recall.0'] == pytest.approx(50.0)
    assert '| class 0 % | class 1 % | class 2 % |' in md.replace('  ', ' ')


def test_clear_errors(cal, tmp_path):
    root = str(tmp_path / 'study')
    run = osp.join(root, 'crowded', 'runs', 'hermes', 'r0.125', 'seed0')
    os.makedirs(run)
    args = ['--out-dir', root, '--styles', 'crowded', '--variants',
            'hermes', '--seeds', '0', '--out', str(tmp_path / 'c.md')]
    # an interrupted run has a last_checkpoint but no held-out metrics
    with open(osp.join(run, 'last_checkpoint'), 'w') as f:
        f.write(osp.join(run, 'iter_600.pth'))
    with pytest.raises(SystemExit, match='not finished'):
        cal.main(args)
    with open(osp.join(run, 'false_lesions_dev.json'), 'w') as f:
        json.dump(dict(images=[dict(gt_label=0, pred_label=0)]), f)
    with pytest.raises(SystemExit, match="max_score"):
        cal.main(args)
    with pytest.raises(SystemExit, match='no run of'):
        cal.main(args[:2] + ['--styles', 'speckle'] + args[4:])


def test_supervised_runs_get_thresholds_hermes_runs_keep_theirs(cal):
    # false_lesions.py needs thresholds a supervised model does not have;
    # a Hermes model's own thresholds are recorded, so none are passed
    repo = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
    supervised = osp.join(repo, 'configs', 'demo',
                          'supervised_synthetic.py')
    hermes = osp.join(repo, 'configs', 'demo', 'hermes_synthetic.py')
    assert cal.supervised_thresholds(hermes) == []
    tau = str(cal.SUPERVISED_TAU)
    assert cal.supervised_thresholds(supervised) == [
        '--tau-pixel', tau, '--tau-image', tau]
