"""Is the instance task already solved by the trained features?

A pre-check for ``InstanceContrastHermes`` (this folder's README): if the
student's classification vector of an unlabelled image's strong view
already picks out the teacher's vector of the same image's weak view among
those of the other images, the InfoNCE term has nothing left to teach. For
each run folder given (its ``config.py`` and last checkpoint), on the first
``--num`` images of the config's unlabelled training set (the weak and
strong views of its own pipeline, one image per forward, the model in eval
mode), it reports the top-1 retrieval rate of the same image (chance:
1 / num), the InfoNCE at ``--temperature`` on the raw, L2-normalised
vectors (chance: log num) and the mean cosine of positive and negative
pairs::

    python research/instance_contrast/view_retrieval.py \\
        benchmarks/runs/styles_1200/crowded/runs/<variant>/r0.125/seed0 \\
        --out benchmarks/results/view_retrieval_1200it.json
"""
import argparse
import math
import os.path as osp
import random
import sys
import time
from typing import Dict, List

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

HERE = osp.dirname(osp.abspath(__file__))
sys.path.insert(0, osp.join(HERE, '..'))
sys.path.insert(0, osp.join(HERE, '..', '..', 'benchmarks'))
from _common import environment, table, write_json  # noqa: E402
from _study import last_checkpoint  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('runs', nargs='+', help='quality.py run folders')
    p.add_argument('--num', type=int, default=128,
                   help='unlabelled images (fewer if the set is smaller)')
    p.add_argument('--temperature', type=float, default=0.2)
    p.add_argument('--seed', type=int, default=0,
                   help='seed of the random views')
    p.add_argument('--out', default=None, help='JSON record')
    return p.parse_args(argv)


def retrieval(queries: Tensor, keys: Tensor,
              temperature: float) -> Dict[str, float]:
    """Row i of ``queries`` and of ``keys`` come from the same image."""
    q, k = F.normalize(queries, dim=1), F.normalize(keys, dim=1)
    sim = q @ k.t()
    n = sim.shape[0]
    target = torch.arange(n)
    off = ~torch.eye(n, dtype=torch.bool)
    return dict(
        images=n,
        top1=float((sim.argmax(1) == target).float().mean()),
        chance_top1=1.0 / n,
        infonce=float(F.cross_entropy(sim / temperature, target)),
        chance_infonce=math.log(n),
        cos_positive=float(sim.diag().mean()),
        cos_negative=float(sim[off].mean()))


def view_vectors(run: str, num: int, seed: int):
    """(student vectors of the strong views, teacher vectors of the weak
    views) of the first ``num`` unlabelled training images."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    import hermes_mm  # noqa: F401
    from hermes_mm.apis import HermesInferencer
    from hermes_mm.registry import DATASETS

    init_default_scope('mmseg')
    cfg = Config.fromfile(osp.join(run, 'config.py'))
    checkpoint = last_checkpoint(run)
    model = HermesInferencer(cfg, checkpoint, device='cpu',
                             show_progress=False).model.eval()
    unlabelled = [d for d in cfg.train_dataloader.dataset.datasets
                  if d.get('subset') == 'unlabeled']
    if len(unlabelled) != 1:
        raise SystemExit(f'{run}/config.py: expected one unlabelled '
                         "training set (subset='unlabeled'), found "
                         f'{len(unlabelled)}')
    dataset = DATASETS.build(unlabelled[0])
    # the views' randomness (numpy in the MMCV transforms, torch and
    # random elsewhere)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    student: List[Tensor] = []
    teacher: List[Tensor] = []

    def forward(net, image: Tensor) -> Tensor:
        x = model.data_preprocessor(
            dict(inputs=[image], data_samples=None), False)['inputs']
        return net.forward_train(x).task_feats.cls_vec

    with torch.no_grad():
        for i in range(min(num, len(dataset))):
            views = dataset[i]['inputs']
            student.append(forward(model.student, views['unsup_strong']))
            teacher.append(forward(model.teacher.module,
                                   views['unsup_weak']))
    return torch.cat(student), torch.cat(teacher)


def main(argv=None) -> List[dict]:
    args = parse_args(argv)
    start = time.perf_counter()
    rows = []
    for run in args.runs:
        queries, keys = view_vectors(run, args.num, args.seed)
        rows.append(dict(run=run, **retrieval(queries, keys,
                                              args.temperature)))
    print(table(['run', 'images', 'top-1 (chance)', 'InfoNCE (chance)',
                 'cos pos / neg'],
                [[r['run'], str(r['images']),
                  f"{r['top1']:.3f} ({r['chance_top1']:.3f})",
                  f"{r['infonce']:.2f} ({r['chance_infonce']:.2f})",
                  f"{r['cos_positive']:.3f} / {r['cos_negative']:.3f}"]
                 for r in rows]))
    if args.out:
        write_json(args.out, dict(study='view_retrieval', args=vars(args),
                                  rows=rows, environment=environment(),
                                  wall_time_s=time.perf_counter() - start))
    return rows


if __name__ == '__main__':
    main()
