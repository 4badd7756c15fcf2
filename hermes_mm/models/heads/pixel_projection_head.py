"""Pixel-level projection head for contrastive learning.

A 1x1-convolution MLP maps a feature map (B, C, h, w) to per-pixel
L2-normalised embeddings, the representation on which the pixel-level
contrastive loss compares anchor pixels with class prototypes and negatives.
Design as in pixel-contrast segmentation (Wang et al., ICCV 2021,
https://arxiv.org/abs/2101.11939) and U2PL (Wang et al., CVPR 2022,
https://arxiv.org/abs/2203.03884).

A 1x1-conv MLP is the :class:`ProjectionHead` MLP applied to every pixel's
feature vector, so this is that head with a map interface, plus
:meth:`PixelProjectionHead.forward_pixels` for a set of gathered pixel
vectors: Hermes projects only the pixels its contrastive loss samples, so
the cost does not grow with the image size.
"""
from torch import Tensor

from hermes_mm.registry import MODELS
from .projection_head import ProjectionHead

__all__ = ['PixelProjectionHead']


@MODELS.register_module()
class PixelProjectionHead(ProjectionHead):
    """1x1-conv MLP projection to per-pixel L2-normalised embeddings.

    ``num_layers - 1`` hidden blocks ``Linear -> norm -> act`` followed by a
    final ``Linear``, applied to each pixel (a 1x1-conv MLP); every output
    vector has unit L2 norm. BatchNorm statistics are taken over all pixels
    given (B * h * w for a map), so a training batch of one image is fine;
    a single pixel in total falls back to running statistics (see
    :func:`~hermes_mm.models.heads.projection_head.batch_safe_norm`).

    Args: as :class:`ProjectionHead` (``in_channels`` = feature channels C).
    """

    def forward(self, x: Tensor) -> Tensor:
        """Project maps (B, in_channels, h, w) to unit vectors per pixel
        (B, out_channels, h, w)."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f'expected input (B, {self.in_channels}, h, w), '
                             f'got {tuple(x.shape)}')
        batch, channels, height, width = x.shape
        pixels = x.permute(0, 2, 3, 1).reshape(-1, channels)
        out = self.forward_pixels(pixels)
        return out.view(batch, height, width, -1).permute(0, 3, 1, 2)

    def forward_pixels(self, x: Tensor) -> Tensor:
        """Project pixel feature vectors (U, in_channels) to unit vectors
        (U, out_channels)."""
        return super().forward(x)
