"""Tests of tools/make_split.py."""
import importlib.util
import json
import os
import os.path as osp
import subprocess
import sys

import pytest

from hermes_mm.datasets.splits import SPLIT_KEYS, make_split

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOL = osp.join(REPO, 'tools', 'make_split.py')


def load_tool():
    spec = importlib.util.spec_from_file_location('make_split_tool', TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def listing(root):
    return sorted(osp.relpath(osp.join(d, f), root)
                  for d, _, fs in os.walk(root) for f in fs)


def test_cli_writes_only_out(tiny_busi, tmp_path):
    cwd, out_dir = tmp_path / 'cwd', tmp_path / 'out'
    cwd.mkdir()
    out_dir.mkdir()
    before = tiny_busi.checksums()
    out = out_dir / 'split.json'
    proc = subprocess.run(
        [sys.executable, TOOL, tiny_busi.root, '--labeled-ratio', '0.5',
         '--seed', '3', '--out', str(out)],
        cwd=str(cwd), capture_output=True, text=True, timeout=120,
        env=dict(os.environ, PYTHONDONTWRITEBYTECODE='1'))
    assert proc.returncode == 0, proc.stderr
    assert tiny_busi.checksums() == before
    assert listing(str(cwd)) == [] and listing(str(out_dir)) == ['split.json']
    split = json.loads(out.read_text())
    assert list(split) == list(SPLIT_KEYS)
    assert split == make_split(
        [(r, tiny_busi.labels[r]) for r in tiny_busi.order], 0.5, seed=3)
    # per-class counts per subset: header + 3 classes + total
    table = [ln.split() for ln in proc.stdout.splitlines()]
    assert table[0] == ['class'] + list(SPLIT_KEYS)
    rows = {r[0]: [int(x) for x in r[1:]] for r in table[1:5]}
    assert sum(rows['benign']) == 3 and sum(rows['normal']) == 2
    assert rows['total'] == [len(split[k]) for k in SPLIT_KEYS]


def test_main_ann_file(tmp_path, files, capsys):
    root = tmp_path / 'd'
    lines = []
    for i in range(6):
        files.write(str(root / f'{i}.png'), files.gray(files.rect(0, 1, 0, 1)))
        lines.append(json.dumps({'img': f'{i}.png', 'label': i % 2}))
    (root / 'a.jsonl').write_text('\n'.join(lines))
    tool = load_tool()
    tool.main([str(root), '--ann-file', 'a.jsonl', '--cls-classes', 'x',
               'y', '--labeled-ratio', '1', '--ratios', '0.34', '0.33',
               '0.33', '--out', str(tmp_path / 's.json')])
    split = json.loads((tmp_path / 's.json').read_text())
    assert sorted(sum(split.values(), [])) == [f'{i}.png' for i in range(6)]
    assert all(len(v) == 2 for v in split.values() if v) and not split[
        'unlabeled']
    assert 'x' in capsys.readouterr().out


def test_main_errors(tiny_busi, tmp_path):
    tool = load_tool()
    with pytest.raises(SystemExit):
        tool.main([tiny_busi.root, '--ann-file', 'a.jsonl',
                   '--labeled-ratio', '0.5', '--out', 'x.json'])
    with pytest.raises(ValueError, match='labeled_ratio.*1.5'):
        tool.main([tiny_busi.root, '--labeled-ratio', '1.5', '--out',
                   str(tmp_path / 'x.json')])
    with pytest.raises(SystemExit):  # --labeled-ratio needs a train ratio 0
        tool.main([tiny_busi.root, '--out', str(tmp_path / 'x.json')])
    assert not (tmp_path / 'x.json').exists()


def test_readme_split_command_on_a_fresh_folder(tiny_busi, tmp_path,
                                                monkeypatch, capsys):
    # The README's command, verbatim but for the data folder: splits/ does
    # not exist in a freshly unpacked BUSI folder and is created.
    readme = open(osp.join(REPO, 'README.md')).read()
    command = ('python tools/make_split.py data/BUSI --labeled-ratio 0.125 '
               '--seed 0 --out data/BUSI/splits/split_0.125_seed0.json')
    assert command in readme
    os.makedirs(tmp_path / 'data')
    os.symlink(tiny_busi.root, tmp_path / 'data' / 'BUSI')
    monkeypatch.chdir(tmp_path)
    load_tool().main(command.split()[2:])
    split = json.loads(
        (tmp_path / 'data/BUSI/splits/split_0.125_seed0.json').read_text())
    assert all(split[k] for k in ('labeled', 'val', 'test'))
    capsys.readouterr()
    # and a test-only split of a separate folder (README: "Test on another
    # folder"): no --labeled-ratio needed
    load_tool().main([tiny_busi.root, '--ratios', '0', '0', '1', '--out',
                      str(tmp_path / 'test_only' / 'split.json')])
    split = json.loads((tmp_path / 'test_only' / 'split.json').read_text())
    assert sorted(split['test']) == sorted(tiny_busi.order)
    assert 'total             0         0         0' in capsys.readouterr().out
