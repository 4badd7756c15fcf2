from . import hooks, runner  # noqa: F401

__all__ = ['hooks', 'runner']
