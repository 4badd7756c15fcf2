"""HermesVisualizer and its drawing helpers: exact pixels on tiny images,
panel layout, and what reaches the visualizer backends."""
import cv2
import numpy as np
import pytest
import torch
from mmengine.registry import VISBACKENDS
from mmengine.structures import PixelData
from mmengine.visualization import BaseVisBackend
from mmseg.structures import SegDataSample

from hermes_mm.registry import VISUALIZERS
from hermes_mm.visualization import HermesVisualizer
from hermes_mm.visualization.drawing import (DEFAULT_ZONE_PALETTE, ZONES,
                                             blend_mask, class_text, colorize,
                                             denormalize, draw_contour,
                                             format_prob, hconcat,
                                             lesion_text, overlay_lines,
                                             zone_map)

H, W = 40, 48
CLASSES = ('benign', 'malignant', 'normal')


@VISBACKENDS.register_module(force=True)
class RecordingVisBackend(BaseVisBackend):
    """Keeps every image it is given (a stand-in for TensorBoard/W&B)."""

    def __init__(self, save_dir=None):
        super().__init__(save_dir)
        self.images = []

    def _init_env(self):
        pass

    @property
    def experiment(self):
        return self

    def add_image(self, name, image, step=0, **kwargs):
        self.images.append((name, image.copy(), step))


def _image(seed=0):
    return np.random.default_rng(seed).integers(0, 256, (H, W, 3), np.uint8)


def _rect_mask():
    mask = np.zeros((H, W), np.uint8)
    mask[20:30, 10:40] = 1
    return mask


def _sample(gt_label=1, scores=(0.05, 0.87, 0.08)):
    mask = torch.from_numpy(_rect_mask()).long()[None]
    sample = SegDataSample()
    sample.gt_sem_seg = PixelData(data=mask)
    sample.pred_sem_seg = PixelData(data=torch.zeros_like(mask))
    sample.gt_label = torch.tensor([gt_label])
    sample.pred_score = torch.tensor(scores)
    return sample


@pytest.fixture
def visualizer(tmp_path):
    vis = VISUALIZERS.build(
        dict(
            type='HermesVisualizer',
            name=f'vis_{tmp_path.name}',
            vis_backends=[dict(type='RecordingVisBackend')],
            save_dir=str(tmp_path),
            alpha=0.5))
    vis.dataset_meta = dict(
        classes=('background', 'lesion'),
        palette=[[0, 0, 0], [255, 0, 0]],
        cls_classes=CLASSES)
    return vis


def test_zone_map_codes_and_colours():
    reliable = np.array([[1, 1, 0, 0, 1]], bool)
    ambiguous = np.array([[0, 0, 1, 0, 0]], bool)
    label = np.array([[1, 0, 1, 1, 1]])
    region = np.array([[1, 1, 1, 1, 0]], bool)
    codes = zone_map(reliable, ambiguous, label, region, lesion_index=1)
    names = [ZONES[c] for c in codes[0]]
    assert names == [
        'reliable_lesion', 'reliable_background', 'ambiguous', 'unreliable',
        'outside'
    ]
    palette = [DEFAULT_ZONE_PALETTE[z] for z in ZONES]
    assert colorize(codes, palette)[0].tolist() == [
        list(DEFAULT_ZONE_PALETTE[n]) for n in names
    ]
    # Tensors work too, and the lesion index is respected.
    swapped = zone_map(
        torch.from_numpy(reliable), torch.from_numpy(ambiguous),
        torch.from_numpy(label), None, lesion_index=0)
    assert ZONES[swapped[0, 0]] == 'reliable_background'
    assert ZONES[swapped[0, 1]] == 'reliable_lesion'


def test_blend_and_contour_touch_only_the_lesion():
    image, mask = _image(), _rect_mask()
    blended = blend_mask(image, mask, (255, 0, 0), alpha=0.5)
    expected = (image[mask > 0] * 0.5 + np.array([255, 0, 0]) * 0.5).astype(
        np.uint8)
    np.testing.assert_array_equal(blended[mask > 0], expected)
    np.testing.assert_array_equal(blended[mask == 0], image[mask == 0])

    outlined = draw_contour(image, mask, (0, 255, 0), thickness=1)
    changed = (outlined != image).any(axis=2)
    border = mask.astype(bool) & ~cv2.erode(mask, np.ones((3, 3))).astype(
        bool)
    assert changed[border].all() and not changed[~border].any()
    assert (outlined[border] == (0, 255, 0)).all()
    # An empty mask draws nothing.
    np.testing.assert_array_equal(
        draw_contour(image, np.zeros_like(mask)), image)


