"""Tests of tools/check_dataset.py (and hermes_mm.datasets.dataset_check).

One messy BUSI-layout folder holds one instance of every problem the tool
knows; the tool must report all of them in one run, name each file and
what was expected, exit 1, and leave every byte of the folder unchanged.
"""
import hashlib
import importlib.util
import json
import os
import os.path as osp

import cv2
import numpy as np
import pytest

from hermes_mm.datasets.dataset_check import PROBLEM_KINDS
from hermes_mm.datasets.synthetic import generate_synthetic_busi

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOL = osp.join(REPO, 'tools', 'check_dataset.py')
H, W = 12, 16


def load_tool():
    spec = importlib.util.spec_from_file_location('check_dataset_tool', TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def snapshot(root):
    """sha256 of every file under ``root`` (and so the file list)."""
    out = {}
    for dirpath, dirnames, files in os.walk(root):
        for name in files + [d + '/' for d in dirnames]:
            path = osp.join(dirpath, name)
            rel = osp.relpath(path, root)
            if name.endswith('/'):
                out[rel] = 'dir'
                continue
            with open(path, 'rb') as f:
                out[rel] = hashlib.sha256(f.read()).hexdigest()
    return out


def write(root, rel, array, params=()):
    path = osp.join(root, rel)
    os.makedirs(osp.dirname(path), exist_ok=True)
    assert cv2.imwrite(path, array, list(params)), path


def write_exif_jpeg(path, array, orientation=6):
    """A JPEG whose EXIF asks viewers to rotate it (pixels as given)."""
    from PIL import Image
    exif = Image.Exif()
    exif[0x0112] = orientation
    os.makedirs(osp.dirname(path), exist_ok=True)
    Image.fromarray(np.ascontiguousarray(array[..., ::-1])).save(
        path, 'JPEG', quality=95, exif=exif.tobytes())


def make_messy_busi(root):
    """One problem of each kind; returns the split it also writes."""
    rng = np.random.default_rng(0)

    def img():
        return rng.integers(0, 256, (H, W, 3), dtype=np.uint8)

    mask = np.zeros((H, W), np.uint8)
    mask[2:6, 3:9] = 255
    empty = np.zeros((H, W), np.uint8)
    # clean pairs
    b1 = img()
    write(root, 'benign/benign (1).png', b1)
    write(root, 'benign/benign (1)_mask.png', mask)
    write(root, 'normal/normal (1).png', img())
    write(root, 'normal/normal (1)_mask.png', empty)
    # undecodable image (its mask is fine)
    with open(osp.join(root, 'benign', 'benign (2).png'), 'wb') as f:
        f.write(b'<html>404 not found</html>')
    write(root, 'benign/benign (2)_mask.png', mask)
    # mask of another size
    write(root, 'benign/benign (3).png', img())
    write(root, 'benign/benign (3)_mask.png', np.zeros((H + 2, W), np.uint8))
    # image without a mask, mask without an image
    write(root, 'benign/benign (4).png', img())
    write(root, 'benign/benign (6)_mask.png', mask)
    # non-binary mask (JPEG-like border values)
    soft = mask.copy()
    soft[6, 3:9] = 128
    soft[7, 3:9] = 7
    write(root, 'benign/benign (5).png', img())
    write(root, 'benign/benign (5)_mask.png', soft)
    # neither image nor mask; a sub-folder
    with open(osp.join(root, 'benign', 'notes.txt'), 'w') as f:
        f.write('scanner settings')
    os.makedirs(osp.join(root, 'benign', 'extra'))
    # byte-identical copy in the same class
    b8 = img()
    write(root, 'benign/benign (8).png', b8)
    write(root, 'benign/benign (8)_mask.png', mask)
    write(root, 'benign/benign (9).png', b8)
    write(root, 'benign/benign (9)_mask.png', mask)
    # the same pixels under another class, encoded differently
    write(root, 'malignant/malignant (1).png', b1,
          (cv2.IMWRITE_PNG_COMPRESSION, 0))
    write(root, 'malignant/malignant (1)_mask.png', mask)
    # undecodable mask
    write(root, 'malignant/malignant (2).png', img())
    with open(osp.join(root, 'malignant', 'malignant (2)_mask.png'),
              'wb') as f:
        f.write(b'')
    # EXIF orientation 6 (rotate 90 for display); the mask was drawn on
    # the rotated view, so it is W x H
    write_exif_jpeg(osp.join(root, 'malignant', 'malignant (3).jpg'), img())
    write(root, 'malignant/malignant (3)_mask.png',
          np.zeros((W, H), np.uint8))
    # 12-bit data in a 16-bit PNG
    write(root, 'normal/normal (2).png',
          rng.integers(0, 4096, (H, W), dtype=np.uint16))
    write(root, 'normal/normal (2)_mask.png', empty)
    # a folder of images that is not a class
    write(root, 'Benign/benign (1).png', img())
    split = dict(
        labeled=['benign/benign (1).png', 'malignant/malignant (1).png'],
        unlabeled=['benign/benign (3).png', 'benign/ghost.png'],
        val=['benign/benign (1).png'],
        test=['normal/normal (1).png'])
    return split


# (kind, path, fragments of the message) the tool must report.
EXPECTED = [
    ('unknown_class_folder', 'Benign', ["'Benign' is not one of the "
                                        "classes"]),
    ('undecodable', 'benign/benign (2).png',
     ['26 bytes', 'expected a complete PNG, JPEG']),
    ('mask_size_mismatch', 'benign/benign (3)_mask.png',
     [f'{H + 2}x{W} (HxW)', f"'benign/benign (3).png' is {H}x{W}"]),
    ('missing_mask', 'benign/benign (4).png',
     ["expected 'benign (4)_mask.png'"]),
    ('orphan_mask', 'benign/benign (6)_mask.png',
     ["expected an image 'benign (6)'"]),
    ('mask_not_binary', 'benign/benign (5)_mask.png',
     ['besides 0 and 255', '2 value(s): 7, 128', 'in 12 pixel(s)',
      '> 127']),
    ('not_image_or_mask', 'benign/notes.txt', ['neither an image nor a mask',
                                               "'.png'"]),
    ('not_image_or_mask', 'benign/extra', ['sub-folders are not read']),
    ('duplicate_image', 'benign/benign (8).png',
     ["class 'benign'", 'identical files', "'benign/benign (9).png'"]),
    ('cross_class_duplicate', 'benign/benign (1).png',
     ["['benign', 'malignant']", 'identical pixels (different files)',
      "'malignant/malignant (1).png'"]),
    ('undecodable', 'malignant/malignant (2)_mask.png',
     ['could not be decoded', 'Expected a 0/255 lesion mask']),
    ('exif_orientation', 'malignant/malignant (3).jpg',
     ['EXIF orientation 6 (rotated 90 degrees clockwise for display)',
      f'read as stored, {H}x{W} HxW']),
    ('mask_size_mismatch', 'malignant/malignant (3)_mask.png',
     [f'{W}x{H} (HxW)', 'EXIF orientation 6',
      'The mask matches the rotated view']),
    ('low_bit_depth', 'normal/normal (2).png',
     ['16-bit image uses values up to 40', 'less than 1/8',
      'as 12-bit data (full scale 4095 -> 255)']),
]
EXPECTED_SPLIT = [
    ["'benign/benign (1).png' is listed in both 'labeled' and 'val'"],
    ["'benign/ghost.png' (in ['unlabeled']) is not an image of the data"],
    ["no image of class(es) ['normal']"],
]


@pytest.fixture
def messy(tmp_path):
    root = str(tmp_path / 'BUSI')
    split = make_messy_busi(root)
    split_file = tmp_path / 'split.json'
    split_file.write_text(json.dumps(split))
    return root, str(split_file)


def test_reports_every_problem_and_writes_nothing(messy, tmp_path, capsys):
    root, split_file = messy
    before = snapshot(root)
    out = tmp_path / 'reports' / 'report.json'
    code = load_tool().main([root, '--split-file', split_file, '--json',
                             str(out)])
    assert code == 1
    assert snapshot(root) == before  # every byte, no new file

    report = json.loads(out.read_text())
    assert report['clean'] is False
    problems = report['problems']
    found = [(p['kind'], p['path']) for p in problems]
    for kind, path, fragments in EXPECTED:
        matches = [p for p in problems
                   if p['kind'] == kind and p['path'] == path]
        assert len(matches) == 1, (kind, path, found)
        for fragment in fragments:
            assert fragment in matches[0]['message'], (fragment, matches)
    split_msgs = [p['message'] for p in problems if p['kind'] == 'split']
    assert len(split_msgs) == len(EXPECTED_SPLIT)
    for fragments, message in zip(EXPECTED_SPLIT, split_msgs):
        assert 'split.json' in message
        assert all(f in message for f in fragments), message
    # nothing else: the clean files raised no problem
    assert len(problems) == len(EXPECTED) + len(EXPECTED_SPLIT), found
    assert set(report['counts']) <= set(PROBLEM_KINDS)
    assert report['num_images'] == 12 and report['num_masks'] == 12

    printed = capsys.readouterr().out
    assert '[mask_not_binary] benign/benign (5)_mask.png:' in printed
    assert f'{len(problems)} problem(s)' in printed


def test_clean_set_exits_zero(tmp_path, capsys):
    root = str(tmp_path / 'clean')
    generate_synthetic_busi(root, num=6, seed=1, size_range=(32, 40))
    before = snapshot(root)
    assert load_tool().main([root]) == 0
    assert 'no problem found' in capsys.readouterr().out
    assert snapshot(root) == before


def test_empty_and_missing_root(tmp_path, capsys):
    tool = load_tool()
    (tmp_path / 'empty').mkdir()
    assert tool.main([str(tmp_path / 'empty')]) == 1
    assert "[data_root] .: data root" in capsys.readouterr().out
    assert tool.main([str(tmp_path / 'nowhere')]) == 1
    assert 'does not exist' in capsys.readouterr().out


def test_refuses_json_inside_data_root(messy, capsys):
    root, _ = messy
    before = snapshot(root)
    with pytest.raises(SystemExit) as err:
        load_tool().main([root, '--json', osp.join(root, 'report.json')])
    assert err.value.code == 2
    assert 'never writes into the data set' in capsys.readouterr().err
    assert snapshot(root) == before


def test_annotation_file_mode(tmp_path):
    root = tmp_path / 'TN3K'
    write(str(root), 'img/a.png', np.full((H, W, 3), 7, np.uint8))
    write(str(root), 'img/b.png', np.full((H, W, 3), 9, np.uint8))
    write(str(root), 'img/c.png', np.full((H, W, 3), 11, np.uint8))
    write(str(root), 'mask/a.png', np.zeros((H, W), np.uint8))
    lines = [
        {'img': 'img/a.png', 'masks': ['mask/a.png'], 'label': 'benign'},
        {'img': 'img/b.png', 'masks': ['mask/gone.png'], 'label': 0},
        {'img': 'img/a.png', 'label': 'benign'},
        {'img': 'img/c.png', 'label': 'cyst'},
    ]
    (root / 'ann.jsonl').write_text(
        '\n'.join(json.dumps(x) for x in lines) + '\n{broken\n')
    before = snapshot(str(root))
    out = tmp_path / 'r.json'
    code = load_tool().main([str(root), '--ann-file', 'ann.jsonl',
                             '--cls-classes', 'benign', 'malignant',
                             '--json', str(out)])
    assert code == 1 and snapshot(str(root)) == before
    messages = [p['message'] for p in json.loads(out.read_text())['problems']]
    expected = [
        ('line 2', 'mask/gone.png', 'not found'),
        ('line 3', "already listed on line 1"),
        ('line 4', "unknown label 'cyst'", "['benign', 'malignant']"),
        ('line 5', 'invalid JSON'),
    ]
    assert len(messages) == len(expected), messages
    for fragments, message in zip(expected, messages):
        assert 'ann.jsonl' in message
        assert all(f in message for f in fragments), message
