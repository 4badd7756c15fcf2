"""research/instance_contrast: the InfoNCE term by hand, the key
projector's momentum and the key queue, and the wiring inside Hermes: the
keys are the teacher's on the weak views, the queries the student's on the
strong views of the same images, CutMixed rows without an unmixed view are
left out, and the term reaches the losses through the contrast ramp."""
import os.path as osp

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.registry import init_default_scope


REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SMALL = osp.join(REPO, 'configs', '_base_', 'models',
                 'hermes_r18_small_itas.py')
RESEARCH_CFG = osp.join(REPO, 'research', 'instance_contrast', 'configs',
                        'hermes_instance_contrast.py')
S = 64


@pytest.fixture(scope='module')
def ic(research_module):
    return research_module('research.instance_contrast.instance_contrast')


def linear_head(ic, **kwargs):
    init_default_scope('mmseg')
    torch.manual_seed(0)
    head = ic.InstanceContrastHead(
        projector=dict(type='ProjectionHead', in_channels=4,
                       hidden_channels=4, out_channels=3, num_layers=1,
                       norm_cfg=None), **kwargs)
    head.init_weights()
    return head


def test_loss_by_hand_and_the_queue(ic):
    head = linear_head(ic, temperature=0.5, queue_size=3, key_momentum=0.9)
    w = head.projector.fc_out.weight.detach().clone()
    b = head.projector.fc_out.bias.detach().clone()
    torch.manual_seed(1)
    q_vec, k_vec = torch.randn(2, 4), torch.randn(2, 4)
    out = head.loss(q_vec, k_vec)
    q = F.normalize(q_vec @ w.t() + b, dim=1)
    k = F.normalize(k_vec @ w.t() + b, dim=1)  # key projector == query one
    logits = q @ k.t() / 0.5  # empty queue: the batch's keys only
    expected = F.cross_entropy(logits, torch.arange(2))
    assert out['loss_inst'].item() == pytest.approx(expected.item(),
                                                    rel=1e-5)
    # the keys are queued (detached): the next call uses them as negatives
    assert int(head.queue_len) == 2
    torch.testing.assert_close(head.queue[:2], k)
    # an optimiser step moves the query projector; the keys follow it by
    # momentum only (0.9 old + 0.1 new)
    with torch.no_grad():
        head.projector.fc_out.weight.add_(0.5)
    w2 = w + 0.5
    q2_vec, k2_vec = torch.randn(2, 4), torch.randn(2, 4)
    out2 = head.loss(q2_vec, k2_vec)
    q2 = F.normalize(q2_vec @ w2.t() + b, dim=1)
    k2 = F.normalize(k2_vec @ (0.9 * w + 0.1 * w2).t() + b, dim=1)
    logits2 = torch.cat([q2 @ k2.t(), q2 @ k.t()], dim=1) / 0.5
    assert out2['loss_inst'].item() == pytest.approx(
        F.cross_entropy(logits2, torch.arange(2)).item(), rel=1e-5)
    # FIFO of 3: the oldest key is overwritten, the newest kept
    assert int(head.queue_len) == 3
    torch.testing.assert_close(head.queue[0], k2[1])
    torch.testing.assert_close(head.queue[1:3], torch.stack([k[1], k2[0]]))
    # the loss reaches the query projector only
    out2['loss_inst'].backward()
    assert head.projector.fc_out.weight.grad is not None
    assert all(p.grad is None for p in head.key_projector.parameters())


def test_key_projector_follows_the_query_projector_by_momentum(ic):
    head = linear_head(ic, key_momentum=0.9)
    old = head.key_projector.fc_out.weight.detach().clone()
    with torch.no_grad():
        head.projector.fc_out.weight.add_(1.0)
    new = head.projector.fc_out.weight.detach().clone()
    head.loss(torch.randn(2, 4), torch.randn(2, 4))
    torch.testing.assert_close(head.key_projector.fc_out.weight,
                               0.9 * old + 0.1 * new)


