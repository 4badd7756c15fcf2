"""research/seed_pairs.py on hand-made quality run folders: per-seed
values, paired statistics against scipy, --extra test sets, merging a
previous JSON when a run folder is gone, and a conflicting seed."""
import json
import os
import os.path as osp
import shutil

import pytest
from scipy.stats import ttest_rel, wilcoxon

ACC = {  # seed -> (supervised, hermes) accuracy on the held-out set
    0: (70.0, 74.0), 1: (80.0, 79.0), 2: (75.0, 81.0), 3: (60.0, 60.0)}


@pytest.fixture(scope='module')
def bench(load_script):
    return load_script('research/seed_pairs.py')


def write_run(root, variant, seed, acc, extra=None):
    folder = osp.join(root, 'runs', variant, 'r0.125', f'seed{seed}')
    os.makedirs(folder, exist_ok=True)
    record = dict(status='ok', variant=variant, seed=seed, ratio=0.125,
                  metrics={'cls/accuracy': acc - 1, 'seg/dice': 50.0},
                  heldout_metrics={'cls/accuracy': acc, 'seg/dice': 60.0})
    with open(osp.join(folder, 'run.json'), 'w') as f:
        json.dump(record, f)
    if extra is not None:
        with open(osp.join(folder, 'decided.json'), 'w') as f:
            json.dump({'cls/accuracy': extra, 'not/a_metric': 1.0}, f)
    return folder


def args(root, out, *more):
    return ['--out-dir', str(root), '--ratios', '0.125', '--variants',
            'supervised', 'hermes', '--seeds', '0', '1', '2', '3', '4',
            '--out', str(out), *more]


def test_paired_statistics_and_missing_seeds(bench, tmp_path, capsys):
    for seed, (sup, her) in ACC.items():
        write_run(tmp_path, 'supervised', seed, sup,
                  extra=sup + 5 if seed < 2 else None)
        write_run(tmp_path, 'hermes', seed, her,
                  extra=her + 5 if seed < 2 else None)
    write_run(tmp_path, 'supervised', 4, 90.0)  # no Hermes run: no pair
    result = bench.main(args(tmp_path, tmp_path / 'pairs.json', '--extra',
                             'decided'))
    held = result['paired']['hermes']['heldout']
    sup = [ACC[s][0] for s in range(4)]
    her = [ACC[s][1] for s in range(4)]
    acc = held['cls/accuracy']
    assert held['seeds'] == [0, 1, 2, 3]
    assert acc['n'] == 4 and acc['mean'] == pytest.approx(9 / 4)
    assert (acc['higher'], acc['tied'], acc['lower']) == (2, 1, 1)
    assert acc['t_p'] == pytest.approx(ttest_rel(her, sup).pvalue)
    assert acc['wilcoxon_p'] == pytest.approx(
        wilcoxon([4.0, -1.0, 6.0, 0.0]).pvalue)
    # identical Dice everywhere: no p-value, not a crash
    assert held['seg/dice']['t_p'] is None
    assert held['seg/dice']['wilcoxon_p'] is None
    # the split test set and the extra one (only seeds 0, 1 have it)
    assert result['paired']['hermes']['split']['cls/accuracy']['mean'] == \
        pytest.approx(9 / 4)
    decided = result['paired']['hermes']['decided']
    assert decided['seeds'] == [0, 1]
    assert 'not/a_metric' not in result['runs']['hermes']['0']['decided']
    assert result['missing_seeds'] == [4]
    assert 'missing seeds (no finished pair): [4]' in capsys.readouterr().out
    with open(tmp_path / 'pairs.json') as f:
        assert json.load(f)['paired'] == json.loads(
            json.dumps(result['paired']))


def test_previous_json_keeps_seeds_whose_runs_are_gone(bench, tmp_path):
    for seed, (sup, her) in ACC.items():
        write_run(tmp_path, 'supervised', seed, sup)
        write_run(tmp_path, 'hermes', seed, her)
    first = tmp_path / 'first.json'
    full = bench.main(args(tmp_path, first))
    shutil.rmtree(tmp_path / 'runs' / 'hermes' / 'r0.125' / 'seed2')
    alone = bench.main(args(tmp_path, tmp_path / 'alone.json'))
    assert alone['paired']['hermes']['heldout']['seeds'] == [0, 1, 3]
    merged = bench.main(args(tmp_path, tmp_path / 'merged.json',
                             '--previous', str(first)))
    assert merged['paired'] == full['paired']
    # a seed whose numbers changed since the previous file is named
    write_run(tmp_path, 'hermes', 2, 99.0)
    with pytest.raises(SystemExit, match='first.json: hermes seed 2 split '
                       'cls/accuracy is 80.0, the run folder has 98.0'):
        bench.main(args(tmp_path, tmp_path / 'x.json', '--previous',
                        str(first)))
