"""Every shipped config loads and builds (model and pipeline transforms), its
datasets take ``--data-root/--split-file``, Hermes configs carry their hook
and loop, and ablation / baseline / label-ratio configs differ from their
reference in exactly what they claim to change."""
import copy
import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

import hermes_mm  # noqa: F401  (registers everything)
from hermes_mm.models.segmentors import HermesSegmentor, MultiTaskSegmentor
from hermes_mm.registry import MODELS, TRANSFORMS
from hermes_mm.utils import iter_dataset_cfgs, rewrite_datasets

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG_DIR = osp.join(REPO, 'configs')
CONFIGS = sorted(
    osp.relpath(p, CONFIG_DIR)
    for p in glob.glob(osp.join(CONFIG_DIR, '**', '*.py'), recursive=True)
    if '_base_' not in osp.relpath(p, CONFIG_DIR).split(osp.sep))
LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')

_cache = {}


@pytest.fixture(autouse=True)
def mmseg_scope():
    init_default_scope('mmseg')  # as under the configs' default_scope


def load(name):
    """The loaded config (cached; callers get a deep copy)."""
    if name not in _cache:
        _cache[name] = Config.fromfile(osp.join(CONFIG_DIR, name))
    return copy.deepcopy(_cache[name])


def is_demo(name):
    return name.startswith('demo' + osp.sep)


def is_hermes(cfg):
    return cfg.model.type == 'HermesSegmentor'


def leaf_datasets(cfg):
    """(path, cfg) of every non-wrapper dataset of the three dataloaders."""
    out = []
    for key in LOADERS:
        for path, ds in iter_dataset_cfgs(cfg[key].dataset, f'{key}.dataset'):
            if 'dataset' not in ds and 'datasets' not in ds:
                out.append((path, ds))
    return out


def flatten(node, prefix=''):
    """Nested dicts/lists -> {'a.b[0].c': leaf value}."""
    if isinstance(node, dict):
        items = [(f'{prefix}.{k}' if prefix else str(k), v)
                 for k, v in node.items()]
    elif isinstance(node, (list, tuple)):
        items = [(f'{prefix}[{i}]', v) for i, v in enumerate(node)]
        items.append((f'{prefix}#len', len(node)))
    else:
        return {prefix: node}
    out = {prefix: type(node).__name__} if not items else {}
    for key, value in items:
        out.update(flatten(value, key))
    return out


def changed_keys(name, reference):
    a = flatten(load(reference).to_dict())
    b = flatten(load(name).to_dict())
    missing = object()
    return {k for k in a.keys() | b.keys() if a.get(k, missing) != b.get(
        k, missing)}


def under(key, prefix):
    return key == prefix or key.startswith((prefix + '.', prefix + '[',
                                            prefix + '#'))


def assert_changes_exactly(name, reference, prefixes):
    """``name`` differs from ``reference`` only under ``prefixes``, and
    under each of them."""
    diff = changed_keys(name, reference)
    stray = sorted(k for k in diff if not any(under(k, p) for p in prefixes))
    assert not stray, f'{name} also changes {stray}'
    for prefix in prefixes:
        assert any(under(k, prefix) for k in diff), \
            f'{name} does not change {prefix}'


def test_all_configs_found():
    assert len(CONFIGS) >= 20
    for name in ('hermes_busi.py', 'supervised_busi.py',
                 'demo/hermes_synthetic.py', 'baselines/mean_teacher_busi.py'):
        assert name.replace('/', osp.sep) in CONFIGS


@pytest.mark.parametrize('name', CONFIGS)
def test_config_builds_model_and_pipelines(name):
    cfg = load(name)
    assert cfg.default_scope == 'mmseg'
    assert 'hermes_mm' in cfg.custom_imports.imports
    assert cfg.custom_imports.allow_failed_imports is False
    model = MODELS.build(cfg.model)
    assert isinstance(model,
                      HermesSegmentor if is_hermes(cfg) else
                      MultiTaskSegmentor)
    assert cfg.model.get('test_cfg', cfg.model.get('segmentor', {}).get(
        'test_cfg')) is not None
    for path, ds in leaf_datasets(cfg):
        assert ds.pipeline, path
        for i, transform in enumerate(ds.pipeline):
            built = TRANSFORMS.build(transform)
            assert callable(built), f'{path}.pipeline[{i}]'


