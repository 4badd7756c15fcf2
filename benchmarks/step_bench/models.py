"""Model and optimizer building of the training-step benchmark: the
benchmarked configs, the EncoderDecoder / MultiTaskSegmentor / Hermes / floor
model dicts built from them, the configs' AdamW wrapper, state sizes.
"""
import copy
import os.path as osp
from contextlib import contextmanager
from typing import Dict, Optional

from _common import REPO_ROOT


MODEL_CONFIGS = dict(
    small=dict(
        multitask='configs/_base_/models/multitask_r18_small_itas.py',
        hermes='configs/_base_/models/hermes_r18_small_itas.py'),
    r50=dict(
        multitask='configs/_base_/models/multitask_r50_upernet_itas.py',
        hermes='configs/_base_/models/hermes_r50_upernet_itas.py'),
)


SCHEDULE_CONFIG = 'configs/_base_/schedules/schedule_20k.py'


MIB = 2.0**20


def load_model_cfgs(args) -> Dict[str, dict]:
    """Model configs of every variant, from the shipped config files."""
    from mmengine.config import Config
    paths = MODEL_CONFIGS[args.model]
    size = (args.size, args.size)
    mt = Config.fromfile(osp.join(REPO_ROOT, paths['multitask'])).model
    mt = copy.deepcopy(mt.to_dict())
    mt['data_preprocessor']['size'] = size
    herm = Config.fromfile(osp.join(REPO_ROOT, paths['hermes'])).model
    herm = copy.deepcopy(herm.to_dict())
    herm['data_preprocessor']['data_preprocessor']['size'] = size
    ed = dict(
        type='EncoderDecoder',
        data_preprocessor=copy.deepcopy(mt['data_preprocessor']),
        backbone=copy.deepcopy(mt['backbone']),
        decode_head=copy.deepcopy(mt['decode_head']),
        train_cfg=dict(),
        test_cfg=dict(mode='whole'))
    for key in ('neck', 'auxiliary_head'):
        if mt.get(key) is not None:
            ed[key] = copy.deepcopy(mt[key])
    return dict(encoder_decoder=ed, multitask=mt, hermes=herm,
                floor=copy.deepcopy(herm))


def semi_iteration(hermes_cfg: dict, override: Optional[int]) -> int:
    """Iteration at which every ramped term has reached its full weight."""
    if override is not None:
        return override
    ends = [0]
    for key in ('unsup_weight', 'contrast_weight', 'consistency_weight'):
        ramp = hermes_cfg.get(key) or {}
        ends.append(int(ramp.get('start', 0)) + int(ramp.get('length', 0)))
    return max(ends)


def build_model(cfg: dict, device):
    from mmengine.config import ConfigDict
    from mmengine.model import revert_sync_batchnorm

    from hermes_mm.registry import MODELS

    # ConfigDict as from a config file (MMSeg reads test_cfg.mode).
    model = MODELS.build(ConfigDict(copy.deepcopy(cfg)))
    model.init_weights()
    # What the Runner does when not distributed (SyncBN -> BN).
    model = revert_sync_batchnorm(model)
    return model.to(device)


def build_optim_wrapper(model, args):
    """The configs' optimizer (AdamW + clipping), optionally AMP.

    CUDA: MMEngine's ``AmpOptimWrapper`` (what ``tools/train.py --amp``
    uses) with the requested dtype. CPU (``AmpOptimWrapper`` refuses it):
    the plain wrapper with ``torch.autocast('cpu', bfloat16)`` around the
    forward pass.
    """
    import torch
    from mmengine.config import Config
    from mmengine.optim import OptimWrapper
    from mmengine.optim import build_optim_wrapper as build
    cfg = copy.deepcopy(
        Config.fromfile(osp.join(REPO_ROOT, SCHEDULE_CONFIG)).optim_wrapper)
    on_cuda = str(args.device).startswith('cuda')
    if args.amp != 'none' and on_cuda:
        cfg['type'] = 'AmpOptimWrapper'
        cfg['dtype'] = dict(bf16='bfloat16', fp16='float16')[args.amp]
        cfg['loss_scale'] = 'dynamic'
    wrapper = build(model, cfg)
    if args.amp != 'none' and not on_cuda:
        if args.amp != 'bf16':
            raise SystemExit('--amp on CPU: only bf16')

        class CPUAutocastOptimWrapper(OptimWrapper):

            @contextmanager
            def optim_context(self, model):
                with super().optim_context(model), torch.autocast(
                        'cpu', dtype=torch.bfloat16):
                    yield

        wrapper = CPUAutocastOptimWrapper(
            optimizer=wrapper.optimizer, clip_grad=cfg.get('clip_grad'))
    return wrapper


def state_bytes(model, optim_wrapper=None) -> Dict[str, float]:
    """Parameter, buffer and optimizer-state MiB (exact tensor sizes)."""
    import torch
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    trainable = sum(p.numel() * p.element_size() for p in model.parameters()
                    if p.requires_grad)
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    optim = 0
    if optim_wrapper is not None:
        for state in optim_wrapper.optimizer.state.values():
            for value in state.values():
                if torch.is_tensor(value):
                    optim += value.numel() * value.element_size()
    return dict(params_mib=params / MIB, trainable_params_mib=trainable / MIB,
                buffers_mib=buffers / MIB, optimizer_state_mib=optim / MIB)
