"""research/pseudo_head: the image pseudo-labels train the pseudo head (and,
through it, the features), never the main head; the pseudo-labels and the
predictions come from the main head; the research config trains under the
OpenMMLab runner."""
import importlib
import os.path as osp
import sys

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.runner import Runner
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample

from hermes_mm.registry import MODELS

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SMALL = osp.join(REPO, 'configs', '_base_', 'models',
                 'hermes_r18_small_itas.py')
TINY_HERMES = osp.join(REPO, 'tests', 'apis', 'configs', 'tiny_hermes.py')
RESEARCH_CFG = osp.join(REPO, 'research', 'pseudo_head', 'configs',
                        'hermes_pseudo_head.py')
S = 64
LATE = 10**6  # after every ramp-up
#: every teacher image prediction is a reliable pseudo-label
ALL_RELIABLE = dict(type='FixedDualThreshold', tau_low=0.0, tau_high=0.0)


@pytest.fixture(scope='module')
def spy(load_script):
    """``spy(monkeypatch, obj, name)``: record (args, result) of every
    call (the segmentor tests' helper)."""
    return load_script(
        'tests/models/segmentors/test_hermes_segmentor.py').spy


@pytest.fixture(scope='module')
def ph():
    sys.path.insert(0, REPO)
    try:
        return importlib.import_module('research.pseudo_head.pseudo_head')
    finally:
        sys.path.remove(REPO)


def build(ph, **overrides):
    init_default_scope('mmseg')
    torch.manual_seed(0)
    cfg = Config.fromfile(SMALL).model
    cfg.type = Config.fromfile(RESEARCH_CFG).model.type
    cfg.data_preprocessor.data_preprocessor.size = (S, S)
    cfg.cutmix_prob = 0.0  # every strong view keeps its image label
    cfg.pseudo_labeler.cls_threshold = dict(ALL_RELIABLE)
    cfg.update(overrides)
    model = MODELS.build(cfg)
    model.init_weights()
    with torch.no_grad():  # a teacher that differs from its student
        for p in model.teacher.module.parameters():
            p.add_(0.05 * torch.randn_like(p))
        # a pseudo head that differs from the main head
        for p in model.pseudo_cls_head.parameters():
            p.add_(torch.randn_like(p))
    model.set_iteration(LATE)
    model.train()
    return model


def make_batch():
    g = torch.Generator().manual_seed(0)
    meta = dict(img_shape=(S, S), ori_shape=(S, S), pad_shape=(S, S))

    def sample(label=None):
        s = SegDataSample(metainfo=meta)
        if label is not None:
            mask = torch.zeros(1, S, S, dtype=torch.long)
            mask[0, 10:30, 10:30] = int(label != 2)
            s.gt_sem_seg = PixelData(data=mask)
            s.gt_label = torch.tensor([label])
        return s

    inputs = dict(sup=torch.randn(2, 3, S, S, generator=g),
                  unsup_weak=torch.randn(3, 3, S, S, generator=g),
                  unsup_strong=torch.randn(3, 3, S, S, generator=g))
    data_samples = dict(sup=[sample(0), sample(2)],
                        unsup_weak=[sample() for _ in range(3)],
                        unsup_strong=[sample() for _ in range(3)])
    return inputs, data_samples


def test_pseudo_label_loss_is_the_pseudo_heads_on_the_strong_views(
        ph, spy, monkeypatch):
    model = build(ph)
    forwards = spy(monkeypatch, model, 'student_forward')
    labels = spy(monkeypatch, model.pseudo_labeler, 'forward')
    inputs, data_samples = make_batch()
    losses = model.loss(inputs, data_samples)
    ((sup_x, strong_x), (sup_out, strong_out)), = forwards
    assert torch.equal(strong_x, inputs['unsup_strong'])
    (_, pseudo), = labels
    assert bool(pseudo.cls_reliable.all())
    # the pseudo-labels: the teacher's main head on the weak views
    with torch.no_grad():
        teacher = model.teacher.module.forward_train(inputs['unsup_weak'])
    target = teacher.cls_logits.argmax(dim=1)
    assert torch.equal(pseudo.cls_zones.pseudo_label, target)
    # the loss: the pseudo head on the student's strong-view vectors
    weight = model.loss_weights()['unsup']
    assert weight > 0
    vec = strong_out.task_feats.cls_vec
    expected = F.cross_entropy(model.pseudo_cls_head((vec, )), target)
    torch.testing.assert_close(losses['unsup.cls.loss_cls'],
                               expected * weight)
    # ... not the main head's, which the shipped method would use
    main = F.cross_entropy(strong_out.cls_logits, target) * weight
    assert abs(main.item() - losses['unsup.cls.loss_cls'].item()) > 1e-3
    # the labelled loss stays on the main head
    sup_labels = torch.tensor([0, 2])
    torch.testing.assert_close(
        losses['sup.cls.loss_cls'],
        F.cross_entropy(model.student.cls_head((sup_out.task_feats.cls_vec,
                                                )), sup_labels))