@pytest.mark.parametrize('name', CONFIGS)
def test_datasets_take_cli_data_root_and_split(name):
    cfg = load(name)
    datasets = leaf_datasets(cfg)
    assert {p.split('.')[0] for p, _ in datasets} == set(LOADERS)
    for path, ds in datasets:
        assert 'data_root' in ds, path
        if not is_demo(name):
            assert 'split_file' in ds, path
    if is_demo(name):
        # The synthetic set is split in memory: only --data-root applies.
        rewrite_datasets(cfg, data_root='/new/root')
        assert all(ds.data_root == '/new/root' for _, ds in leaf_datasets(cfg))
        for _, ds in datasets:
            assert ds.type == 'SyntheticBUSIDataset'
        return
    rewrite_datasets(cfg, data_root='/new/root', split_file='/new/s.json')
    for path, ds in leaf_datasets(cfg):
        assert (ds.data_root, ds.split_file) == ('/new/root',
                                                 '/new/s.json'), path
    subsets = [ds.subset for _, ds in leaf_datasets(cfg)]
    assert subsets[-2:] == ['val', 'test']


@pytest.mark.parametrize('name', CONFIGS)
def test_hook_and_val_loop_match_model(name):
    cfg = load(name)
    hooks = [h.type for h in cfg.get('custom_hooks', [])]
    if is_hermes(cfg):
        assert 'TeacherThresholdUpdateHook' in hooks
        assert cfg.val_cfg.type == 'TeacherStudentValLoop'
        assert cfg.default_hooks.checkpoint.save_best.startswith('teacher/')
        train = cfg.train_dataloader
        assert train.sampler.type == 'MultiSourceRatioSampler'
        assert [ds.subset for ds in train.dataset.datasets] == [
            'labeled', 'unlabeled'
        ]
        assert train.sampler.batch_size == train.batch_size == sum(
            train.sampler.source_ratio)
    else:
        # The hook raises TypeError on a model without a teacher.
        assert 'TeacherThresholdUpdateHook' not in hooks
        assert 'DualThresholdPseudoLabelHook' not in hooks  # its old name
        assert cfg.val_cfg.type == 'ValLoop'
        assert not cfg.default_hooks.checkpoint.save_best.startswith(
            'teacher/')


CONTRAST = ('model.img_contrast', 'model.pix_contrast')
THRESHOLDS = ('model.pseudo_labeler.seg_threshold',
              'model.pseudo_labeler.cls_threshold')
ABLATIONS = {
    'no_consistency': ('model.consistency', ),
    'no_contrast': CONTRAST,
    'no_pix_contrast': ('model.pix_contrast', ),
    'no_itas': ('model.segmentor.task_neck', ),
    # dual -> single only: same adaptive policy, tau_low = tau_high
    'single_threshold': tuple(f'{key}.{field}' for key in THRESHOLDS
                              for field in ('tau_low', 'margin')),
}
ABLATION_CASES = [
    (osp.join('ablations', f'hermes_busi_{what}.py'), 'hermes_busi.py', what)
    for what in ABLATIONS
] + [(osp.join('demo', 'ablations', f'hermes_synthetic_{what}.py'),
      osp.join('demo', 'hermes_synthetic.py'), what) for what in ABLATIONS]


def test_every_ablation_config_is_checked():
    ablations = {n for n in CONFIGS if 'ablations' in n.split(osp.sep)}
    assert ablations == {name for name, _, _ in ABLATION_CASES}


def get(cfg, dotted):
    for part in dotted.split('.'):
        cfg = cfg[part]
    return cfg


def assert_single_threshold(cfg):
    for key in THRESHOLDS:
        thr = get(cfg, key)
        assert thr.type == 'FixedDualThreshold'
        assert thr.tau_low == thr.tau_high


