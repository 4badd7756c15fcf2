"""research/selection_signals.py: each signal's precision at the coverage
of teacher confidence on hand-made probabilities, means / paired gains /
the gate's verdict over hand-made run folders, the views of a real tiny
Hermes checkpoint (teacher, teacher on the flipped image, student: each
from the right network and input), and clear errors."""
import json
import os
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.runner import Runner


@pytest.fixture(scope='module')
def sig(load_script):
    return load_script('research/selection_signals.py')


# 4 images, 3 classes; true classes 0, 1, 2, 0
GT = np.array([0, 1, 2, 0])
TEACHER = np.array([[0.95, 0.03, 0.02],   # right, confident
                    [0.90, 0.05, 0.05],   # wrong, confident
                    [0.10, 0.05, 0.85],   # right, confident
                    [0.40, 0.55, 0.05]])  # wrong, unsure
FLIP = np.array([[0.90, 0.05, 0.05],      # agrees
                 [0.30, 0.60, 0.10],      # disagrees (and is right)
                 [0.10, 0.10, 0.80],      # agrees
                 [0.70, 0.20, 0.10]])     # disagrees (and is right)
STUDENT = np.array([[0.20, 0.70, 0.10],   # disagrees
                    [0.85, 0.10, 0.05],   # agrees
                    [0.05, 0.05, 0.90],   # agrees
                    [0.30, 0.60, 0.10]])  # agrees
PROBS = dict(teacher=TEACHER, teacher_flip=FLIP, student=STUDENT)


def test_precision_at_the_coverage_of_confidence(sig):
    out = sig.precision_at_coverage(PROBS, GT, 0.8)
    # 3 images have teacher confidence >= 0.8: k = 3
    assert (out['images'], out['k']) == (4, 3)
    assert out['coverage'] == pytest.approx(75.0)
    # confidence keeps images 0, 1, 2: 2 right
    assert out['precision.confidence'] == pytest.approx(200 / 3)
    # margin: 0.92, 0.85, 0.75, 0.15 -> the same images
    assert out['precision.margin'] == pytest.approx(200 / 3)
    # flip agreement ranks images 0 and 2 first, then image 1 (0.90 >
    # 0.55): still 2 of 3 right
    assert out['precision.flip_agree'] == pytest.approx(200 / 3)
    # flip mean: classes 0 (.925), 0 (.60, wrong), 2 (.825), 0 (.55):
    # keeps images 0, 2, 1 -> 2 right; 3 of the 4 classes right overall
    assert out['precision.flip_mean'] == pytest.approx(200 / 3)
    assert out['accuracy.flip_mean'] == pytest.approx(75.0)
    # student agreement: images 1, 2, 3 agree -> kept, 1 of 3 right (the
    # teacher's class is kept)
    assert out['precision.student_agree'] == pytest.approx(100 / 3)
    # all three agree only on image 2; then the most confident others
    # (0: 0.95, 1: 0.90) -> images 2, 0, 1
    assert out['precision.all_agree'] == pytest.approx(200 / 3)
    assert out['accuracy.confidence'] == pytest.approx(50.0)
    # nothing reaches the threshold: no precision, no division by zero
    none = sig.precision_at_coverage(PROBS, GT, 0.99)
    assert none['k'] == 0 and none['precision.confidence'] is None
    with pytest.raises(ValueError, match='no images'):
        sig.precision_at_coverage(
            {v: np.zeros((0, 3)) for v in sig.VIEWS}, GT[:0], 0.8)


def write_run(root, style, variant, seed, probs=PROBS, gt=GT, wall_s=2.0):
    run = osp.join(root, style, 'runs', variant, 'r0.125', f'seed{seed}')
    os.makedirs(run)
    with open(osp.join(run, sig_record()), 'w') as f:
        json.dump(dict(probs={k: v.tolist() for k, v in probs.items()},
                       gt_label=gt.tolist(), wall_time_s=wall_s), f)
    return run


def sig_record():
    return 'selection_signals_dev.json'


