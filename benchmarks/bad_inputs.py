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

Writes ``<out>.json`` and ``<out>.md`` (a markdown table) and prints the
table. The unit tests (tests/datasets, tests/reliability, tests/compat,
tests/tools/test_check_dataset.py) assert the same behaviour; this script
is the human-readable report of it.

    python benchmarks/bad_inputs.py --out benchmarks/runs/bad_inputs
"""
import argparse
import json
import os
import os.path as osp
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from typing import Callable, Dict, List

import cv2
import torch

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from _common import REPO_ROOT, environment, write_json  # noqa: E402

import hermes_mm  # noqa: E402,F401  (applies the compat patches)
from hermes_mm.datasets import BUSIDataset  # noqa: E402
from hermes_mm.datasets.splits import make_split, scan_busi  # noqa: E402
from hermes_mm.datasets.synthetic import generate_synthetic_busi  # noqa
from hermes_mm.datasets.transforms import LoadMultiTaskAnnotations  # noqa
from hermes_mm.utils import tree_checksums as checksums  # noqa: E402

#: How many characters of a message the markdown table shows.
MESSAGE_CHARS = 300


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
    from mmcv.transforms import LoadImageFromFile
    dataset = BUSIDataset(
        data_root=root,
        pipeline=[LoadImageFromFile(), LoadMultiTaskAnnotations()])
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
    return 'training pipeline: LoadImageFromFile', \
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
}


class CLIError(Exception):
    """A command-line tool exited non-zero; the message is its stderr."""


def run_cli(cmd: List[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln]
        raise CLIError(f'exit {proc.returncode}: ' + (lines[-1] if lines
                                                      else ''))


def run_case(name: str, damage: Callable, clean: str, tmp: str) -> dict:
    root = osp.join(tmp, 'BUSI')
    work = osp.join(tmp, 'work')
    shutil.copytree(clean, root)
    os.makedirs(work)
    entry, trigger = damage(root, work)
    before = checksums(root)
    try:
        trigger()
        error, message = None, '(nothing raised)'
    except Exception as e:  # noqa: BLE001 -- the report records any error
        error, message = type(e).__name__, str(e)
    after = checksums(root)
    return dict(case=name, entry_point=entry, error=error, message=message,
                data_unchanged=before == after, files=len(before))


def check_dataset_all(clean: str, tmp: str) -> dict:
    """All data problems at once, through tools/check_dataset.py."""
    root = osp.join(tmp, 'BUSI')
    work = osp.join(tmp, 'work')
    shutil.copytree(clean, root)
    os.makedirs(work)
    for damage in (case_undecodable, case_missing_mask, case_mask_size,
                   case_non_binary_mask, case_unknown_class):
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
    rows = ['| bad input | entry point | error | message | data unchanged |',
            '|---|---|---|---|---|']
    for r in results:
        msg = ' '.join(r['message'].split())
        if len(msg) > MESSAGE_CHARS:
            msg = msg[:MESSAGE_CHARS] + ' ...'
        msg = msg.replace('|', '\\|')
        rows.append(f"| {r['case']} | {r['entry_point']} | "
                    f"{r['error'] or '-'} | {msg} | "
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
              if r['error'] is None or not r['data_unchanged']]
    if failed or not check['data_unchanged'] or check['exit_code'] != 1:
        print(f'UNEXPECTED: {failed or "check_dataset"}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
