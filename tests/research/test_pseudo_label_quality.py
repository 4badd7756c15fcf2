"""research/pseudo_label_quality.py on hand-made run folders: the last
logged values per run, means over seeds, diagnostics a run did not log,
runs without a held-out test left out, and a clear error without logs."""
import json
import os
import os.path as osp

import pytest


@pytest.fixture(scope='module')
def plq(load_script):
    return load_script('research/pseudo_label_quality.py')


def write_run(root, style, variant, seed, precisions, acc, logged=True,
              false_lesions=None):
    run = osp.join(root, style, 'runs', variant, 'r0.125', f'seed{seed}')
    os.makedirs(osp.join(run, '20261206_000000', 'vis_data'))
    with open(osp.join(run, 'heldout_metrics.json'), 'w') as f:
        json.dump({'cls/accuracy': acc, 'seg/false_lesion_rate': 40.0}, f)
    if not logged:
        return run
    with open(osp.join(run, '20261206_000000', 'vis_data', 'scalars.json'),
              'w') as f:
        for i, value in enumerate(precisions):
            row = {'iter': 10 * (i + 1), 'pl.cls.precision': value}
            if false_lesions is not None:
                row['pl.seg.false_lesion_images'] = false_lesions
            f.write(json.dumps(row) + '\n')
        # a validation row without the training scalars
        f.write(json.dumps({'teacher/seg/dice': 50.0, 'step': 30}) + '\n')
    return run


def test_end_of_training_means_per_style_and_variant(plq, tmp_path):
    write_run(tmp_path, 'crowded', 'hermes', 0, [0.1, 0.5, 0.7], 60.0,
              false_lesions=0.4)
    write_run(tmp_path, 'crowded', 'hermes', 1, [0.9, 0.3, 0.5], 70.0)
    # no held-out test yet: left out
    run = write_run(tmp_path, 'crowded', 'hermes', 2, [1.0], 99.0)
    os.remove(osp.join(run, 'heldout_metrics.json'))
    out = tmp_path / 'report.md'
    args = plq.parse_args(['--out-dir', str(tmp_path), '--styles', 'crowded',
                           'speckle', '--variants', 'hermes', '--last', '2',
                           '--out', str(out)])
    summary = plq.summarise(args)
    entry = summary['crowded']['hermes']
    assert entry['seeds'] == [0, 1]
    # last 2 logged values: (0.5 + 0.7) / 2 and (0.3 + 0.5) / 2
    assert entry['pl.cls.precision'] == pytest.approx((0.6 + 0.4) / 2)
    assert entry['cls/accuracy'] == pytest.approx(65.0)
    # logged by seed 0 only: the mean of what there is
    assert entry['pl.seg.false_lesion_images'] == pytest.approx(0.4)
    assert entry['pl.cls.1.recall'] is None
    assert 'speckle' not in summary
    assert plq.main(['--out-dir', str(tmp_path), '--styles', 'crowded',
                     '--variants', 'hermes', '--out', str(out)]) == 0
    rows = [[c.strip() for c in line.strip('|').split('|')]
            for line in out.read_text().splitlines()
            if line.startswith('| crowded')]
    assert len(rows) == 1
    assert rows[0][:4] == ['crowded', 'hermes', '65.00', '40.00']
    assert rows[0][-1] == '2'
    saved = json.loads((tmp_path / 'report.json').read_text())
    assert saved['summary']['crowded']['hermes']['seeds'] == [0, 1]


def test_missing_logs_and_empty_study_are_named(plq, tmp_path):
    write_run(tmp_path, 'crowded', 'hermes', 0, [], 60.0, logged=False)
    args = plq.parse_args(['--out-dir', str(tmp_path), '--styles', 'crowded',
                           '--variants', 'hermes', '--out',
                           str(tmp_path / 'r.md')])
    with pytest.raises(FileNotFoundError, match='seed0: no'):
        plq.summarise(args)
    with pytest.raises(SystemExit, match='no finished run'):
        plq.main(['--out-dir', str(tmp_path / 'empty'), '--styles', 'x',
                  '--variants', 'hermes', '--out', str(tmp_path / 'r.md')])
    with pytest.raises(SystemExit):
        plq.parse_args(['--out-dir', '.', '--styles', 'x', '--variants', 'y',
                        '--out', 'r.md', '--last', '0'])


def test_run_folders_follow_quality_run_dir(plq, tmp_path):
    # fully_supervised runs use every label: no ratio level in quality.py
    args = plq.parse_args(['--out-dir', str(tmp_path), '--styles', 'crowded',
                           '--variants', 'fully_supervised', 'hermes',
                           '--ratio', '0.25', '--out', 'unused.md'])
    assert plq.variant_dir(args, 'crowded', 'fully_supervised') == osp.join(
        str(tmp_path), 'crowded', 'runs', 'fully_supervised')
    assert plq.variant_dir(args, 'crowded', 'hermes') == osp.join(
        str(tmp_path), 'crowded', 'runs', 'hermes', 'r0.25')
