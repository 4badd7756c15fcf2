"""tools/misc/print_config.py and tools/misc/browse_dataset.py (issue 17,
point 8): MMSeg's versions fail on the CPU install (mmcv._ext) or cannot
show the class; ours run from a fresh interpreter and draw image | mask |
class after the pipeline."""
import json
import os
import os.path as osp
import subprocess
import sys

import cv2
import numpy as np
import pytest

from hermes_mm.visualization.browse import MASK_COLORS

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
HERMES = osp.join(REPO, 'configs', 'hermes_busi.py')


def test_print_config_from_a_fresh_interpreter(tmp_path):
    out = tmp_path / 'resolved.py'
    proc = subprocess.run(
        [sys.executable, 'tools/misc/print_config.py', HERMES,
         '--cfg-options', 'model.segmentor.backbone.init_cfg=None',
         '--out', str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
        env=dict(os.environ, PYTHONDONTWRITEBYTECODE='1'))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'mmcv._ext' not in proc.stderr
    assert "type='HermesSegmentor'" in proc.stdout
    assert out.is_file() and 'HermesSegmentor' in out.read_text()


@pytest.fixture
def busi(tmp_path, load_script):
    data = str(tmp_path / 'BUSI')
    assert load_script('tools/make_synthetic_busi.py').main(
        [data, '--num', '8', '--seed', '2', '--size', '64', '72']) == 0
    split = str(tmp_path / 'split.json')
    load_script('tools/make_split.py').main(
        [data, '--labeled-ratio', '0.5', '--out', split])
    return data, split


def test_browse_dataset_draws_every_view_with_its_class(busi, tmp_path,
                                                        load_script):
    data, split = busi
    out = tmp_path / 'browse'
    tool = load_script('tools/misc/browse_dataset.py')
    written = tool.main([HERMES, '--data-root', data, '--split-file', split,
                         '--output-dir', str(out), '--num', '0',
                         '--cfg-options', 'train_dataloader.num_workers=0'])
    with open(split) as f:
        subsets = json.load(f)
    labelled, unlabelled = subsets['labeled'], subsets['unlabeled']
    assert written == len(labelled) + 2 * len(unlabelled)
    crop = 256  # configs/_base_/datasets/busi.py
    for rel in labelled:
        panel = cv2.imread(str(out / (osp.splitext(rel)[0] + '_sup.png')))
        height, width = panel.shape[0], (panel.shape[1] - 2) // 2
        assert panel.shape[1] == 2 * width + 2  # image | mask
        assert height <= crop and width <= crop  # RandomCrop(256) ran
        mask = panel[40:, width + 2:, ::-1].reshape(-1, 3)
        colours = {tuple(c) for c in np.unique(mask, axis=0)}
        assert colours <= {MASK_COLORS['background'], MASK_COLORS['lesion'],
                           MASK_COLORS['ignored']}
        if not rel.startswith('normal/'):
            assert MASK_COLORS['lesion'] in colours or \
                MASK_COLORS['ignored'] in colours, rel
    for rel in unlabelled:
        for view in ('unsup_weak', 'unsup_strong'):
            assert (out / f'{osp.splitext(rel)[0]}_{view}.png').is_file()


def test_browse_panel_text():
    import torch
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample

    from hermes_mm.visualization.browse import browse_panels, class_name
    sample = SegDataSample()
    sample.gt_sem_seg = PixelData(data=torch.zeros(1, 8, 8, dtype=torch.long))
    sample.gt_label = torch.tensor([2])
    assert class_name(sample, ['benign', 'malignant', 'normal']) == 'normal'
    hidden = SegDataSample()
    hidden.hidden_label = torch.tensor([0])
    assert class_name(hidden, ['benign']) == 'unlabelled (hidden: benign)'
    assert class_name(SegDataSample(), ['benign']) == 'unlabelled'
    (branch, panel), = browse_panels(
        dict(inputs=torch.zeros(3, 8, 8, dtype=torch.uint8),
             data_samples=sample), ['a', 'b', 'c'])
    assert branch == '' and panel.shape == (8, 18, 3)