def test_means_gains_and_gate(sig, tmp_path):
    root = str(tmp_path / 'study')
    # seed 0 of two styles: the teacher is confidently wrong on every
    # image and its flipped view is the truth
    truth = np.eye(3)[GT] * 0.9 + 0.05
    wrong = np.eye(3)[(GT + 1) % 3] * 0.9 + 0.05
    good = dict(teacher=wrong, teacher_flip=truth, student=wrong)
    for style in ('crowded', 'speckle'):
        write_run(root, style, 'hermes', 0, probs=good)
        write_run(root, style, 'hermes', 1)
    write_run(root, 'shadowing', 'hermes', 0)
    out = str(tmp_path / 'sel.md')
    args = ['--out-dir', root, '--variants', 'hermes', '--seeds', '0', '1',
            '--out', out, '--gate-styles', 'crowded', 'speckle',
            'shadowing', '--gate-min-styles', '2']
    assert sig.main(args + ['--styles', 'crowded', 'speckle',
                            'shadowing', 'varied']) == 0
    with open(osp.splitext(out)[0] + '.json') as f:
        record = json.load(f)
    assert record['records_wall_s'] == pytest.approx(10.0)
    summary = record['summary']
    assert list(summary) == ['crowded', 'speckle', 'shadowing']
    m = summary['crowded']['hermes']
    assert m['seeds'] == 2
    # seed 0: every image has confidence 0.95 -> k 4, none right
    assert m['precision.confidence'] == pytest.approx((0.0 + 200 / 3) / 2)
    assert m['gain.margin'] == pytest.approx(0.0)
    # flip_agree keeps the teacher's (wrong) class: no gain on seed 0
    assert m['gain.flip_agree'] == pytest.approx(0.0)
    verdicts = record['gate']['hermes']
    assert 'confidence' not in verdicts
    # flip_mean: seed 0 classes 0, 1, 0, 0 (ties -> the lower class): 3
    # of 4 right where confidence has none; seed 1 gains 0
    assert m['gain.flip_mean'] == pytest.approx(75.0 / 2)
    assert verdicts['flip_mean'] == dict(
        passing_styles=['crowded', 'speckle'],
        measured_styles=['crowded', 'speckle', 'shadowing'], passes=True)
    assert verdicts['margin'] == dict(
        passing_styles=[],
        measured_styles=['crowded', 'speckle', 'shadowing'], passes=False)
    with open(out) as f:
        md = f.read()
    assert 'Gate (amendment 21 item 1)' in md
    row = next(line for line in md.splitlines()
               if line.startswith('| shadowing'))
    cells = [c.strip() for c in row.strip('|').split('|')]
    assert cells[:5] == ['shadowing', 'hermes', '75.0', '66.7', '66.7 (0.0)']
    # a gate style without runs: no verdict can pass, flip_mean included
    os.rename(osp.join(root, 'shadowing'), osp.join(root, 'elsewhere'))
    sig.main(args + ['--styles', 'crowded', 'speckle'])
    with open(osp.splitext(out)[0] + '.json') as f:
        gate = json.load(f)['gate']['hermes']
    assert all(not v['passes'] for v in gate.values())


def test_a_signal_that_selects_better_passes_the_gate(sig, tmp_path):
    root = str(tmp_path / 'study')
    # the teacher is confident and wrong on image 1, unsure and right on
    # image 3; the student disagrees only on image 1
    teacher = np.array([[0.90, 0.05, 0.05], [0.95, 0.03, 0.02],
                        [0.05, 0.05, 0.90], [0.30, 0.60, 0.10]])
    student = np.array([[0.80, 0.10, 0.10], [0.10, 0.80, 0.10],
                        [0.10, 0.10, 0.80], [0.20, 0.70, 0.10]])
    gt = np.array([0, 1, 2, 1])
    probs = dict(teacher=teacher, teacher_flip=teacher, student=student)
    styles = ['crowded', 'speckle', 'shadowing', 'varied']
    for style in styles:
        write_run(root, style, 'hermes', 0, probs=probs, gt=gt)
    out = str(tmp_path / 'sel.md')
    sig.main(['--out-dir', root, '--styles', *styles, '--variants',
              'hermes', '--seeds', '0', '--out', out])
    with open(osp.splitext(out)[0] + '.json') as f:
        record = json.load(f)
    m = record['summary']['varied']['hermes']
    # k 3: confidence keeps 1, 0, 2 (2 right); student agreement keeps
    # 0, 2, 3 (all right)
    assert m['k'] == 3
    assert m['precision.confidence'] == pytest.approx(200 / 3)
    assert m['gain.student_agree'] == pytest.approx(100 / 3)
    gate = record['gate']['hermes']
    assert gate['student_agree'] == dict(
        passing_styles=styles, measured_styles=styles, passes=True)
    # the flip view is the teacher's own: agreement everywhere, no gain
    assert gate['flip_agree']['passes'] is False
    assert gate['flip_agree']['passing_styles'] == []
    # a stricter bar (coverage of t = 0.92: image 1 only) -> k 1, and the
    # student agreement picks image 0 instead: gain 100 points
    sig.main(['--out-dir', root, '--styles', *styles, '--variants',
              'hermes', '--seeds', '0', '--coverage-threshold', '0.92',
              '--out', out])
    with open(osp.splitext(out)[0] + '.json') as f:
        m = json.load(f)['summary']['varied']['hermes']
    assert m['k'] == 1 and m['precision.confidence'] == 0.0
    assert m['gain.student_agree'] == pytest.approx(100.0)