@pytest.mark.parametrize('name, reference, what', ABLATION_CASES)
def test_ablation_removes_exactly_its_component(name, reference, what):
    removed = ABLATIONS[what]
    assert_changes_exactly(name, reference, removed)
    cfg, ref = load(name), load(reference)
    if what == 'no_itas':
        assert ref.model.segmentor.task_neck.type == 'ITASNeck'
        assert cfg.model.segmentor.task_neck.type == 'TaskSplitNeck'
    elif what == 'single_threshold':
        for key in THRESHOLDS:
            thr, ref_thr = get(cfg, key), get(ref, key)
            assert ref_thr.tau_low < ref_thr.tau_high
            assert thr.type == ref_thr.type in (
                'AdaptiveDualThreshold', 'ClassBalancedDualThreshold')
            assert thr.tau_low == thr.tau_high == ref_thr.tau_high
            assert thr.margin == 0
        if is_demo(name):  # and it stays single while it adapts
            model = MODELS.build(cfg.model)
            for policy in (model.pseudo_labeler.seg_threshold,
                           model.pseudo_labeler.cls_threshold):
                k = policy.num_classes
                balance = {}
                if policy.histogram_bins is not None:
                    # every class confident at 0.99 but the rarest at 0.65:
                    # balancing lowers its upper threshold, the lower one
                    # must follow
                    bins = policy.histogram_bins
                    histogram = torch.zeros(k, bins)
                    histogram[:, bins - 1] = 10.0
                    histogram[-1] = 0.0
                    histogram[-1, int(0.65 * bins)] = 10.0
                    balance = dict(histogram=histogram,
                                   labelled_count=torch.arange(k, 0, -1.0))
                policy.update(torch.linspace(0.5, 0.9, k) * 10,
                              torch.full((k, ), 10.0), iteration=0,
                              **balance)
                low, high = policy.thresholds()
                assert torch.equal(low, high)
                if balance:
                    assert high[-1] < ref_thr.high_range[0]
    else:
        for key in removed:
            assert get(ref, key) is not None and get(cfg, key) is None, key


@pytest.mark.parametrize('name, reference', [
    ('baselines/mean_teacher_busi.py', 'hermes_busi.py'),
    ('demo/baselines/mean_teacher_synthetic.py', 'demo/hermes_synthetic.py'),
])
def test_mean_teacher_is_hermes_without_its_additions(name, reference):
    name, reference = osp.normpath(name), osp.normpath(reference)
    extra = ('model.consistency', 'model.segmentor.task_neck',
             'model.cutmix_prob', 'model.lesion_share_gate')
    assert_changes_exactly(name, reference, CONTRAST + THRESHOLDS + extra)
    cfg = load(name)
    for key in CONTRAST + ('model.consistency', 'model.lesion_share_gate'):
        assert get(cfg, key) is None, key
    assert_single_threshold(cfg)
    assert cfg.model.cutmix_prob == 0
    assert cfg.model.segmentor.task_neck.type == 'TaskSplitNeck'
    model = MODELS.build(cfg.model) if is_demo(name) else None
    if model is not None:
        assert model.img_contrast is None
        assert model.pix_contrast is None
        assert model.consistency is None
        assert model.lesion_share_gate is None


@pytest.mark.parametrize('name, ratio', [('hermes_busi_label1-2.py', 0.5),
                                         ('hermes_busi_label1-4.py', 0.25)])
def test_label_ratio_variants_point_every_dataset_at_their_split(name, ratio):
    split = f'data/BUSI/splits/split_{ratio}_seed0.json'
    diff = changed_keys(name, 'hermes_busi.py')
    assert diff and all(k.endswith('split_file') for k in diff), sorted(diff)
    cfg = load(name)
    datasets = leaf_datasets(cfg)
    assert len(datasets) == 4
    for path, ds in datasets:
        assert ds.split_file == split, path
    assert cfg.split_file == split


@pytest.mark.parametrize('name, reference', [
    ('baselines/fully_supervised_busi.py', 'supervised_busi.py'),
    ('demo/baselines/fully_supervised_synthetic.py',
     'demo/supervised_synthetic.py'),
])
def test_fully_supervised_trains_on_all_train_images(name, reference):
    name, reference = osp.normpath(name), osp.normpath(reference)
    assert changed_keys(name, reference) == {'train_dataloader.dataset.subset'}
    assert load(reference).train_dataloader.dataset.subset == 'labeled'
    assert load(name).train_dataloader.dataset.subset == 'train'


def test_supervised_baselines_are_the_hermes_network():
    assert changed_keys(osp.join('baselines', 'supervised_busi.py'),
                        'supervised_busi.py') == set()
    for sup, hermes in (('supervised_busi.py', 'hermes_busi.py'),
                        (osp.join('demo', 'supervised_synthetic.py'),
                         osp.join('demo', 'hermes_synthetic.py'))):
        sup_model = load(sup).model.to_dict()
        hermes_model = load(hermes).model
        segmentor = hermes_model.segmentor.to_dict()
        # Hermes ignores its student's own data_preprocessor (it uses the
        # multi-branch wrapper's inner one), so compare the effective ones.
        segmentor.pop('data_preprocessor')
        assert sup_model.pop('data_preprocessor') == \
            hermes_model.data_preprocessor.data_preprocessor.to_dict(), sup
        assert sup_model == segmentor, sup


