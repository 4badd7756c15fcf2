"""research/linear_probe.py: head vs cross-validated probe on hand-made
features (informative features beat a wrong head; uninformative ones do
not), means over hand-made run folders, the features of a real tiny Hermes
checkpoint (the teacher's, as in prediction), and clear errors."""
import json
import os
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.runner import Runner


@pytest.fixture(scope='module')
def lp(load_script):
    return load_script('research/linear_probe.py')


def features(separable: bool, n=60, seed=0):
    """3 classes, 20 images each; a head that always says class 0."""
    rng = np.random.default_rng(seed)
    gt = np.repeat(np.arange(3), n // 3)
    feats = rng.normal(size=(n, 8))
    if separable:
        feats[np.arange(n), gt] += 6.0  # class c: feature c is large
    probs = np.tile([0.8, 0.1, 0.1], (n, 1))
    return feats, probs, gt


def test_probe_against_the_head(lp):
    out = lp.probe(*features(True), folds=5, Cs=[1.0])
    assert out['head.accuracy'] == pytest.approx(100 / 3)
    assert (out['head.recall.0'], out['head.recall.2']) == (100.0, 0.0)
    # the features hold the class: the probe finds it on held-out folds
    assert out['probe_C1.accuracy'] > 95.0
    assert out['probe_C1.recall.2'] > 90.0
    # features without the class: the probe is near chance
    noise = lp.probe(*features(False), folds=5, Cs=[1.0, 0.01])
    assert noise['probe_C1.accuracy'] < 60.0
    assert set(noise) >= {'probe_C0.01.accuracy', 'probe_C1.recall.1'}
    # many more features than images: a probe scored on the images it was
    # fitted on would be right everywhere; held-out folds stay near chance
    rng = np.random.default_rng(1)
    _, probs, gt = features(False)
    wide = lp.probe(rng.normal(size=(60, 300)), probs, gt, 5, [100.0])
    assert wide['probe_C100.accuracy'] < 60.0
    feats, probs, gt = features(True)
    with pytest.raises(ValueError, match='5-fold'):
        lp.probe(feats[:12], probs[:12], np.array([0] * 10 + [1, 2]), 5,
                 [1.0])


def write_run(root, style, variant, seed, separable=True):
    run = osp.join(root, style, 'runs', variant, 'r0.125', f'seed{seed}')
    os.makedirs(run)
    feats, probs, gt = features(separable, seed=seed)
    np.savez(osp.join(run, 'cls_features_dev.npz'), cls_vec=feats,
             probs=probs, gt_label=gt, wall_time_s=np.asarray(1.5))
    return run


def test_means_over_seeds_and_report(lp, tmp_path):
    root = str(tmp_path / 'study')
    write_run(root, 'crowded', 'twin', 0)
    write_run(root, 'crowded', 'twin', 1)
    out = str(tmp_path / 'lp.md')
    assert lp.main(['--out-dir', root, '--styles', 'crowded', 'speckle',
                    '--variants', 'twin', '--seeds', '0', '1', '2', '--C',
                    '1', '--out', out]) == 0
    with open(osp.splitext(out)[0] + '.json') as f:
        record = json.load(f)
    assert record['records_wall_s'] == pytest.approx(3.0)
    m = record['summary']['crowded']['twin']
    assert m['seeds'] == 2
    assert m['head.accuracy'] == pytest.approx(100 / 3)
    with open(out) as f:
        row = next(line for line in f if line.startswith('| crowded'))
    cells = [c.strip() for c in row.strip().strip('|').split('|')]
    assert cells[:3] == ['crowded', 'twin', '33.3 (100 / 0 / 0)']
    assert cells[4] == f"{m['probe_C1.accuracy'] - 100 / 3:+.1f}"
    with pytest.raises(SystemExit, match='no run of'):
        lp.main(['--out-dir', root, '--styles', 'speckle', '--variants',
                 'twin', '--seeds', '0', '--out', out])


def test_unfinished_run_is_refused(lp, tmp_path):
    run = osp.join(str(tmp_path), 'crowded', 'runs', 'twin', 'r0.125',
                   'seed0')
    os.makedirs(run)
    with pytest.raises(SystemExit, match='not finished'):
        lp.main(['--out-dir', str(tmp_path), '--styles', 'crowded',
                 '--variants', 'twin', '--seeds', '0', '--out',
                 str(tmp_path / 'lp.md')])


def test_features_are_the_teachers(lp, tmp_path, tiny_hermes_run):
    run, model = tiny_hermes_run
    ckpt = osp.join(run, 'iter_2.pth')
    cache = str(tmp_path / 'cache')
    args = lp.parse_args([
        '--out-dir', str(tmp_path), '--styles', 'crowded', '--variants',
        'hermes', '--seeds', '0', '--out', str(tmp_path / 'lp.md'),
        '--num', '6', '--cache-dir', cache, '--batch-size', '4'])
    record = lp.run_record(run, args)
    assert osp.exists(osp.join(run, lp.RECORD))
    cfg = lp.false_lesions.load_config(lp.false_lesions.parse_args(
        [osp.join(run, 'config.py'), ckpt, '--num', '6', '--cache-dir',
         cache]))
    model.eval()
    teacher, student = [], []
    with torch.no_grad():
        for batch in Runner.build_dataloader(
                dict(cfg.test_dataloader, batch_size=4)):
            x = model.data_preprocessor(batch, False)['inputs']
            teacher.append(model.teacher.module.forward_train(x))
            student.append(model.student.forward_train(x))
    t_vec = torch.cat([o.task_feats.cls_vec for o in teacher]).numpy()
    s_vec = torch.cat([o.task_feats.cls_vec for o in student]).numpy()
    np.testing.assert_allclose(record['cls_vec'], t_vec, atol=1e-5)
    assert not np.allclose(record['cls_vec'], s_vec, atol=1e-4)
    np.testing.assert_allclose(
        record['probs'],
        torch.cat([o.cls_logits for o in teacher]).softmax(1).numpy(),
        atol=1e-5)
    assert record['gt_label'].shape == (6, )