def test_empty_rows_and_bad_arguments(ic):
    head = linear_head(ic)
    out = head.loss(torch.zeros(0, 4), torch.zeros(0, 4))
    assert out['loss_inst'].item() == 0.0
    assert out['loss_inst'].requires_grad  # keeps DDP's graph whole
    assert int(head.queue_len) == 0
    with pytest.raises(ValueError, match='pair up'):
        head.loss(torch.zeros(2, 4), torch.zeros(3, 4))
    for kwargs, match in ((dict(temperature=0), 'temperature'),
                          (dict(queue_size=-1), 'queue_size'),
                          (dict(key_momentum=1.0), 'key_momentum')):
        with pytest.raises(ValueError, match=match):
            linear_head(ic, **kwargs)


# ------------------------------------------------------------- wiring
def build(small_model, cutmix_prob, unmixed_image_view=False):
    return small_model(
        RESEARCH_CFG, S, cutmix_prob=cutmix_prob,
        unmixed_image_view=unmixed_image_view,
        inst_contrast=Config.fromfile(RESEARCH_CFG).model.inst_contrast)


def test_keys_are_the_teachers_weak_views_queries_the_students_strong(
        small_model, step_batch, ic, spy, monkeypatch):
    model = build(small_model, cutmix_prob=0.0)
    pairs = spy(monkeypatch, model.inst_contrast, 'loss')
    # (labelled, strong views) -> their outputs, joint forward or not
    forwards = spy(monkeypatch, model, 'student_forward')
    inputs, data_samples = step_batch(S)
    losses = model.loss(inputs, data_samples)
    (query, key), term = pairs[0]
    # keys: the teacher (eval mode, deterministic) on the weak views
    with torch.no_grad():
        teacher = model.teacher.module
        on_weak = teacher.forward_train(inputs['unsup_weak']).task_feats
        on_strong = teacher.forward_train(
            inputs['unsup_strong']).task_feats
    torch.testing.assert_close(key, on_weak.cls_vec)
    assert not torch.allclose(key, on_strong.cls_vec, atol=1e-4)
    # queries: the student's outputs on the strong views, same rows
    ((sup_x, strong_x), (_, strong_out)), = forwards
    assert torch.equal(strong_x, inputs['unsup_strong'])
    torch.testing.assert_close(query, strong_out.task_feats.cls_vec)
    assert not torch.allclose(query, on_strong.cls_vec, atol=1e-4)
    # the labelled images are not the queries
    assert torch.equal(sup_x, inputs['sup'])
    # the term, weighted by the contrast ramp, is in the losses
    weight = model.loss_weights()['con']
    assert weight > 0
    torch.testing.assert_close(losses['con.loss_inst'],
                               term['loss_inst'] * weight)
    # the stashed tensors do not outlive the step
    assert model._teacher_vec is None and model._image_vec is None


def test_mixed_rows_are_left_out_unless_an_unmixed_view_exists(
        small_model, step_batch, ic, spy, monkeypatch):
    model = build(small_model, cutmix_prob=1.0)  # every strong view is mixed
    pairs = spy(monkeypatch, model.inst_contrast, 'loss')
    losses = model.loss(*step_batch(S))
    (query, key), _ = pairs[0]
    assert query.shape[0] == key.shape[0] == 0
    assert losses['con.loss_inst'].item() == 0.0
    model = build(small_model, cutmix_prob=1.0, unmixed_image_view=True)
    pairs = spy(monkeypatch, model.inst_contrast, 'loss')
    forwards = spy(monkeypatch, model, 'student_forward')
    inputs, data_samples = step_batch(S)
    model.loss(inputs, data_samples)
    (query, key), _ = pairs[0]
    assert query.shape[0] == 3
    # the unmixed views are appended after the mixed ones in the strong
    # views: rows 3-5, i.e. the strong inputs as given
    ((_, x), (_, out)), = forwards
    assert x.shape[0] == 6
    torch.testing.assert_close(x[3:], inputs['unsup_strong'])
    torch.testing.assert_close(query, out.task_feats.cls_vec[3:])


def test_research_config_builds(ic):
    cfg = Config.fromfile(RESEARCH_CFG)
    assert cfg.model.type == 'InstanceContrastHermes'
    assert cfg.model.inst_contrast.projector.in_channels == \
        Config.fromfile(SMALL).model.segmentor.cls_head.in_channels
