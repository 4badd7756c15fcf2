"""tools/train.py stops before training, with a message naming the cause,
on: a work_dir in use by another run, ``--resume`` with nothing to resume,
a mistyped ``--cfg-options`` key, a hook argument only used at the first
save, and an undecodable file in any subset (here the validation set,
which training would meet only at its first validation)."""
import json
import os
import os.path as osp
import socket
import subprocess
import sys

import pytest

from hermes_mm.apis.resume import NothingToResumeError
from hermes_mm.apis.work_dir_lock import LOCK_NAME, WorkDirLockedError
from hermes_mm.datasets.dataset_check import DatasetFileError
from hermes_mm.datasets.splits import make_split, save_split, scan_busi
from hermes_mm.datasets.synthetic import generate_synthetic_busi
from hermes_mm.utils.cfg_options import CfgOptionsError

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from test_train_test_integration import (SUPERVISED,  # noqa: E402,F401
                                         fast_and_clean, load_tool,
                                         tiny_options)


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    base = tmp_path_factory.mktemp('guards')
    root = str(base / 'BUSI')
    generate_synthetic_busi(root, num=12, seed=0, size_range=(32, 40))
    split = str(base / 'split.json')
    save_split(make_split([(r.img_rel, r.gt_label) for r in scan_busi(
        root, ('benign', 'malignant', 'normal'))], labeled_ratio=0.5,
        seed=0), split)
    return root, split


@pytest.fixture
def train():
    return load_tool('train').main


def args(data, work, *extra, options=()):
    root, split = data
    return [SUPERVISED, '--data-root', root, '--split-file', split,
            '--work-dir', str(work), *extra, '--cfg-options',
            'train_cfg.max_iters=1', *options,
            *tiny_options(SUPERVISED, f'guard_{os.getpid()}')]


def test_work_dir_in_use_stops_the_second_run(data, train, tmp_path):
    work = tmp_path / 'work'
    work.mkdir()
    first = subprocess.Popen([sys.executable, '-c',
                              'import time; time.sleep(60)'])
    try:
        (work / LOCK_NAME).write_text(json.dumps(dict(
            pid=first.pid, host=socket.gethostname(), process_start=None,
            started='2026-11-30 10:00:00', config='configs/x.py',
            argv=['tools/train.py', 'configs/x.py'])))
        with pytest.raises(WorkDirLockedError,
                           match=f'PID {first.pid} on host'):
            train(args(data, work))
    finally:
        first.kill()
        first.wait()
    assert os.listdir(work) == [LOCK_NAME]  # nothing else written


def test_resume_with_nothing_to_resume(data, train, tmp_path):
    work = tmp_path / 'typo_work'
    with pytest.raises(NothingToResumeError, match='does not exist'):
        train(args(data, work, '--resume'))
    assert not work.exists()


def test_cfg_option_typo_stops_before_building(data, train, tmp_path):
    work = tmp_path / 'work'
    with pytest.raises(CfgOptionsError, match="Did you mean 'interval'"):
        train(args(data, work,
                   options=['default_hooks.checkpoint.intervall=2']))
    assert not work.exists()


def test_checkpoint_hook_argument_checked_before_training(data, train,
                                                          tmp_path):
    work = tmp_path / 'work'
    with pytest.raises(CfgOptionsError,
                       match=r"unknown argument\(s\) \['intervall'\]"):
        train(args(data, work, '--allow-new-cfg-keys',
                   options=['default_hooks.checkpoint.intervall=2']))
    assert not any(name.endswith('.pth') for name in os.listdir(work))
    assert not (work / LOCK_NAME).exists()  # released on the error


def test_bad_validation_mask_found_at_start_up(data, train, tmp_path):
    root, split = data
    with open(split) as f:
        val_image = json.load(f)['val'][0]
    mask = osp.join(root, val_image[:-len('.png')] + '_mask.png')
    saved = open(mask, 'rb').read()
    try:
        open(mask, 'wb').close()  # 0 bytes
        with pytest.raises(DatasetFileError) as err:
            train(args(data, tmp_path / 'work'))
    finally:
        with open(mask, 'wb') as f:
            f.write(saved)
    msg = str(err.value)
    assert '[val_dataloader.dataset (BUSIDataset)]' in msg
    assert repr(mask) in msg and '(0 bytes)' in msg
    assert 'checked at start-up, before training' in msg
