"""Shared test set-up.

``hermes_mm`` is imported before any test module, so its compat layer (the
mmcv-lite fallback ``mmcv.ops``, weights-only checkpoint allow-list, MMSeg
DiceLoss fix) is in place whatever a test module imports first.
"""
import importlib.util
import os.path as osp

import pytest

import hermes_mm  # noqa: F401

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


@pytest.fixture(scope='session')
def load_script():
    """``load_script('benchmarks/quality.py')``: a repository script that is
    not a package module (tools/, benchmarks/), imported from its path."""

    def load(relpath: str):
        name = 'script_' + osp.splitext(relpath)[0].replace('/', '_')
        spec = importlib.util.spec_from_file_location(
            name, osp.join(REPO, relpath))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load
