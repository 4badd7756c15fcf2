"""Try every bad input of docs/reliability.md and report what a user sees.

For each case a fresh synthetic BUSI-layout folder (``tools/
make_synthetic_busi.py``'s generator, 24 images) is damaged in one way, the
sha256 of every file under it is taken, the public entry point a user would
meet is run (``BUSIDataset`` as the configs build it, a dataset item through
the training pipeline, ``tools/make_split.py``, MMEngine's
``load_checkpoint``, the segmentors' loss check), and the exception class,
its message and whether the checksums are unchanged afterwards are
recorded. Finally ``tools/check_dataset.py`` runs once on a folder carrying
all data problems at the same time, which it must report together.

Some cases (issue 19) are handled rather than refused: an EXIF-rotated
image, 12-bit data in a 16-bit PNG, a missing ``last_checkpoint``, a
corrupt image among those given to ``tools/infer.py``. Their trigger checks
the result itself and returns what it found ("handled" in the table). The
``tools/train.py`` cases run the real command on a tiny model
(``TINY_CONFIG``); each stops before the first iteration.

Writes ``<out>.json`` and ``<out>.md`` (a markdown table) and prints the
table. The unit tests (tests/datasets, tests/reliability, tests/compat,
tests/tools/test_check_dataset.py) assert the same behaviour; this script
is the human-readable report of it.

    python benchmarks/bad_inputs.py --out benchmarks/runs/bad_inputs
"""
import argparse
import csv
import errno
import io
import json
import os
import os.path as osp
import re
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from typing import Callable, Dict, List

import cv2
import numpy as np
import torch

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from _common import REPO_ROOT, environment, write_json  # noqa: E402

import hermes_mm  # noqa: E402,F401  (registers LoadImageAsStored)
from hermes_mm.compat import checkpoint_loading  # noqa: E402
from hermes_mm.datasets import BUSIDataset  # noqa: E402
from hermes_mm.datasets.splits import make_split, scan_busi  # noqa: E402
from hermes_mm.datasets.synthetic import generate_synthetic_busi  # noqa
from hermes_mm.datasets.transforms import LoadMultiTaskAnnotations  # noqa
from hermes_mm.utils import tree_checksums as checksums  # noqa: E402

# what tools/train.py and tools/test.py install: explained load errors
checkpoint_loading.install()

#: How many characters of a message the markdown table shows.
MESSAGE_CHARS = 450


def first(root: str, cls: str, index: int = 0) -> str:
    """Path of an image (not a mask) of a class folder, by sorted name."""
    names = sorted(n for n in os.listdir(osp.join(root, cls))
                   if n.endswith('.png') and '_mask' not in n)
    return osp.join(root, cls, names[index])


def mask_of(image: str) -> str:
    return image[:-len('.png')] + '_mask.png'


def busi_split(root: str, out: str, **edit) -> str:
    """A valid split of ``root`` (ratio 0.5), edited, saved outside it."""
    records = [(r.img_rel, r.gt_label) for r in scan_busi(
        root, BUSIDataset.METAINFO['cls_classes'])]
    split = make_split(records, labeled_ratio=0.5, seed=0)
    for key, change in edit.items():
        split[key] = change(split)
    # written as a hand-edited file would be: save_split refuses bad splits
    with open(out, 'w') as f:
        json.dump(split, f, indent=1)
    return out


def pipeline_item(root: str, rel: str) -> None:
    """Load one dataset item through the image + annotation loaders."""
    from hermes_mm.datasets.transforms import LoadImageAsStored
    dataset = BUSIDataset(
        data_root=root,
        pipeline=[LoadImageAsStored(), LoadMultiTaskAnnotations()])
    rels = [d['img_rel'] for d in dataset.load_data_list()]
    dataset[rels.index(rel)]


# ----------------------------------------------------------------------
# the cases: damage(root, work) -> trigger (a callable raising/warning)
# ----------------------------------------------------------------------
def case_undecodable(root, work):
    img = first(root, 'malignant')
    with open(img, 'r+b') as f:
        f.truncate(40)
    rel = osp.relpath(img, root)
    return 'training pipeline: LoadImageAsStored', \
        lambda: pipeline_item(root, rel)


