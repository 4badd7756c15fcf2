"""Catch a visualisation-backend setting that silently does nothing.

MMSegmentation-style base runtimes define a top-level ``vis_backends`` list
and build ``visualizer = dict(vis_backends=vis_backends, ...)`` from it. The
reference is resolved when the *base* file is read, so a child config that
sets ``vis_backends = [..., dict(type='TensorboardVisBackend')]`` changes
the top-level variable only: the run writes no event file, and nothing
says so. What works is ``visualizer = dict(vis_backends=[...])``.
"""
from typing import Optional

from mmengine.config import Config
from mmengine.logging import print_log


def _types(backends) -> list:
    return [str(b.get('type', b)) if isinstance(b, dict) else str(b)
            for b in (backends or [])]


def vis_backends_mismatch(cfg: Config) -> Optional[str]:
    """The warning for a top-level ``vis_backends`` naming a backend the
    visualizer does not use, or None.

    The other way round is the README's (correct) way: the child sets
    ``visualizer.vis_backends`` and the base's top-level list, left as it
    was, names fewer backends.

    Args:
        cfg (Config): The loaded config (CLI options applied).

    Returns:
        str or None: One message naming both lists and the fix.
    """
    top = cfg.get('vis_backends', None)
    visualizer = cfg.get('visualizer', None)
    if top is None or not isinstance(visualizer, dict):
        return None
    used = visualizer.get('vis_backends', None)
    if not set(_types(top)) - set(_types(used)):
        return None
    return (f'The config sets vis_backends={_types(top)} but the visualizer '
            f'uses visualizer.vis_backends={_types(used)}: a top-level '
            'vis_backends in a child config does not reach the base '
            "config's visualizer, so the run logs only to the latter. Set "
            "visualizer = dict(vis_backends=[dict(type='LocalVisBackend'), "
            "dict(type='TensorboardVisBackend')]) instead (README, "
            'Visualisation).')


def warn_vis_backends(cfg: Config) -> Optional[str]:
    """Log :func:`vis_backends_mismatch` as a warning; return it."""
    message = vis_backends_mismatch(cfg)
    if message:
        print_log(message, logger='current', level=30)  # WARNING
    return message


__all__ = ['vis_backends_mismatch', 'warn_vis_backends']
