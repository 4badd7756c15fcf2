"""tools/test.py on a separate folder with its own masks (issue 17, point
2): ``--all-images`` / ``--split-file none`` test every image of
``--data-root`` without a split, a test-only split is accepted, and a
Hermes config needs no ``unlabeled`` images at test time.

The shipped BUSI config is shrunk with the integration test's
``tiny_options`` (demo backbone, 64x64); the checkpoint is the untrained
model (the metrics' values do not matter here, which images are tested
does).
"""
import json
import os.path as osp
import sys
import time

import pytest
import torch
from mmengine.config import Config, DictAction
from mmengine.registry import init_default_scope
from mmseg.registry import MODELS

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from test_train_test_integration import (fast_and_clean,  # noqa: E402,F401
                                         load_tool, tiny_options)

HERMES = osp.join(REPO, 'configs', 'hermes_busi.py')
NUM_IMAGES = 9


@pytest.fixture(scope='module')
def external(tmp_path_factory):
    """A BUSI-layout folder that is not the training folder, and an
    untrained tiny Hermes checkpoint."""
    root = tmp_path_factory.mktemp('external')
    data = str(root / 'BUSI_external')
    assert load_tool('make_synthetic_busi').main(
        [data, '--num', str(NUM_IMAGES), '--seed', '3', '--size', '64',
         '72']) == 0
    cfg = Config.fromfile(HERMES)
    cfg.merge_from_dict(_parse(tiny_options(HERMES, 'ckpt')))
    init_default_scope('mmseg')
    model = MODELS.build(cfg.model)
    ckpt = str(root / 'tiny_hermes.pth')
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, ckpt)
    return data, ckpt


def _parse(options):
    """``--cfg-options`` strings as the dict DictAction makes."""
    out = {}
    for opt in options:
        key, value = opt.split('=', 1)
        out[key] = DictAction._parse_iterable(value)
    return out


def run_test(data, ckpt, tmp_path, *extra):
    name = f'test_{time.time_ns()}'
    out = str(tmp_path / 'metrics.json')
    load_tool('test').main(
        [HERMES, ckpt, '--data-root', data, '--work-dir',
         str(tmp_path / 'work'), '--out-metrics', out, *extra,
         '--cfg-options'] + tiny_options(HERMES, name))
    with open(out) as f:
        return json.load(f)


def count_tested(metrics):
    return sum(sum(row) for row in metrics['cls/confusion_matrix'])


README_COMMAND = ('python tools/test.py configs/hermes_busi.py best.pth '
                  '--data-root data/BUSI_external --all-images '
                  '--out-metrics external.json')


def test_readme_command_tests_every_image_of_a_folder(external, tmp_path):
    """The README's command, its paths pointed at the tiny folder and
    checkpoint (plus the small-model options)."""
    assert README_COMMAND in open(osp.join(REPO, 'README.md')).read()
    data, ckpt = external
    argv = README_COMMAND.split()[2:]
    argv[0] = HERMES
    argv[1] = ckpt
    argv[argv.index('--data-root') + 1] = data
    out = str(tmp_path / 'external.json')
    argv[argv.index('--out-metrics') + 1] = out
    load_tool('test').main(
        argv + ['--work-dir', str(tmp_path / 'work'), '--cfg-options'] +
        tiny_options(HERMES, f'readme_{time.time_ns()}'))
    with open(out) as f:
        metrics = json.load(f)
    assert count_tested(metrics) == NUM_IMAGES and 'seg/dice' in metrics


def test_split_file_none_is_all_images(external, tmp_path):
    data, ckpt = external
    metrics = run_test(data, ckpt, tmp_path, '--split-file', 'none')
    assert count_tested(metrics) == NUM_IMAGES


def test_test_only_split_on_a_hermes_config(external, tmp_path):
    """make_split --ratios 0 0 1: no labelled, no unlabelled image."""
    data, ckpt = external
    split = str(tmp_path / 'splits' / 'test_only.json')
    load_tool('make_split').main(
        [data, '--ratios', '0', '0', '1', '--out', split])
    metrics = run_test(data, ckpt, tmp_path, '--split-file', split)
    assert count_tested(metrics) == NUM_IMAGES


def test_data_root_alone_names_the_option(external, tmp_path):
    data, ckpt = external
    with pytest.raises(FileNotFoundError, match='--all-images'):
        run_test(data, ckpt, tmp_path)
    with pytest.raises(SystemExit, match='drop --split-file'):
        run_test(data, ckpt, tmp_path, '--all-images', '--split-file',
                 'x.json')