def case_missing_mask(root, work):
    os.remove(mask_of(first(root, 'benign')))
    return 'BUSIDataset(data_root)', lambda: BUSIDataset(data_root=root)


def case_mask_size(root, work):
    img = first(root, 'benign', index=-1)
    m = cv2.imread(mask_of(img), cv2.IMREAD_UNCHANGED)
    cv2.imwrite(mask_of(img), m[:-3])
    rel = osp.relpath(img, root)
    return 'training pipeline: LoadMultiTaskAnnotations', \
        lambda: pipeline_item(root, rel)


def case_non_binary_mask(root, work):
    img = first(root, 'malignant', index=-1)
    m = cv2.imread(mask_of(img), cv2.IMREAD_GRAYSCALE)
    m[0, :3] = (30, 128, 200)
    cv2.imwrite(mask_of(img), m)
    rel = osp.relpath(img, root)

    def trigger():
        with warnings.catch_warnings():
            warnings.simplefilter('error', UserWarning)
            pipeline_item(root, rel)
    return 'training pipeline (a UserWarning; shown here as an error)', \
        trigger


def case_unknown_class(root, work):
    shutil.copytree(osp.join(root, 'benign'), osp.join(root, 'Benign_old'))
    return 'BUSIDataset(data_root)', lambda: BUSIDataset(data_root=root)


def case_split_unknown_file(root, work):
    split = busi_split(root, osp.join(work, 'split_ghost.json'),
                       test=lambda s: s['test'] + ['benign/ghost (1).png'])
    return 'BUSIDataset(split_file)', lambda: BUSIDataset(
        data_root=root, split_file=split, subset='test')


def case_split_two_subsets(root, work):
    split = busi_split(root, osp.join(work, 'split_dup.json'),
                       val=lambda s: s['val'] + s['labeled'][:1])
    return 'BUSIDataset(split_file)', lambda: BUSIDataset(
        data_root=root, split_file=split, subset='val')


def case_split_class_unlabelled(root, work):
    def drop_normal(s):
        return [p for p in s['labeled'] if not p.startswith('normal/')]

    def add_normal(s):
        return s['unlabeled'] + [p for p in s['labeled']
                                 if p.startswith('normal/')]
    # the order matters: unlabeled reads the labelled list before the edit
    split = busi_split(root, osp.join(work, 'split_nonormal.json'),
                       unlabeled=add_normal, labeled=drop_normal)
    return 'BUSIDataset(split_file, subset=labeled)', lambda: BUSIDataset(
        data_root=root, split_file=split, subset='labeled')


def case_empty_root(root, work):
    empty = osp.join(work, 'empty_root')
    os.makedirs(empty)
    return 'BUSIDataset(data_root) on an empty folder', \
        lambda: BUSIDataset(data_root=empty)


def case_bad_ratio(root, work):
    cmd = [sys.executable, osp.join(REPO_ROOT, 'tools', 'make_split.py'),
           root, '--labeled-ratio', '1.5', '--out',
           osp.join(work, 'split.json')]
    return 'tools/make_split.py --labeled-ratio 1.5', lambda: run_cli(cmd)


def case_non_finite_loss(root, work):
    from mmengine.logging import MessageHub

    from hermes_mm.models.segmentors import HermesSegmentor

    def trigger():
        MessageHub.get_current_instance().update_info('iter', 4)
        model = HermesSegmentor.__new__(HermesSegmentor)
        model.parse_losses({'sup.seg.loss_ce': torch.tensor(0.4),
                            'unsup.cls.loss_cls': torch.tensor(
                                float('nan'))})
    return 'HermesSegmentor.parse_losses (before backward/step)', trigger


