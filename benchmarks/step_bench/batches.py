"""Synthetic random batches (tensors + ``SegDataSample``) for every variant
of the training-step benchmark: no data loader, so loading is not timed.
"""


class BatchFactory:
    """Fixed random images / masks / labels; fresh sample objects per call.

    Images are uint8 (3, S, S) as the data loader gives them; labelled
    masks hold one random ellipse "lesion" (class 2, BUSI's 'normal', gets
    an empty mask). Unlabelled views carry the hidden mask/label the
    synthetic set provides (pseudo-label precision diagnostics run, as in
    real training). Strong views are the weak images plus noise.
    """

    def __init__(self, args, pool: int = 2):
        import torch
        self.size = args.size
        self.b_l, self.b_u = args.labeled, args.unlabeled
        gen = torch.Generator().manual_seed(args.seed)
        self.pool = []
        for _ in range(pool):
            n = self.b_l + self.b_u
            imgs = torch.randint(0, 256, (n, 3, self.size, self.size),
                                 dtype=torch.uint8, generator=gen)
            noise = torch.randint(-40, 41, (self.b_u, 3, self.size,
                                            self.size), generator=gen)
            strong = (imgs[self.b_l:].int() + noise).clamp(0, 255).to(
                torch.uint8)
            labels = torch.randint(0, 3, (n, ), generator=gen)
            masks = torch.stack([
                self._ellipse(gen) if int(c) != 2 else
                torch.zeros(self.size, self.size, dtype=torch.long)
                for c in labels
            ])
            self.pool.append(dict(imgs=imgs, strong=strong, labels=labels,
                                  masks=masks))
        self.calls = 0

    def _ellipse(self, gen):
        import torch
        s = self.size
        cy, cx = (torch.rand(2, generator=gen) * 0.5 + 0.25) * s
        ry, rx = (torch.rand(2, generator=gen) * 0.2 + 0.1) * s
        yy, xx = torch.meshgrid(torch.arange(s), torch.arange(s),
                                indexing='ij')
        inside = ((yy - cy) / ry)**2 + ((xx - cx) / rx)**2 <= 1
        return inside.long()

    def _meta(self, i):
        s = (self.size, self.size)
        return dict(img_path=f'synthetic_{i}.png', img_rel=f'{i}.png',
                    ori_shape=s, img_shape=s, pad_shape=s,
                    scale_factor=(1.0, 1.0), flip=False,
                    flip_direction=None, reduce_zero_label=False)

    def _labelled(self, p, i):
        from mmengine.structures import PixelData
        from mmseg.structures import SegDataSample
        sample = SegDataSample(metainfo=self._meta(i))
        sample.gt_sem_seg = PixelData(data=p['masks'][i][None].clone())
        sample.set_data(dict(gt_label=p['labels'][i].view(1).clone()))
        return sample

    def _unlabelled(self, p, i):
        import torch
        from mmengine.structures import PixelData
        from mmseg.structures import SegDataSample
        sample = SegDataSample(metainfo=self._meta(i))
        sample.set_data(dict(
            gt_label=torch.tensor([-1]),
            hidden_sem_seg=PixelData(data=p['masks'][i][None].clone()),
            hidden_label=p['labels'][i].view(1).clone()))
        return sample

    def _next(self):
        p = self.pool[self.calls % len(self.pool)]
        self.calls += 1
        return p

    def plain(self) -> dict:
        """B_l + B_u labelled images (the labelled + strong images)."""
        p = self._next()
        imgs = list(p['imgs'][:self.b_l]) + list(p['strong'])
        return dict(inputs=imgs,
                    data_samples=[self._labelled(p, i)
                                  for i in range(self.b_l + self.b_u)])

    def multi_branch(self) -> dict:
        """What MultiBranch + pseudo_collate give: per-branch lists with
        None where a sample does not feed the branch."""
        p = self._next()
        b_l, b_u = self.b_l, self.b_u
        none_l, none_u = [None] * b_l, [None] * b_u
        return dict(
            inputs=dict(
                sup=list(p['imgs'][:b_l]) + none_u,
                unsup_weak=none_l + list(p['imgs'][b_l:]),
                unsup_strong=none_l + list(p['strong'])),
            data_samples=dict(
                sup=[self._labelled(p, i) for i in range(b_l)] + none_u,
                unsup_weak=none_l + [self._unlabelled(p, b_l + i)
                                     for i in range(b_u)],
                unsup_strong=none_l + [self._unlabelled(p, b_l + i)
                                       for i in range(b_u)]))

    def test(self, batch: int) -> dict:
        from mmseg.structures import SegDataSample
        p = self._next()
        n = p['imgs'].shape[0]
        idx = [i % n for i in range(batch)]
        return dict(inputs=[p['imgs'][i] for i in idx],
                    data_samples=[SegDataSample(metainfo=self._meta(i))
                                  for i in idx])