@pytest.mark.parametrize('matched, ema, reference, hermes', [
    (osp.join('demo', 'baselines', 'supervised_matched_synthetic.py'),
     osp.join('demo', 'baselines', 'supervised_ema_synthetic.py'),
     osp.join('demo', 'supervised_synthetic.py'),
     osp.join('demo', 'hermes_synthetic.py')),
    (osp.join('baselines', 'supervised_matched_busi.py'),
     osp.join('baselines', 'supervised_ema_busi.py'), 'supervised_busi.py',
     'hermes_busi.py'),
])
def test_matched_and_ema_supervised_baselines(matched, ema, reference,
                                              hermes):
    """The matched baseline differs from the supervised one only in its
    labelled images per step, which are Hermes's; the EMA one adds only an
    EMAHook that starts with Hermes's EMA teacher."""
    assert changed_keys(matched, reference) == {'train_dataloader.batch_size'}
    assert load(matched).train_dataloader.batch_size == \
        load(hermes).labeled_per_batch
    assert {k.split('[')[0].split('#')[0]
            for k in changed_keys(ema, matched)} == {'custom_hooks'}
    assert not load(matched).get('custom_hooks')
    hook, = load(ema).custom_hooks
    assert hook.type == 'EMAHook'
    model = load(hermes).model
    assert hook.momentum == model.ema.momentum
    assert hook.begin_iter == model.unsup_weight.start


@pytest.mark.parametrize('twin, hermes', [
    (osp.join('demo', 'baselines', 'hermes_unlabelled_off_synthetic.py'),
     osp.join('demo', 'hermes_synthetic.py')),
    (osp.join('baselines', 'hermes_unlabelled_off_busi.py'),
     'hermes_busi.py'),
])
def test_unlabelled_off_twin_changes_only_the_weights(twin, hermes):
    """Hermes's supervised twin differs from Hermes only in the three
    unlabelled weights, each 0, and in its two student forwards (no strong
    view in its BN batch: amendment 28, the twin is the supervised
    learner): same data, sampler, heads and draws."""
    assert changed_keys(twin, hermes) == {
        'model.unsup_weight.value', 'model.contrast_weight.value',
        'model.consistency_weight.value', 'model.joint_student_forward'}
    model = load(twin).model
    for key in ('unsup_weight', 'contrast_weight', 'consistency_weight'):
        assert model[key].value == 0.0
    assert model.joint_student_forward is False


@pytest.mark.parametrize('guarded, hermes', [
    (osp.join('demo', 'variants', 'hermes_synthetic_guarded.py'),
     osp.join('demo', 'hermes_synthetic.py')),
    (osp.join('variants', 'hermes_busi_guarded.py'), 'hermes_busi.py'),
])
def test_guarded_variant_adds_only_the_two_opt_in_guards(guarded, hermes):
    assert_changes_exactly(guarded, hermes, [
        'model.pseudo_labeler.cls_alignment',
        'model.consistency.min_lesion_confidence'])


HERMES_CONFIGS = [
    name for name in CONFIGS
    if load(name).model.get('type') == 'HermesSegmentor'
]


@pytest.mark.parametrize('name', HERMES_CONFIGS)
def test_lesion_share_gate_on_in_every_hermes_config_but_mean_teacher(name):
    """The do-no-harm gate (issue 20) ships on; the mean-teacher baseline
    stays a plain mean teacher."""
    gate = load(name).model.get('lesion_share_gate')
    if 'mean_teacher' in name:
        assert gate is None
    else:
        assert gate == dict(type='LesionShareGate', min_ratio=0.25,
                            momentum=0.9)


@pytest.mark.parametrize('variant, hermes', [
    (osp.join('demo', 'variants', 'hermes_synthetic_unmixed_view.py'),
     osp.join('demo', 'hermes_synthetic.py')),
    (osp.join('variants', 'hermes_busi_unmixed_view.py'), 'hermes_busi.py'),
])
def test_unmixed_view_variant_changes_only_that_switch(variant, hermes):
    assert_changes_exactly(variant, hermes, ['model.unmixed_image_view'])
    assert load(variant).model.unmixed_image_view is True


@pytest.mark.parametrize('config', [
    osp.join('demo', 'hermes_synthetic.py'), 'hermes_busi.py',
    'hermes_tn3k.py'])
def test_shipped_hermes_shares_one_student_forward(config):
    """Issue 20, amendment 26 stage 2: one student forward over labelled
    images and strong views is the default."""
    assert load(config).model.joint_student_forward is True