def test_denormalize_inverts_the_preprocessor():
    image = _image(3)
    mean = np.array([123.675, 116.28, 103.53])
    std = np.array([58.395, 57.12, 57.375])
    inputs = (torch.from_numpy(image).permute(2, 0, 1).float() -
              torch.tensor(mean).float().view(3, 1, 1)) / torch.tensor(
                  std).float().view(3, 1, 1)
    np.testing.assert_array_equal(denormalize(inputs, mean, std), image)
    # BGR inputs come back as RGB.
    np.testing.assert_array_equal(
        denormalize(inputs, mean, std, is_rgb=False), image[..., ::-1])


def test_multitask_panel_layout_and_text(visualizer):
    image, sample = _image(), _sample()
    panel = visualizer.draw_multitask(image, sample)
    assert panel.shape == (H, 3 * W + 4, 3)
    np.testing.assert_array_equal(panel[:, :W], image)
    assert visualizer.prediction_text(sample) == 'malignant p=0.87'
    # pred_label wins over the argmax (test_cfg.lesion_classes can set it)
    other = _sample()
    other.pred_label = torch.tensor([2])
    assert visualizer.prediction_text(other) == 'normal p=0.08'
    gt_panel = panel[:, W + 2:2 * W + 2]
    np.testing.assert_array_equal(gt_panel,
                                  visualizer.draw_ground_truth(image, sample))
    # Below the text box, the ground-truth lesion interior is tinted red.
    inner = (slice(22, 28), slice(12, 38))
    expected = (image[inner] * 0.5 + np.array([255, 0, 0]) * 0.5).astype(
        np.uint8)
    np.testing.assert_array_equal(gt_panel[inner], expected)
    # The prediction (no lesion) leaves that region untouched.
    pred_panel = panel[:, 2 * W + 4:]
    np.testing.assert_array_equal(pred_panel[inner], image[inner])
    # Without ground truth: image | prediction.
    del sample.gt_sem_seg, sample.gt_label
    assert visualizer.draw_multitask(image, sample).shape == (H, 2 * W + 2,
                                                              3)


def test_add_datasample_reaches_backends_and_files(visualizer, tmp_path):
    image, sample = _image(), _sample()
    visualizer.add_datasample('val_case', image, sample, step=7)
    backend = visualizer.get_backend('RecordingVisBackend')
    (name, drawn, step), = backend.images
    assert (name, step) == ('val_case', 7)
    np.testing.assert_array_equal(drawn,
                                  visualizer.draw_multitask(image, sample))
    out_file = tmp_path / 'sub' / 'case.png'
    visualizer.add_datasample('x', image, sample, out_file=str(out_file))
    assert len(backend.images) == 1  # a file instead of the backends
    np.testing.assert_array_equal(
        cv2.imread(str(out_file))[..., ::-1], drawn)


