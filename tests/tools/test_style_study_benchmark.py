"""Tests of ``benchmarks/style_study.py``: the per-style report is computed
from each style's quality.py ``results.json`` (paired differences, gap
recovered, held-out style marked), and every style gets its own
``quality.py --style`` command."""
import argparse
import json
import os.path as osp

import pytest

from hermes_mm.datasets.synthetic import HELDOUT_STYLE


@pytest.fixture
def study(load_script):
    return load_script('benchmarks/style_study.py')


def _record(variant, seed, dice_lesion, acc, status='ok'):
    return dict(variant=variant, seed=seed, ratio=0.125,
                ratio_independent=variant == 'fully_supervised',
                status=status,
                heldout_metrics={'seg/dice_lesion': dice_lesion,
                                 'seg/dice': dice_lesion - 1,
                                 'cls/accuracy': acc})


def _write(root, style, records):
    path = osp.join(root, style, 'results.json')
    import os
    os.makedirs(osp.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        json.dump(dict(runs=records), f)


def _report_only(args):
    """A copy of ``args`` with ``--report-only`` on."""
    return argparse.Namespace(**{**vars(args), 'report_only': True})


def test_commands_one_per_style(study, tmp_path):
    args = study.parse_args(['--styles', 'crowded', HELDOUT_STYLE,
                             '--seeds', '0', '1', '--out-dir',
                             str(tmp_path)])
    cmd = study.quality_cmd(args, 'crowded')
    assert cmd[cmd.index('--style') + 1] == 'crowded'
    assert cmd[cmd.index('--out-dir') + 1] == str(tmp_path / 'crowded')
    assert cmd[cmd.index('--seeds') + 1:cmd.index('--seeds') + 3] == \
        ['0', '1']
    assert '--report-only' in study.quality_cmd(_report_only(args),
                                                'crowded')
    assert '--jobs' not in cmd
    args.jobs = 2
    cmd = study.quality_cmd(args, 'crowded')
    assert cmd[cmd.index('--jobs') + 1] == '2'
    assert '--ledger' not in cmd
    args.ledger = str(tmp_path / 'ledger')
    for a in (args, _report_only(args)):  # the report reads the ledger too
        cmd = study.quality_cmd(a, 'crowded')
        assert cmd[cmd.index('--ledger') + 1] == str(tmp_path / 'ledger' /
                                                     'crowded')


def test_report_pairs_seeds_and_computes_gap(study, tmp_path):
    _write(str(tmp_path), 'crowded', [
        _record('supervised', 0, 80.0, 70.0),
        _record('supervised', 1, 84.0, 72.0),
        _record('hermes', 0, 83.0, 71.0),
        _record('hermes', 1, 85.0, 75.0),
        _record('hermes', 2, 99.0, 99.0),  # no supervised partner: unpaired
        _record('fully_supervised', 0, 90.0, 80.0),
        _record('fully_supervised', 1, 90.0, 80.0),
        _record('supervised', 2, 10.0, 10.0, status='failed'),
    ])
    args = study.parse_args(['--styles', 'crowded', HELDOUT_STYLE,
                             '--seeds', '0', '1', '2', '--variants',
                             'supervised', 'fully_supervised', 'hermes',
                             '--out-dir', str(tmp_path)])
    summ = study.style_summary(args, 'crowded')
    pair = summ['paired']['supervised']['hermes']['seg/dice_lesion']
    assert pair['seeds'] == [0, 1]
    assert pair['mean'] == pytest.approx(2.0)  # (+3, +1)
    assert pair['higher'] == 2 and pair['lower'] == 0
    assert pair['p'] is not None
    # gap over seeds 0-1: sup 82, hermes 84, full 90 -> 2 / 8
    assert summ['gap']['hermes']['supervised']['seg/dice_lesion'] == \
        pytest.approx(0.25)
    assert summ['variants']['supervised']['seeds'] == [0, 1]
    assert study.style_summary(args, HELDOUT_STYLE) is None
    md = study.markdown(args, {'crowded': summ, HELDOUT_STYLE: None},
                        HELDOUT_STYLE)
    assert f'**{HELDOUT_STYLE}** (held-out)' in md
    assert '+2.00 ± 1.41 (2↑/0↓' in md
    assert '25% (1 style)' in md
    per_style = [line for line in md.splitlines()
                 if line.startswith('| hermes') and '| crowded' in line]
    assert len(per_style) == 1 and '| 25%' in per_style[0]


def test_gap_needs_a_positive_gap(study):
    same = {0: {'k': 1.0}}
    assert study.gap_recovered(same, same, same, 'k') is None
    assert study.gap_recovered({}, same, same, 'k') is None


def test_second_method_and_hermes_as_reference(study, tmp_path):
    _write(str(tmp_path), 'crowded', [
        _record('supervised', 0, 80.0, 70.0),
        _record('hermes', 0, 82.0, 71.0),
        _record('hermes_guarded', 0, 86.0, 74.0),
        _record('fully_supervised', 0, 90.0, 80.0),
    ])
    args = study.parse_args([
        '--styles', 'crowded', '--seeds', '0', '--variants', 'supervised',
        'fully_supervised', 'hermes', 'hermes_guarded', '--references',
        'supervised', 'hermes', '--methods', 'hermes', 'hermes_guarded',
        '--out-dir', str(tmp_path)])
    summ = study.style_summary(args, 'crowded')
    assert summ['paired']['hermes']['hermes_guarded'][
        'seg/dice_lesion']['mean'] == pytest.approx(4.0)
    assert 'supervised' not in summ['paired']['hermes']
    assert 'hermes' not in summ['paired']['hermes']
    # gaps: hermes 2 / 10, hermes_guarded 6 / 10
    assert summ['gap']['hermes']['supervised']['seg/dice_lesion'] == \
        pytest.approx(0.2)
    assert summ['gap']['hermes_guarded']['supervised'][
        'seg/dice_lesion'] == pytest.approx(0.6)
    md = study.markdown(args, {'crowded': summ}, HELDOUT_STYLE)
    assert 'minus `hermes`' in md
    assert '| hermes_guarded | supervised | development styles | 60% ' \
        '(1 style)' in md


def test_variant_config_passed_on_and_missing_keys_skipped(study, tmp_path):
    """--variant-config reaches quality.py; a metric that older runs did
    not record (here lesion-pixel recall) is paired over the seeds that
    have it, not a KeyError."""
    args = study.parse_args(['--styles', 'crowded', '--seeds', '0', '1',
                             '--variants', 'hermes', 'mine',
                             '--variant-config', 'mine=/x/mine.py',
                             '--out-dir', str(tmp_path)])
    cmd = study.quality_cmd(args, 'crowded')
    assert cmd[cmd.index('--variant-config') + 1] == 'mine=/x/mine.py'
    ours = {0: {'seg/recall': 50.0}, 1: {}}
    ref = {0: {'seg/recall': 40.0}, 1: {'seg/recall': 30.0}}
    entry = study.paired(ours, ref, 'seg/recall')
    assert entry['seeds'] == [0]
    assert entry['mean'] == 10.0


def test_gap_from_any_reference_and_false_lesions_measured_down(
        study, tmp_path):
    """The gap starts from every ``--references`` variant (here the
    supervised twin, not a variant named ``supervised``), and for the
    false-lesion rate the upper bound is the lower value."""
    records = [
        _record('twin', 0, 60.0, 60.0),
        _record('hermes', 0, 65.0, 62.0),
        _record('fully_supervised', 0, 80.0, 80.0),
    ]
    for record, rate in zip(records, (40.0, 35.0, 20.0)):
        record['heldout_metrics']['seg/false_lesion_rate'] = rate
    _write(str(tmp_path), 'crowded', records)
    args = study.parse_args([
        '--styles', 'crowded', '--seeds', '0', '--variants', 'twin',
        'fully_supervised', 'hermes', '--references', 'twin',
        '--methods', 'hermes', '--out-dir', str(tmp_path)])
    gap = study.style_summary(args, 'crowded')['gap']['hermes']['twin']
    assert gap['seg/dice_lesion'] == pytest.approx(0.25)  # 5 / 20
    assert gap['cls/accuracy'] == pytest.approx(0.1)  # 2 / 20
    assert gap['seg/false_lesion_rate'] == pytest.approx(0.25)  # 5 / 20
    # more false lesions than the reference: a negative share
    worse = {0: {'seg/false_lesion_rate': 50.0}}
    assert study.gap_recovered(
        worse, {0: {'seg/false_lesion_rate': 40.0}},
        {0: {'seg/false_lesion_rate': 20.0}},
        'seg/false_lesion_rate') == pytest.approx(-0.5)
    md = study.markdown(args, {'crowded': study.style_summary(
        args, 'crowded')}, HELDOUT_STYLE)
    row = [line for line in md.splitlines() if 'development styles' in line]
    assert len(row) == 1
    cells = [c.strip() for c in row[0].strip('|').split('|')]
    assert cells[:4] == ['hermes', 'twin', 'development styles',
                         '25% (1 style)']
    assert cells[-2:] == ['25% (1 style)', '10% (1 style)']


def test_dry_run_reaches_each_quality_run_and_writes_no_report(
        study, tmp_path, monkeypatch):
    """--dry-run is passed on to every style's quality.py (which then lists,
    per run, "skip (in the ledger)" or the command still to run and trains
    nothing); the study writes no report, and a failing style still fails
    the study."""
    argv = ['--styles', 'crowded', HELDOUT_STYLE, '--seeds', '0',
            '--out-dir', str(tmp_path), '--ledger', str(tmp_path / 'led')]
    assert '--dry-run' not in study.quality_cmd(study.parse_args(argv),
                                                'crowded')
    calls, codes = [], []

    def fake_run(cmd, cwd):
        calls.append(cmd)
        return study.subprocess.CompletedProcess(cmd, codes.pop(0))

    monkeypatch.setattr(study.subprocess, 'run', fake_run)
    codes[:] = [0, 0]
    assert study.main(argv + ['--dry-run']) == 0
    assert [c[c.index('--style') + 1] for c in calls] == ['crowded',
                                                          HELDOUT_STYLE]
    assert all(c.count('--dry-run') == 1 for c in calls)
    assert not (tmp_path / 'style_study.md').exists()
    codes[:] = [0, 3]
    assert study.main(argv + ['--dry-run']) == 1
    # quality.py --dry-run writes nothing in --report-only mode either
    dry = study.parse_args(argv + ['--dry-run', '--report-only'])
    assert '--dry-run' in study.quality_cmd(dry, 'crowded')


def test_report_only_reads_a_style_held_only_in_the_ledger(
        study, tmp_path, monkeypatch):
    """On a new machine the out dir is empty and the committed ledger holds
    the runs: --report-only must still call quality.py for every style the
    ledger has (and skip only styles with neither)."""
    ledger = tmp_path / 'led'
    (ledger / 'crowded').mkdir(parents=True)
    argv = ['--styles', 'crowded', 'speckle', '--seeds', '0', '--out-dir',
            str(tmp_path / 'runs'), '--ledger', str(ledger), '--report-only',
            '--report', str(tmp_path / 'report.md')]
    calls = []

    def fake_run(cmd, cwd):
        calls.append(cmd)
        return study.subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(study.subprocess, 'run', fake_run)
    assert study.main(argv) == 0
    assert [c[c.index('--style') + 1] for c in calls] == ['crowded']
    assert calls[0][calls[0].index('--ledger') + 1] == str(ledger / 'crowded')
    assert (tmp_path / 'report.md').exists()
