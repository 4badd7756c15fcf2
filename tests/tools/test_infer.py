"""tools/infer.py: the DESIGN §3 contract (overlay PNG per image,
D/predictions.csv with image, predicted class, prob_<class>..., lesion
area), run as a script on folders with clashing file names."""
import csv
import os.path as osp
import runpy
import shutil
import sys

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

import hermes_mm  # noqa: F401
from hermes_mm.datasets.synthetic_busi_dataset import ensure_synthetic_busi
from hermes_mm.registry import MODELS
from hermes_mm.utils import rewrite_datasets

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG = osp.join(REPO, 'tests', 'apis', 'configs', 'tiny_multitask.py')
CLASSES = ('benign', 'malignant', 'normal')


@pytest.fixture
def one_thread():
    """Test speed only (two threads contend on a shared 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def run_infer(argv):
    old = sys.argv
    sys.argv = [osp.join(REPO, 'tools', 'infer.py')] + argv
    try:
        return runpy.run_path(sys.argv[0], run_name='__main__')
    finally:
        sys.argv = old


def tiny_checkpoint(tmp_path):
    """A synthetic data root and an untrained model's checkpoint."""
    data_root = ensure_synthetic_busi(
        str(tmp_path / 'data'), num=24, seed=0)
    init_default_scope('mmseg')
    cfg = Config.fromfile(CONFIG)
    rewrite_datasets(cfg, data_root=data_root)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    checkpoint = str(tmp_path / 'model.pth')
    torch.save(dict(state_dict=model.state_dict()), checkpoint)
    return data_root, checkpoint


def test_infer_tool(tmp_path, one_thread, capsys):
    data_root, checkpoint = tiny_checkpoint(tmp_path)

    # Two hospitals export the same file names; one loose file.
    sources = {
        'hospital_a/001.png': osp.join(data_root, 'benign', 'benign (1).png'),
        'hospital_a/002.png': osp.join(data_root, 'normal', 'normal (1).png'),
        'hospital_b/001.png': osp.join(data_root, 'malignant',
                                       'malignant (1).png'),
        'loose/003.png': osp.join(data_root, 'benign', 'benign (2).png'),
    }
    for rel, src in sources.items():
        (tmp_path / 'in' / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, tmp_path / 'in' / rel)
    out_dir = tmp_path / 'out'
    run_infer([
        CONFIG, checkpoint,
        str(tmp_path / 'in' / 'hospital_a'),
        str(tmp_path / 'in' / 'hospital_b'),
        str(tmp_path / 'in' / 'loose' / '003.png'), '--out-dir',
        str(out_dir), '--device', 'cpu', '--batch-size', '2'
    ])
    assert '4 images' in capsys.readouterr().out

    with open(out_dir / 'predictions.csv', newline='') as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ['image', 'predicted_class'] + [
        f'prob_{c}' for c in CLASSES
    ] + ['lesion_area', 'error']
    assert [r['image'] for r in rows] == sorted(sources)
    assert all(r['error'] == '' for r in rows)
    for row in rows:
        probs = np.array([float(row[f'prob_{c}']) for c in CLASSES])
        assert probs.sum() == pytest.approx(1.0, abs=1e-5)
        assert row['predicted_class'] == CLASSES[int(probs.argmax())]
        image = cv2.imread(sources[row['image']])
        assert 0 <= int(row['lesion_area']) <= image.shape[0] * image.shape[1]
        # One overlay per input, same size, not overwritten by its
        # same-named sibling from the other folder.
        overlay = cv2.imread(str(out_dir / row['image']))
        assert overlay.shape == image.shape
        assert (overlay == image).mean() > 0.5
    a = cv2.imread(str(out_dir / 'hospital_a' / '001.png'))
    b = cv2.imread(str(out_dir / 'hospital_b' / '001.png'))
    assert a.shape != b.shape or not np.array_equal(a, b)
    assert len(list(out_dir.rglob('*.png'))) == len(sources)


def test_corrupt_image_is_skipped_and_reported(tmp_path, one_thread,
                                               capsys):
    data_root, checkpoint = tiny_checkpoint(tmp_path)
    folder = tmp_path / 'in'
    folder.mkdir()
    for i, cls in enumerate(CLASSES):
        shutil.copy(osp.join(data_root, cls, f'{cls} (1).png'),
                    folder / f'{i}.png')
    (folder / '1b.png').write_bytes(b'\x89PNG\r\n\x1a\n truncated')
    before = (folder / '1b.png').read_bytes()
    common = [CONFIG, checkpoint, str(folder), '--device', 'cpu',
              '--batch-size', '2']
    out = run_infer(common + ['--out-dir', str(tmp_path / 'out')])
    assert out is not None  # exit status 0: no SystemExit
    captured = capsys.readouterr()
    assert '3 images' in captured.out
    assert '1 image(s) could not be processed' in captured.err
    assert "1b.png: ValueError: Image '" in captured.err
    with open(tmp_path / 'out' / 'predictions.csv', newline='') as f:
        rows = {r['image']: r for r in csv.DictReader(f)}
    assert sorted(rows) == ['0.png', '1.png', '1b.png', '2.png']
    assert 'could not be decoded' in rows['1b.png']['error']
    assert rows['1b.png']['predicted_class'] == ''
    assert all(rows[n]['error'] == '' and rows[n]['predicted_class']
               for n in ('0.png', '1.png', '2.png'))
    assert not (tmp_path / 'out' / '1b.png').exists()
    assert (folder / '1b.png').read_bytes() == before

    with pytest.raises(SystemExit) as strict:
        run_infer(common + ['--out-dir', str(tmp_path / 'o2'), '--strict'])
    assert strict.value.code == 1
    with pytest.raises(SystemExit) as nothing:
        run_infer([CONFIG, checkpoint, str(folder / '1b.png'), '--device',
                   'cpu', '--out-dir', str(tmp_path / 'o3')])
    assert nothing.value.code == 1