def case_corrupt_checkpoint(root, work):
    from mmengine.runner import load_checkpoint
    path = osp.join(work, 'iter_4.pth')
    torch.save({'state_dict': {'weight': torch.ones(1, 2),
                               'bias': torch.zeros(1)}}, path)
    with open(path, 'r+b') as f:
        f.truncate(os.path.getsize(path) // 2)
    return 'mmengine load_checkpoint / --resume', lambda: load_checkpoint(
        torch.nn.Linear(2, 1), path)


class _Payload:
    def __reduce__(self):
        return os.system, ('echo pwned',)


def case_unsafe_checkpoint(root, work):
    from mmengine.runner import load_checkpoint
    path = osp.join(work, 'evil.pth')
    torch.save({'state_dict': {}, 'meta': _Payload()}, path)
    return 'mmengine load_checkpoint / load_from', lambda: load_checkpoint(
        torch.nn.Linear(2, 1), path)


# ----------------------------------------------------------------------
# issue 19: silent wrong results, late failures
# ----------------------------------------------------------------------
#: A tiny supervised model for the tools/train.py and tools/infer.py cases
#: (they stop before training; the shape-change case builds it).
TINY_CONFIG = """_base_ = [{base!r}]
size = (64, 64)
channels = [8, 16, 32, 64]
model = dict(
    data_preprocessor=dict(size=size),
    backbone=dict(depth=18, base_channels=8, stem_channels=8,
                  init_cfg=None),
    task_neck=dict(in_channels=channels),
    decode_head=dict(in_channels=channels, channels=16),
    cls_head=dict(in_channels=channels[-1]))
train_dataloader = dict(batch_size=2, num_workers=0,
                        persistent_workers=False)
val_dataloader = dict(num_workers=0, persistent_workers=False)
test_dataloader = dict(num_workers=0, persistent_workers=False)
train_cfg = dict(max_iters=2, val_interval=1000)
default_hooks = dict(checkpoint=dict(interval=1000))
"""


def tiny_config(work: str) -> str:
    path = osp.join(work, 'tiny_supervised.py')
    with open(path, 'w') as f:
        f.write(TINY_CONFIG.format(base=osp.join(
            REPO_ROOT, 'configs', 'supervised_busi.py')))
    return path


def train_cmd(root: str, work: str, *extra: str) -> List[str]:
    split = busi_split(root, osp.join(work, 'split.json'))
    return [sys.executable, osp.join(REPO_ROOT, 'tools', 'train.py'),
            tiny_config(work), '--data-root', root, '--split-file', split,
            '--work-dir', osp.join(work, 'run'), *extra]


def tiny_checkpoint(work: str) -> str:
    """An untrained checkpoint of :data:`TINY_CONFIG`, as a run saves it
    (``meta['cfg']`` holds the config text)."""
    from mmengine.registry import init_default_scope

    from hermes_mm.registry import MODELS
    from hermes_mm.utils import load_config
    init_default_scope('mmseg')
    cfg = load_config(tiny_config(work))
    text = cfg.pretty_text  # saved before the SyncBN -> BN edit below
    bn = dict(type='BN', requires_grad=True)  # the Runner reverts SyncBN
    for part in ('backbone', 'task_neck', 'decode_head'):
        cfg.model[part].norm_cfg = bn
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    path = osp.join(work, 'run', 'iter_2.pth')
    os.makedirs(osp.dirname(path), exist_ok=True)
    torch.save(dict(state_dict=model.state_dict(),
                    meta=dict(cfg=text, iter=2)), path)
    return path


def exif_jpeg(path: str, bgr: np.ndarray, orientation: int = 6) -> None:
    from PIL import Image
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(np.ascontiguousarray(bgr[..., ::-1])).save(
        path, 'JPEG', quality=95, exif=exif.tobytes())


def as_exif_jpeg(root: str, cls: str, square: bool) -> str:
    """Replace an image by a JPEG with EXIF orientation 6 (same pixels);
    its mask stays as it is (square: cropped with the image) or is
    rotated as if drawn on the displayed view. Returns the image path."""
    img = first(root, cls, index=-1)
    bgr = cv2.imread(img)
    mask = cv2.imread(mask_of(img), cv2.IMREAD_UNCHANGED)
    if square:
        side = min(bgr.shape[:2])
        bgr, mask = bgr[:side, :side], mask[:side, :side]
    else:
        mask = np.ascontiguousarray(np.rot90(mask, -1))
    os.remove(img)
    jpg = img[:-len('.png')] + '.jpg'
    exif_jpeg(jpg, bgr)
    cv2.imwrite(mask_of(img), mask)
    return jpg


def load_pair(img: str, mask: str) -> dict:
    from hermes_mm.datasets.transforms import LoadImageAsStored
    return LoadMultiTaskAnnotations()(LoadImageAsStored()(dict(
        img_path=img, seg_map_paths=[mask], has_mask=True, gt_label=0,
        seg_fields=[])))


def case_exif_square(root, work):
    jpg = as_exif_jpeg(root, 'benign', square=True)
    mask_path = mask_of(jpg[:-len('.jpg')] + '.png')
    # a bright lesion band on the left of the stored pixels, its mask
    bgr = cv2.imread(jpg, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    mask = np.zeros(bgr.shape[:2], np.uint8)
    mask[:, :bgr.shape[1] // 4] = 255
    bgr[mask > 0], bgr[mask == 0] = 250, 20
    exif_jpeg(jpg, bgr)
    cv2.imwrite(mask_path, mask)

    def trigger():
        out = load_pair(jpg, mask_path)
        lesion = out['gt_seg_map'].astype(bool)
        inside = out['img'][lesion].mean()
        outside = out['img'][~lesion].mean()
        rotated = cv2.imread(jpg, cv2.IMREAD_COLOR)[lesion].mean()
        assert inside > 200 and outside < 60, (inside, outside)
        return (f'handled: read as stored (EXIF ignored for image and mask '
                f'alike); mean image value inside the mask {inside:.0f}, '
                f'outside {outside:.0f} (OpenCV default, EXIF-rotated: '
                f'{rotated:.0f} inside). tools/check_dataset.py reports '
                f'[exif_orientation].')
    return 'LoadImageAsStored + LoadMultiTaskAnnotations', trigger


def case_exif_rotated_mask(root, work):
    jpg = as_exif_jpeg(root, 'malignant', square=False)
    mask_path = mask_of(jpg[:-len('.jpg')] + '.png')
    return 'LoadImageAsStored + LoadMultiTaskAnnotations', \
        lambda: load_pair(jpg, mask_path)


def case_12_bit(root, work):
    img = first(root, 'normal')
    grey = cv2.imread(img, cv2.IMREAD_GRAYSCALE).astype(np.uint16) * 16
    grey[0, 0] = 4095  # 12-bit data: 0-4095
    cv2.imwrite(img, grey)

    def trigger():
        from hermes_mm.datasets.transforms import LoadImageAsStored
        loaded = LoadImageAsStored()(dict(img_path=img))['img']
        expected = grey.mean() * 255 / 4095
        opencv = cv2.imread(img, cv2.IMREAD_COLOR).mean()
        assert abs(loaded.mean() - expected) < 1, (loaded.mean(), expected)
        return (f'handled: loaded mean {loaded.mean():.1f}, expected '
                f'{expected:.1f} (data x 255/4095); OpenCV default (/256) '
                f'gives {opencv:.1f}. tools/check_dataset.py reports '
                f'[low_bit_depth].')
    return 'LoadImageAsStored (hermes_mm.utils.image_io)', trigger


def case_busy_work_dir(root, work):
    import socket
    cmd = train_cmd(root, work)
    run_dir = osp.join(work, 'run')
    os.makedirs(run_dir)

    def trigger():
        first_run = subprocess.Popen([sys.executable, '-c',
                                      'import time; time.sleep(120)'])
        try:
            with open(osp.join(run_dir, 'train.lock'), 'w') as f:
                json.dump(dict(pid=first_run.pid, host=socket.gethostname(),
                               process_start=None, started='(earlier)',
                               config='configs/hermes_busi.py',
                               argv=['tools/train.py',
                                     'configs/hermes_busi.py']), f)
            run_cli(cmd)
        finally:
            first_run.kill()
            first_run.wait()
    return 'tools/train.py in a work_dir another run holds', trigger


def case_resume_nothing(root, work):
    return 'tools/train.py --resume (mistyped --work-dir)', \
        lambda: run_cli(train_cmd(root, work, '--resume'))


def case_resume_fallback(root, work):
    import logging

    from mmengine.config import Config
    from mmengine.logging import MMLogger

    from hermes_mm.apis.resume import resolve_resume
    run = osp.join(work, 'run')
    os.makedirs(run)
    for it in (2, 4):
        torch.save({'state_dict': {}}, osp.join(run, f'iter_{it}.pth'))
    with open(osp.join(run, 'iter_6.pth'), 'wb') as f:
        f.write(b'PK\x03\x04 truncated')

    def trigger():
        cfg = Config(dict(work_dir=run, load_from=None))
        stream = io.StringIO()
        handler = logging.StreamHandler(stream)
        logger = MMLogger.get_current_instance()
        logger.addHandler(handler)
        try:
            path = resolve_resume(cfg, True)
        finally:
            logger.removeHandler(handler)
        assert osp.basename(path) == 'iter_4.pth' and cfg.resume
        return 'handled: ' + stream.getvalue().strip()
    return 'tools/train.py --resume (resolve_resume), no last_checkpoint', \
        trigger


def case_cfg_typo_hook(root, work):
    return ('tools/train.py --cfg-options '
            'default_hooks.checkpoint.intervall=2'), lambda: run_cli(
                train_cmd(root, work, '--cfg-options',
                          'default_hooks.checkpoint.intervall=2'))


def case_cfg_typo_keys(root, work):
    from hermes_mm.utils import load_config
    from hermes_mm.utils.cfg_options import check_cfg_options
    cfg = load_config(tiny_config(work))
    return ('tools/train.py --cfg-options model.test_cfg.min_lesion_are=0.5 '
            'randomnes.seed=5 (check_cfg_options)'), lambda: \
        check_cfg_options(cfg, {'model.test_cfg.min_lesion_are': 0.5,
                                'randomnes.seed': 5})


def case_hook_arg_allowed_new(root, work):
    return ('tools/train.py --allow-new-cfg-keys --cfg-options '
            'default_hooks.checkpoint.intervall=2'), lambda: run_cli(
                train_cmd(root, work, '--allow-new-cfg-keys',
                          '--cfg-options',
                          'default_hooks.checkpoint.intervall=2'))


def case_empty_val_mask(root, work):
    cmd = train_cmd(root, work)
    with open(osp.join(work, 'split.json')) as f:
        val_image = json.load(f)['val'][0]
    open(mask_of(osp.join(root, val_image)), 'wb').close()
    return 'tools/train.py (0-byte mask in the val subset)', \
        lambda: run_cli(cmd)


def _full_disk_save(obj, f, *args, **kwargs):
    """``torch.save`` onto a disk that fills up after 100 bytes."""

    class FullDisk(io.RawIOBase):
        written = 0

        def writable(self):
            return True

        def write(self, data):
            self.written += len(data)
            if self.written > 100:
                raise OSError(errno.ENOSPC, 'No space left on device')
            return len(data)

    torch.serialization.save(obj, FullDisk())


def case_disk_full(root, work):
    from mmengine.runner import checkpoint as checkpoint_module
    path = osp.join(work, 'iter_8.pth')
    checkpoint_module.save_checkpoint({'w': torch.zeros(3)}, path)

    def trigger():
        real = torch.save
        torch.save = _full_disk_save
        try:
            checkpoint_module.save_checkpoint({'w': torch.zeros(1000)}, path)
        finally:
            torch.save = real
    return 'MMEngine save_checkpoint (patched; ENOSPC simulated)', trigger


def case_resume_shape_change(root, work):
    cmd = train_cmd(root, work, '--resume', '--cfg-options',
                    'model.decode_head.channels=32')
    ckpt = tiny_checkpoint(work)
    with open(osp.join(work, 'run', 'last_checkpoint'), 'w') as f:
        f.write(ckpt)
    return 'tools/train.py --resume after decode_head.channels 16 -> 32', \
        lambda: run_cli(cmd)


def case_infer_corrupt(root, work):
    ckpt = tiny_checkpoint(work)
    folder = osp.join(work, 'in')
    os.makedirs(folder)
    for cls in ('benign', 'malignant', 'normal'):
        shutil.copy(first(root, cls), osp.join(folder, f'{cls}.png'))
    with open(osp.join(folder, 'corrupt.png'), 'wb') as f:
        f.write(b'\x89PNG\r\n\x1a\n truncated')
    out = osp.join(work, 'out')
    cmd = [sys.executable, osp.join(REPO_ROOT, 'tools', 'infer.py'),
           tiny_config(work), ckpt, folder, '--out-dir', out,
           '--device', 'cpu']

    def trigger():
        proc = subprocess.run(cmd, capture_output=True, text=True)
        with open(osp.join(out, 'predictions.csv'), newline='') as f:
            rows = list(csv.DictReader(f))
        bad = [r for r in rows if r['error']]
        assert proc.returncode == 0 and len(rows) == 4 and len(bad) == 1, \
            (proc.returncode, rows, proc.stderr[-2000:])
        said = [ln.strip() for ln in proc.stderr.splitlines()
                if 'could not be processed' in ln]
        return (f'handled: exit {proc.returncode}, '
                f'{len(rows) - len(bad)} of {len(rows)} images predicted; '
                f'stderr: {said[0] if said else "(none)"} CSV row '
                f'{bad[0]["image"]!r}, error column: {bad[0]["error"]}')
    return 'tools/infer.py on a folder with one corrupt PNG', trigger


CASES: Dict[str, Callable] = {
    'image cannot be decoded': case_undecodable,
    'labelled image without mask': case_missing_mask,
    'mask size differs from image': case_mask_size,
    'mask with values other than 0/255': case_non_binary_mask,
    'class folder not in metainfo': case_unknown_class,
    'split names a file that does not exist': case_split_unknown_file,
    'split lists a file in two subsets': case_split_two_subsets,
    'split without a labelled image of a class': case_split_class_unlabelled,
    'empty data root': case_empty_root,
    'label ratio outside (0, 1]': case_bad_ratio,
    'non-finite loss': case_non_finite_loss,
    'truncated checkpoint': case_corrupt_checkpoint,
    'checkpoint with a pickled os.system call': case_unsafe_checkpoint,
    # issue 19
    'EXIF orientation 6, square JPEG': case_exif_square,
    'EXIF orientation 6, mask drawn on the rotated view':
    case_exif_rotated_mask,
    '12-bit data in a 16-bit PNG': case_12_bit,
    'second training in a work_dir in use': case_busy_work_dir,
    '--resume with nothing to resume': case_resume_nothing,
    '--resume without last_checkpoint': case_resume_fallback,
    'hook argument typo in --cfg-options': case_cfg_typo_hook,
    'config key typos in --cfg-options': case_cfg_typo_keys,
    'hook argument typo passed as a new key': case_hook_arg_allowed_new,
    '0-byte mask in the validation subset': case_empty_val_mask,
    'disk full while saving a checkpoint': case_disk_full,
    '--resume after a channel change': case_resume_shape_change,
    'corrupt image given to tools/infer.py': case_infer_corrupt,
}


class CLIError(Exception):
    """A command-line tool exited non-zero; the message is its stderr."""


#: The first line of a Python exception at the end of a traceback.
_EXCEPTION_LINE = re.compile(r'^[A-Za-z_][\w.]*(Error|Exception|Exit)\b')


def run_cli(cmd: List[str]) -> None:
    """Run a tool; on a non-zero exit raise :class:`CLIError` with its
    final exception (every line of it) or the last line of stderr."""
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln]
        start = max(len(lines) - 1, 0)
        for i in range(len(lines) - 1, -1, -1):
            if _EXCEPTION_LINE.match(lines[i]):
                start = i
                break
        raise CLIError(f'exit {proc.returncode}: ' + ' '.join(lines[start:]))


def run_case(name: str, damage: Callable, clean: str, tmp: str) -> dict:
    root = osp.join(tmp, 'BUSI')
    work = osp.join(tmp, 'work')
    shutil.copytree(clean, root)
    os.makedirs(work)
    entry, trigger = damage(root, work)
    before = checksums(root)
    handled = False
    try:
        found = trigger()
        handled = isinstance(found, str) and found.startswith('handled')
        error, message = None, found if handled else '(nothing raised)'
    except Exception as e:  # noqa: BLE001 -- the report records any error
        error, message = type(e).__name__, str(e)
    after = checksums(root)
    return dict(case=name, entry_point=entry, error=error, message=message,
                handled=handled, data_unchanged=before == after,
                files=len(before))


def check_dataset_all(clean: str, tmp: str) -> dict:
    """All data problems at once, through tools/check_dataset.py."""
    root = osp.join(tmp, 'BUSI')
    work = osp.join(tmp, 'work')
    shutil.copytree(clean, root)
    os.makedirs(work)
    for damage in (case_undecodable, case_missing_mask, case_mask_size,
                   case_non_binary_mask, case_unknown_class,
                   case_exif_rotated_mask, case_12_bit):
        damage(root, work)
    # BUSI's known issues: an exact duplicate, one image in two classes
    img = first(root, 'benign', index=1)
    dup = osp.join(root, 'benign', 'benign (99).png')
    shutil.copy(img, dup)
    shutil.copy(mask_of(img), mask_of(dup))
    img = first(root, 'benign', index=2)
    other = osp.join(root, 'malignant', 'malignant (99).png')
    shutil.copy(img, other)
    shutil.copy(mask_of(img), mask_of(other))
    split = busi_split(clean, osp.join(work, 'split.json'),
                       test=lambda s: s['test'] + ['benign/ghost (1).png'])
    before = checksums(root)
    report = osp.join(work, 'report.json')
    cmd = [sys.executable, osp.join(REPO_ROOT, 'tools', 'check_dataset.py'),
           root, '--split-file', split, '--json', report]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    after = checksums(root)
    with open(report) as f:
        problems = json.load(f)['problems']
    kinds: Dict[str, int] = {}
    for p in problems:
        kinds[p['kind']] = kinds.get(p['kind'], 0) + 1
    return dict(command='tools/check_dataset.py BUSI --split-file S '
                '--json R', exit_code=proc.returncode, problem_kinds=kinds,
                stdout_tail=proc.stdout[-3000:],
                data_unchanged=before == after)


def markdown(results: List[dict], check: dict) -> str:
    rows = ['| bad input | entry point | error / outcome | message | '
            'data unchanged |',
            '|---|---|---|---|---|']
    for r in results:
        msg = ' '.join(r['message'].split())
        if len(msg) > MESSAGE_CHARS:
            msg = msg[:MESSAGE_CHARS] + ' ...'
        msg = msg.replace('|', '\\|')
        outcome = r['error'] or ('handled' if r['handled'] else '-')
        rows.append(f"| {r['case']} | {r['entry_point']} | {outcome} | "
                    f"{msg} | "
                    f"{'yes' if r['data_unchanged'] else 'NO'} "
                    f"({r['files']} files) |")
    rows += ['', f"`{check['command']}` on one folder with all data "
             f"problems: exit {check['exit_code']}, problems by kind "
             f"{check['problem_kinds']}, data unchanged: "
             f"{'yes' if check['data_unchanged'] else 'NO'}."]
    return '\n'.join(rows) + '\n'


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0])
    parser.add_argument('--out', default=osp.join(
        REPO_ROOT, 'benchmarks', 'runs', 'bad_inputs'),
        help='output prefix: <out>.json and <out>.md')
    args = parser.parse_args(argv)
    start = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        clean = osp.join(tmp, 'clean')
        generate_synthetic_busi(clean, num=24, seed=0, size_range=(48, 64))
        results = []
        for i, (name, damage) in enumerate(CASES.items()):
            case_tmp = osp.join(tmp, f'case{i}')
            results.append(run_case(name, damage, clean, case_tmp))
        check = check_dataset_all(clean, osp.join(tmp, 'all'))
    table = markdown(results, check)
    print(table)
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    write_json(args.out + '.json', dict(
        benchmark='bad_inputs', environment=environment(), cases=results,
        check_dataset=check, wall_time_s=round(time.time() - start, 1)))
    with open(args.out + '.md', 'w') as f:
        f.write(table)
    failed = [r['case'] for r in results
              if (r['error'] is None and not r['handled'])
              or r['error'] == 'AssertionError' or not r['data_unchanged']]
    if failed or not check['data_unchanged'] or check['exit_code'] != 1:
        print(f'UNEXPECTED: {failed or "check_dataset"}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
