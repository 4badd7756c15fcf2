from . import samplers, transforms  # noqa: F401

__all__ = ['samplers', 'transforms']
