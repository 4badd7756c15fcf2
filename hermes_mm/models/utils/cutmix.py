"""In-batch CutMix for strong views (Yun et al., ICCV 2019,
https://arxiv.org/abs/1905.04899), applied to images and their dense
pseudo-labels alike, as in UniMatch (https://arxiv.org/abs/2208.09910)."""
import math
from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor


def sample_box(height: int,
               width: int,
               area_range: Tuple[float, float],
               aspect_range: Tuple[float, float],
               generator: Optional[torch.Generator] = None
               ) -> Tuple[int, int, int, int]:
    """A random box ``(top, left, h, w)`` inside a ``height x width`` image.

    Its area fraction is drawn uniformly from ``area_range`` and its aspect
    ratio (h / w) log-uniformly from ``aspect_range``; if a side would not
    fit in the image it is clamped and the other side keeps the area.
    """

    def uniform(lo: float, hi: float) -> float:
        return lo + (hi - lo) * float(torch.rand(1, generator=generator))

    area = uniform(*area_range) * height * width
    aspect = math.exp(uniform(math.log(aspect_range[0]),
                              math.log(aspect_range[1])))
    exact_h, exact_w = math.sqrt(area * aspect), math.sqrt(area / aspect)
    # A side longer than the image is clamped; the other side then grows so
    # the area still comes from ``area_range`` (area <= H * W, so it fits).
    if exact_h > height:
        exact_h, exact_w = height, area / height
    elif exact_w > width:
        exact_h, exact_w = area / width, width
    box_h = max(1, min(height, int(round(exact_h))))
    box_w = max(1, min(width, int(round(exact_w))))
    top = int(torch.randint(0, height - box_h + 1, (1, ),
                            generator=generator))
    left = int(torch.randint(0, width - box_w + 1, (1, ),
                             generator=generator))
    return top, left, box_h, box_w


def cutmix_batch(images: Tensor,
                 dense_targets: Sequence[Tensor],
                 prob: float,
                 area_range: Tuple[float, float] = (0.02, 0.4),
                 aspect_range: Tuple[float, float] = (0.3, 1 / 0.3),
                 generator: Optional[torch.Generator] = None
                 ) -> Tuple[Tensor, List[Tensor], Tensor]:
    """Paste a box of another image of the batch into each image.

    With probability ``prob`` image ``i`` receives a random box from image
    ``partner[i]`` (a random cyclic shift of the batch, so never itself),
    and every tensor in ``dense_targets`` (shape (B, ..., H, W), e.g. the
    teacher's probabilities on the weak views) gets the same box from the
    same partner, so targets stay aligned with pixels.

    Args:
        images (Tensor): (B, C, H, W).
        dense_targets (sequence[Tensor]): Each (B, ..., H, W).
        prob (float): Probability that an image is mixed.
        area_range (tuple): Box area as a fraction of the image.
        aspect_range (tuple): Box aspect ratio (h / w) range.
        generator (torch.Generator, optional): Random source.

    Returns:
        tuple: Mixed images, mixed targets (new tensors; inputs are not
        modified) and a (B,) bool mask of mixed images.
    """
    batch, _, height, width = images.shape
    mixed = torch.zeros(batch, dtype=torch.bool, device=images.device)
    if batch < 2 or prob <= 0:
        return images, list(dense_targets), mixed
    shift = int(torch.randint(1, batch, (1, ), generator=generator))
    partner = torch.roll(torch.arange(batch), shift)
    chosen = torch.rand(batch, generator=generator) < prob
    out_images = images.clone()
    out_targets = [t.clone() for t in dense_targets]
    for i in torch.nonzero(chosen).flatten().tolist():
        top, left, box_h, box_w = sample_box(height, width, area_range,
                                             aspect_range, generator)
        j = int(partner[i])
        region = (slice(top, top + box_h), slice(left, left + box_w))
        out_images[i, :, region[0], region[1]] = \
            images[j, :, region[0], region[1]]
        for src, dst in zip(dense_targets, out_targets):
            dst[i, ..., region[0], region[1]] = src[j, ..., region[0],
                                                    region[1]]
        mixed[i] = True
    return out_images, out_targets, mixed
