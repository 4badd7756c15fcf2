"""research/false_lesions.py: the summary arithmetic on hand-made rows,
and one end-to-end run of a tiny seeded Hermes checkpoint on a freshly
generated dev set (thresholds from the model, JSON written)."""
import json
import os.path as osp

import pytest


REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TINY_HERMES = osp.join(REPO, 'tests', 'apis', 'configs', 'tiny_hermes.py')


@pytest.fixture(scope='module')
def bench(load_script):
    return load_script('research/false_lesions.py')


def row(has_lesion, predicts, argmax_free, p_free, reliable, fused,
        area=0.0, labels=(0, 0)):
    return dict(
        pred_lesion_area=area,
        img_path='x.png',
        gt_label=labels[0],
        pred_label=labels[1],
        has_lesion=has_lesion,
        predicts_lesion=predicts,
        argmax_lesion_free=argmax_free,
        p_lesion_free=p_free,
        reliable_lesion_px=reliable,
        fused_reliable_lesion_px=fused)


def test_summary_by_hand(bench):
    rows = [
        # lesion-free: 3 of 4 with a false lesion
        row(False, True, True, 0.9, 10, 0, 0.01, (2, 1)),  # vetoed, reliably
        row(False, True, True, 0.6, 10, 4, 0.02),  # argmax only; keeps 4
        row(False, True, False, 0.1, 0, 0, 0.05),  # no reliable lesion px
        row(False, False, True, 0.95, 0, 0),
        # with a lesion: 1 of 2 classified lesion-free (not reliably)
        row(True, True, False, 0.0, 50, 50, 0.04),
        row(True, True, True, 0.7, 50, 0, 0.10),
    ]
    s = bench.summarise(rows, tau_image=0.8)
    assert (s['lesion_free_images'], s['lesion_images']) == (4, 2)
    assert s['false_lesion_pct'] == pytest.approx(75.0)
    assert s['false_lesion_images']['n'] == 3
    assert s['false_lesion_images']['argmax_lesion_free_pct'] == \
        pytest.approx(200 / 3)
    assert s['false_lesion_images']['reliable_lesion_free_pct'] == \
        pytest.approx(100 / 3)
    assert s['lesion_image_classified_lesion_free'] == dict(
        argmax_pct=50.0, reliable_pct=0.0)
    free = s['fusion_erases']['lesion_free']
    assert free['images_with_reliable_lesion_px'] == 2
    assert free['all_erased_pct'] == pytest.approx(50.0)
    assert s['fusion_erases']['lesion']['all_erased_pct'] == \
        pytest.approx(50.0)
    # area: medians, and AUC = 5 of the 6 (true, false) pairs ordered
    assert s['predicted_area'] == pytest.approx(
        dict(false_lesion_median=0.02, lesion_median=0.07, auc=5 / 6))
    # no image of a kind: None, not a division by zero
    assert bench.summarise(rows[4:], 0.8)['false_lesion_pct'] is None
    assert bench.summarise(rows[4:], 0.8)['predicted_area']['auc'] is None
    # lesion or not: the classifier is right on rows 0, 1, 3, 4 (argmax
    # lesion-free == no lesion), the mask on row 3 and the two lesion rows
    assert s['lesion_question'] == pytest.approx(dict(
        classifier_correct_pct=400 / 6, mask_correct_pct=50.0))
    assert s['accuracy_pct'] == pytest.approx(500 / 6)  # row 0 is wrong


def test_end_to_end_tiny_hermes(bench, tmp_path, tiny_hermes_run):
    run, model = tiny_hermes_run
    ckpt = osp.join(run, 'iter_2.pth')
    out = str(tmp_path / 'fl.json')
    record = bench.main([
        TINY_HERMES, ckpt, '--num', '12', '--cache-dir',
        str(tmp_path / 'cache'), '--out', out, '--batch-size', '5'
    ])
    with open(out) as f:
        assert json.load(f)['summary'] == record['summary']
    assert record['test_set']['generator_seed'] == bench.DEV_SEED
    assert record['test_set'].get('style', 'default') == 'default'
    assert record['lesion_free_classes'] == ['normal']
    # thresholds are the model's current ones (lesion pixel class,
    # lesion-free image class)
    labeler = model.pseudo_labeler
    assert record['tau_pixel'] == pytest.approx(
        float(labeler.seg_threshold.thresholds()[1][1]))
    assert record['tau_image'] == pytest.approx(
        float(labeler.cls_threshold.thresholds()[1][2]))
    rows = record['images']
    assert len(rows) == 12
    s = record['summary']
    free = [r for r in rows if not r['has_lesion']]
    assert s['lesion_free_images'] == len(free) > 0
    assert s['lesion_images'] == 12 - len(free)
    assert s['false_lesion_pct'] == pytest.approx(
        100 * sum(r['predicts_lesion'] for r in free) / len(free))
    for r in rows:
        assert 0.0 <= r['p_lesion_free'] <= 1.0 + 1e-6
        assert 0 <= r['fused_reliable_lesion_px'] <= r['reliable_lesion_px']
        assert 0.0 <= r['pred_lesion_area'] <= 1.0
        assert (r['pred_lesion_area'] > 0) == r['predicts_lesion']
        assert 1 / 3 - 1e-6 <= r['max_score'] <= 1.0 + 1e-6  # 3 classes
    assert s['accuracy_pct'] == pytest.approx(
        100 * sum(r['pred_label'] == r['gt_label'] for r in rows) / 12)


def test_dev_set_is_generated_in_the_config_style(bench, tmp_path):
    # a style-study run must be measured on its own style, not the default
    cfg_path = tmp_path / 'tiny_speckle.py'
    cfg_path.write_text(f'_base_ = {TINY_HERMES!r}\n'
                        "test_dataloader = dict(dataset=dict(style='speckle'))"
                        '\n')
    args = bench.parse_args([str(cfg_path), 'unused.pth', '--cache-dir',
                             str(tmp_path / 'cache')])
    dataset = bench.load_config(args).test_dataloader.dataset
    assert dataset.style == 'speckle'
    assert dataset.generator_seed == bench.DEV_SEED
    assert dataset.data_root.endswith(
        f'synthetic_busi_dev_n{bench.DEV_NUM}_seed{bench.DEV_SEED}_speckle')