def test_clear_errors(sig, tmp_path):
    root = str(tmp_path / 'study')
    run = osp.join(root, 'crowded', 'runs', 'hermes', 'r0.125', 'seed0')
    os.makedirs(run)
    args = ['--out-dir', root, '--styles', 'crowded', '--variants',
            'hermes', '--seeds', '0', '--out', str(tmp_path / 's.md')]
    with open(osp.join(run, 'last_checkpoint'), 'w') as f:
        f.write(osp.join(run, 'iter_600.pth'))
    with pytest.raises(SystemExit, match='not finished'):
        sig.main(args)
    with open(osp.join(run, sig_record()), 'w') as f:
        json.dump(dict(probs=dict(teacher=[[1, 0, 0]]), gt_label=[0]), f)
    with pytest.raises(SystemExit, match='teacher_flip'):
        sig.main(args)
    with pytest.raises(SystemExit, match='no run of'):
        sig.main(args[:2] + ['--styles', 'speckle'] + args[4:])


def test_views_come_from_the_right_network_and_input(sig, tmp_path,
                                                     tiny_hermes_run):
    run, model = tiny_hermes_run
    ckpt = osp.join(run, 'iter_2.pth')
    cache = str(tmp_path / 'cache')
    args = sig.parse_args([
        '--out-dir', str(tmp_path), '--styles', 'crowded', '--variants',
        'hermes', '--seeds', '0', '--out', str(tmp_path / 's.md'), '--num',
        '6', '--cache-dir', cache, '--batch-size', '4'])
    record = sig.run_record(run, args)
    assert osp.exists(osp.join(run, sig_record()))  # kept for later calls
    # the expected probabilities, straight from each network
    cfg = sig.false_lesions.load_config(sig.false_lesions.parse_args(
        [osp.join(run, 'config.py'), ckpt, '--num', '6', '--cache-dir',
         cache]))
    model.eval()
    expected = dict(teacher=[], teacher_flip=[], student=[])
    gt = []
    with torch.no_grad():
        for batch in Runner.build_dataloader(
                dict(cfg.test_dataloader, batch_size=4)):
            data = model.data_preprocessor(batch, False)
            x = data['inputs']
            gt += [int(s.gt_label) for s in data['data_samples']]
            for view, net, inp in (
                    ('teacher', model.teacher.module, x),
                    ('teacher_flip', model.teacher.module, x.flip(-1)),
                    ('student', model.student, x)):
                expected[view] += net._forward(inp)[1].softmax(1).tolist()
    assert record['gt_label'] == gt and len(gt) == 6
    got = {v: np.asarray(record['probs'][v]) for v in sig.VIEWS}
    for view in sig.VIEWS:
        np.testing.assert_allclose(got[view], expected[view], atol=1e-5)
    # the three views really differ, so a swapped view would fail above
    assert not np.allclose(got['teacher'], got['student'], atol=1e-3)
    assert not np.allclose(got['teacher'], got['teacher_flip'], atol=1e-3)
    assert record['test_set']['generator_seed'] == sig.false_lesions.DEV_SEED
