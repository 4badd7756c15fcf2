"""Checkpoint sizes of configs, as MMEngine writes them.

``iter_*.pth`` holds the weights (Hermes: student, EMA teacher, projectors,
queues) and the AdamW state (two moments per trainable weight); the best
checkpoint (``CheckpointHook(save_best=...)``) is written without optimizer
state. Both are measured by saving the built model after one optimizer step
with zero gradients (which creates the AdamW state), on CPU, in seconds.

    python benchmarks/checkpoint_sizes.py configs/hermes_busi.py \
        configs/supervised_busi.py configs/hermes_busi_small.py
"""
import argparse
import os
import sys
import tempfile

import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope

import hermes_mm  # noqa: F401  (compat first)
from hermes_mm.registry import MODELS


def sizes(config: str) -> dict:
    """Parameter counts and both checkpoint sizes (bytes) of a config."""
    init_default_scope('mmseg')
    cfg = Config.fromfile(config)
    model = MODELS.build(cfg.model)
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    for param in model.parameters():
        if param.requires_grad:
            param.grad = torch.zeros_like(param)
    wrapper.optimizer.step()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, 'probe.pth')
        torch.save({'state_dict': model.state_dict(), 'meta': {}}, path)
        weights = os.path.getsize(path)
        torch.save({'state_dict': model.state_dict(),
                    'optimizer': wrapper.state_dict(), 'meta': {}}, path)
        full = os.path.getsize(path)
    return dict(
        params=sum(p.numel() for p in model.parameters()),
        trainable=sum(p.numel() for p in model.parameters()
                      if p.requires_grad),
        weights_bytes=weights, with_optimizer_bytes=full)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('configs', nargs='+')
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print('| config | parameters (trainable) | iter_*.pth | best |')
    print('|---|---|---|---|')
    for config in args.configs:
        s = sizes(config)
        print(f'| `{config}` | {s["params"] / 1e6:.1f} M '
              f'({s["trainable"] / 1e6:.1f} M) | '
              f'{s["with_optimizer_bytes"] / 1e6:.0f} MB | '
              f'{s["weights_bytes"] / 1e6:.0f} MB |')
    return 0


if __name__ == '__main__':
    sys.exit(main())
