"""research/pseudo_head: the image pseudo-labels train the pseudo head (and,
through it, the features), never the main head; the pseudo-labels and the
predictions come from the main head; the research config trains under the
OpenMMLab runner."""
import os.path as osp

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.runner import Runner

from hermes_mm.utils.config_utils import load_config, rewrite_datasets

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SMALL = osp.join(REPO, 'configs', '_base_', 'models',
                 'hermes_r18_small_itas.py')
TINY_HERMES = osp.join(REPO, 'tests', 'apis', 'configs', 'tiny_hermes.py')
RESEARCH_CFG = osp.join(REPO, 'research', 'pseudo_head', 'configs',
                        'hermes_pseudo_head.py')
S = 64
#: every teacher image prediction is a reliable pseudo-label
ALL_RELIABLE = dict(type='FixedDualThreshold', tau_low=0.0, tau_high=0.0)


@pytest.fixture(scope='module')
def ph(research_module):
    return research_module('research.pseudo_head.pseudo_head')


def build(small_model, **overrides):
    model = small_model(
        RESEARCH_CFG, S, **{
            # every strong view keeps its image label
            'cutmix_prob': 0.0,
            'pseudo_labeler.cls_threshold': dict(ALL_RELIABLE),
            **overrides})
    with torch.no_grad():  # a pseudo head that differs from the main head
        for p in model.pseudo_cls_head.parameters():
            p.add_(torch.randn_like(p))
    return model


def test_pseudo_label_loss_is_the_pseudo_heads_on_the_strong_views(
        small_model, step_batch, ph, spy, monkeypatch):
    model = build(small_model)
    forwards = spy(monkeypatch, model, 'student_forward')
    labels = spy(monkeypatch, model.pseudo_labeler, 'forward')
    inputs, data_samples = step_batch(S)
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


def test_pseudo_labels_reach_the_features_through_the_pseudo_head_only(
        small_model, step_batch, ph):
    model = build(small_model)
    losses = model.loss(*step_batch(S))
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


def test_teacher_and_predictions_use_the_main_head(
        small_model, step_batch, ph, spy, monkeypatch):
    model = build(small_model)
    assert not any('pseudo_cls_head' in k
                   for k in model.teacher.state_dict())
    calls = spy(monkeypatch, model.pseudo_cls_head, 'forward')
    model.eval()
    inputs, data_samples = step_batch(S)
    metas = data_samples['sup']
    with torch.no_grad():
        preds = model.predict(inputs['sup'], metas)
    assert calls == []
    with torch.no_grad():
        main = model.teacher.module.forward_train(inputs['sup']).cls_logits
    torch.testing.assert_close(
        torch.stack([p.pred_score for p in preds]), main.softmax(dim=1))


def test_default_head_copies_the_main_head_and_bad_heads_are_named(
        small_model, ph):
    model = build(small_model)
    main, pseudo = model.student.cls_head, model.pseudo_cls_head
    assert type(pseudo) is type(main) and pseudo is not main
    assert pseudo.fc.weight.shape == main.fc.weight.shape
    assert pseudo.fc.weight.data_ptr() != main.fc.weight.data_ptr()
    head = dict(Config.fromfile(SMALL).model.segmentor.cls_head,
                num_classes=2)
    with pytest.raises(ValueError, match='pseudo_cls_head.*3 classes.*got '
                       'num_classes=2'):
        build(small_model, pseudo_cls_head=head)


def test_research_config_trains_under_the_runner(ph, tmp_path, monkeypatch):
    """Two iterations of the tiny Hermes as ``PseudoHeadHermes`` with the
    research config's model type and imports: the pseudo head is built,
    optimised and saved."""
    monkeypatch.syspath_prepend(REPO)
    research = Config.fromfile(RESEARCH_CFG)
    cfg = load_config(TINY_HERMES)
    cfg.custom_imports = research.custom_imports
    cfg.model.type = research.model.type
    cfg.model.cutmix_prob = 0.0
    cfg.model.pseudo_labeler.cls_threshold = dict(ALL_RELIABLE)
    rewrite_datasets(cfg, data_root=str(tmp_path / 'data'))
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