def test_pseudo_label_panel(visualizer):
    weak, strong = _image(1), _image(2)
    codes = np.zeros((H, W), np.uint8)
    codes[:, W // 2:] = ZONES.index('reliable_lesion')
    codes[-5:] = ZONES.index('ambiguous')
    visualizer.add_pseudo_labels('train_pl', weak, strong, codes, step=3)
    name, drawn, step = visualizer.get_backend(
        'RecordingVisBackend').images[-1]
    assert (name, step) == ('train_pl', 3)
    assert drawn.shape == (H, 4 * W + 6, 3)  # weak | strong | zones | legend
    np.testing.assert_array_equal(drawn[:, :W], weak)
    np.testing.assert_array_equal(drawn[:, W + 2:2 * W + 2], strong)
    zones = drawn[:, 2 * W + 4:3 * W + 4]
    assert tuple(zones[-1, 0]) == DEFAULT_ZONE_PALETTE['ambiguous']
    assert tuple(zones[20, -1]) == DEFAULT_ZONE_PALETTE['reliable_lesion']
    assert tuple(zones[20, 0]) == DEFAULT_ZONE_PALETTE['unreliable']
    # the legend shows a swatch of each image zone's colour, top to bottom
    legend = drawn[:, 3 * W + 6:]
    swatch_colours = [tuple(legend[y, 1]) for y in range(H)]
    order = [DEFAULT_ZONE_PALETTE[z] for z in (
        'reliable_lesion', 'reliable_background', 'ambiguous', 'unreliable')]
    seen = [c for i, c in enumerate(swatch_colours)
            if c in order and (i == 0 or swatch_colours[i - 1] != c)]
    assert seen == order


def test_probabilities_are_never_rounded_up_to_certainty():
    assert class_text('benign', 0.995) == 'benign p=0.99'
    assert class_text('benign', 0.999) == 'benign p=0.99'
    assert class_text('benign', 0.9999999) == 'benign p=>0.99'
    assert class_text('benign', 1.0) == 'benign p=1.00'
    assert class_text('normal', 0.6) == 'normal p=0.60'
    assert class_text('normal', 0.87) == 'normal p=0.87'
    assert format_prob(float(torch.tensor(0.08))) == '0.08'  # float32


def test_overlay_says_area_and_flags_class_mask_contradiction(visualizer):
    """A clinician reading an inference overlay: the lesion area, and a
    remark naming mask_decides_lesion when "normal" comes with a lesion
    contour (or a lesion class with none)."""
    assert lesion_text(0, 100) == 'no lesion found'
    assert lesion_text(42, 1000) == 'lesion 42 px (4.2% of image)'
    assert lesion_text(1, 10 ** 6) == 'lesion 1 px (<0.1% of image)'
    lines = overlay_lines('normal', 0.6, 420, 10000, class_has_lesion=False)
    assert lines[:2] == ['normal p=0.60', 'lesion 420 px (4.2% of image)']
    assert lines[2] == '! normal yet lesion drawn: see mask_decides_lesion'
    assert overlay_lines('benign', 0.9, 0, 100, True)[2] == \
        '! benign yet no lesion: see mask_decides_lesion'
    assert len(overlay_lines('benign', 0.9, 5, 100, True)) == 2
    assert len(overlay_lines('normal', 0.9, 0, 100, False)) == 2
    # no lesion-free class (TN3K): nothing to disagree about
    assert len(overlay_lines('benign', 0.9, 0, 100, None)) == 2
    assert visualizer.class_has_lesion('normal') is None  # no lesion_classes
    visualizer.dataset_meta = dict(cls_classes=CLASSES,
                                   lesion_classes=('benign', 'malignant'))
    assert visualizer.class_has_lesion('normal') is False
    assert visualizer.class_has_lesion('benign') is True
    visualizer.dataset_meta = dict(cls_classes=('benign', 'malignant'),
                                   lesion_classes=('benign', 'malignant'))
    assert visualizer.class_has_lesion('benign') is None
    # each line lands on the overlay, top-down
    image = np.zeros((120, 400, 3), np.uint8)
    one = visualizer.draw_overlay(image, np.zeros((120, 400)), lines[:1])
    three = visualizer.draw_overlay(image, np.zeros((120, 400)), lines)
    rows = lambda img: np.nonzero(img.any(axis=(1, 2)))[0]  # noqa: E731
    assert rows(three).max() > rows(one).max() + 10


def test_names_palette_and_validation(visualizer):
    visualizer.dataset_meta = dict(cls_classes=('a', 'b'))
    assert visualizer.class_names(3) == ['a', 'b', 'class 2']
    assert class_text('a', 0.866) == 'a p=0.86'  # floored
    assert hconcat([np.zeros((2, 1, 3), np.uint8),
                    np.zeros((3, 1, 3), np.uint8)]).shape == (3, 4, 3)
    with pytest.raises(ValueError, match='unknown zones'):
        HermesVisualizer(name='bad_palette', zone_palette=dict(nope=(0, 0, 0)))
    with pytest.raises(ValueError, match='alpha'):
        HermesVisualizer(name='bad_alpha', alpha=2.0)