@pytest.mark.parametrize('variant, hermes', [
    (osp.join('demo', 'variants', 'hermes_synthetic_separate_forward.py'),
     osp.join('demo', 'hermes_synthetic.py')),
    (osp.join('variants', 'hermes_busi_separate_forward.py'),
     'hermes_busi.py'),
])
def test_separate_forward_variant_changes_only_that_switch(variant, hermes):
    assert_changes_exactly(variant, hermes, ['model.joint_student_forward'])
    assert load(variant).model.joint_student_forward is False


BALANCING = ('min_high', 'ratio', 'histogram_bins')


@pytest.mark.parametrize('config', [
    osp.join('demo', 'hermes_synthetic.py'), 'hermes_busi.py',
    'hermes_tn3k.py'])
def test_shipped_hermes_balances_the_pixel_thresholds(config):
    """Issue 20, amendment 13: class-balanced pixel thresholds are the
    default; the image thresholds stay plain adaptive."""
    labeler = load(config).model.pseudo_labeler
    assert labeler.seg_threshold.type == 'ClassBalancedDualThreshold'
    assert labeler.cls_threshold.type == 'AdaptiveDualThreshold'


@pytest.mark.parametrize('variant, hermes', [
    (osp.join('demo', 'variants', 'hermes_synthetic_adaptive_threshold.py'),
     osp.join('demo', 'hermes_synthetic.py')),
    (osp.join('variants', 'hermes_busi_adaptive_threshold.py'),
     'hermes_busi.py'),
])
def test_adaptive_threshold_variant_changes_only_the_pixel_policy(variant,
                                                                  hermes):
    assert_changes_exactly(variant, hermes,
                           ['model.pseudo_labeler.seg_threshold'])
    policy = load(variant).model.pseudo_labeler.seg_threshold
    base = load(hermes).model.pseudo_labeler.seg_threshold
    assert policy.type == 'AdaptiveDualThreshold'
    # the adaptive part as shipped, without the balancing arguments
    assert {k: v for k, v in policy.items() if k != 'type'} == \
        {k: v for k, v in base.items() if k != 'type'
         and k not in BALANCING}


@pytest.mark.parametrize('variant, hermes', [
    (osp.join('demo', 'variants', 'hermes_synthetic_safety_net.py'),
     osp.join('demo', 'hermes_synthetic.py')),
    (osp.join('variants', 'hermes_busi_safety_net.py'), 'hermes_busi.py'),
])
def test_safety_net_variant_adds_only_the_hook(variant, hermes):
    from hermes_mm.engine.hooks import UnlabelledSafetyNetHook
    from hermes_mm.registry import HOOKS
    assert_changes_exactly(variant, hermes, ['custom_hooks'])
    hooks, base_hooks = load(variant).custom_hooks, load(hermes).custom_hooks
    assert hooks[:-1] == base_hooks  # the update hook, unchanged
    hook = HOOKS.build(hooks[-1])
    assert isinstance(hook, UnlabelledSafetyNetHook)
    # keys the teacher's MultiTaskMetric validation reports
    # (tests/evaluation/test_multi_task_metric.py, prefix 'teacher')
    assert hook.score_keys == ('teacher/seg/dice_lesion',
                               'teacher/cls/accuracy')
    assert load(variant).default_hooks.checkpoint.save_best.startswith(
        'teacher/')


@pytest.mark.parametrize('variant, hermes', [
    (osp.join('demo', 'variants', 'hermes_synthetic_class_dice.py'),
     osp.join('demo', 'hermes_synthetic.py')),
    (osp.join('variants', 'hermes_busi_class_dice.py'), 'hermes_busi.py'),
])
def test_class_dice_variant_changes_only_the_dice_loss(variant, hermes):
    assert_changes_exactly(variant, hermes,
                           ['model.segmentor.decode_head.loss_decode'])
    losses = load(variant).model.segmentor.decode_head.loss_decode
    base = load(hermes).model.segmentor.decode_head.loss_decode
    assert losses[0] == base[0]  # the cross-entropy, unchanged
    assert [base[1].type, losses[1].type] == ['IgnoreIndexDiceLoss',
                                              'ClassWiseDiceLoss']


def test_class_dice_variants_use_one_loss_setting():
    """The demo and BUSI class-Dice variants write the same loss list (an
    MMEngine config cannot take it from a second ``_base_``: both bases
    would define ``model``); this keeps the two copies equal."""
    demo, busi = (load(name).model.segmentor.decode_head.loss_decode
                  for name in (osp.join('demo', 'variants',
                                        'hermes_synthetic_class_dice.py'),
                               osp.join('variants',
                                        'hermes_busi_class_dice.py')))
    assert demo == busi