def test_pseudo_labels_reach_the_features_through_the_pseudo_head_only(ph):
    model = build(ph)
    losses = model.loss(*make_batch())
    losses['unsup.cls.loss_cls'].backward(retain_graph=True)
    main_fc = model.student.cls_head.fc
    assert main_fc.weight.grad is None or not main_fc.weight.grad.any()
    assert model.pseudo_cls_head.fc.weight.grad.abs().sum() > 0
    # ... and, through it, the shared features
    assert model.student.backbone.stem[0].weight.grad.abs().sum() > 0
    model.zero_grad(set_to_none=True)
    losses['sup.cls.loss_cls'].backward()
    assert model.pseudo_cls_head.fc.weight.grad is None
    assert main_fc.weight.grad.abs().sum() > 0


def test_teacher_and_predictions_use_the_main_head(ph, spy, monkeypatch):
    model = build(ph)
    assert not any('pseudo_cls_head' in k
                   for k in model.teacher.state_dict())
    calls = spy(monkeypatch, model.pseudo_cls_head, 'forward')
    model.eval()
    inputs, data_samples = make_batch()
    metas = data_samples['sup']
    with torch.no_grad():
        preds = model.predict(inputs['sup'], metas)
    assert calls == []
    with torch.no_grad():
        main = model.teacher.module.forward_train(inputs['sup']).cls_logits
    torch.testing.assert_close(
        torch.stack([p.pred_score for p in preds]), main.softmax(dim=1))


def test_default_head_copies_the_main_head_and_bad_heads_are_named(ph):
    model = build(ph)
    main, pseudo = model.student.cls_head, model.pseudo_cls_head
    assert type(pseudo) is type(main) and pseudo is not main
    assert pseudo.fc.weight.shape == main.fc.weight.shape
    assert pseudo.fc.weight.data_ptr() != main.fc.weight.data_ptr()
    head = dict(Config.fromfile(SMALL).model.segmentor.cls_head,
                num_classes=2)
    with pytest.raises(ValueError, match='pseudo_cls_head.*3 classes.*got '
                       'num_classes=2'):
        build(ph, pseudo_cls_head=head)


def test_research_config_trains_under_the_runner(ph, tmp_path, monkeypatch):
    """Two iterations of the tiny Hermes as ``PseudoHeadHermes`` with the
    research config's model type and imports: the pseudo head is built,
    optimised and saved."""
    monkeypatch.syspath_prepend(REPO)
    research = Config.fromfile(RESEARCH_CFG)
    cfg = Config(Config.fromfile(TINY_HERMES).to_dict(),
                 filename=TINY_HERMES, format_python_code=False)
    cfg.custom_imports = research.custom_imports
    cfg.model.type = research.model.type
    cfg.model.cutmix_prob = 0.0
    cfg.model.pseudo_labeler.cls_threshold = dict(ALL_RELIABLE)
    data_root = str(tmp_path / 'data')
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        for ds in cfg[key].dataset.get('datasets', [cfg[key].dataset]):
            ds.data_root = data_root
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.param_scheduler = []
    cfg.work_dir = str(tmp_path / 'work')
    cfg.experiment_name = f'pseudo_head_{id(cfg)}'
    cfg.visualizer.name = f'vis_{cfg.experiment_name}'
    runner = Runner.from_cfg(cfg)
    model = runner.model
    before = model.pseudo_cls_head.fc.weight.detach().clone()
    runner.train()
    assert type(model).__name__ == 'PseudoHeadHermes'
    assert runner.iter == cfg.train_cfg.max_iters
    assert not torch.equal(model.pseudo_cls_head.fc.weight, before)
    ckpt = torch.load(osp.join(cfg.work_dir, f'iter_{runner.iter}.pth'),
                      map_location='cpu', weights_only=False)
    assert 'pseudo_cls_head.fc.weight' in ckpt['state_dict']
