"""Install hermes_mm.

CPU-only machine (no compiled mmcv ops), one command::

    pip install -e ".[cpu,tests]"

GPU machine: install torch for your CUDA, then ``mim install "mmcv==2.1.0"``
and ``pip install -e ".[tests]"``.
"""
import os.path as osp

from setuptools import find_packages, setup


def get_version() -> str:
    namespace = {}
    with open(osp.join('hermes_mm', 'version.py')) as f:
        exec(f.read(), namespace)
    return namespace['__version__']


def read(path: str) -> str:
    with open(path, encoding='utf-8') as f:
        return f.read()


def requirements(path: str):
    """Requirement lines of ``requirements/<path>``, comments dropped."""
    lines = read(osp.join('requirements', path)).splitlines()
    return [
        line.split('#')[0].strip() for line in lines
        if line.split('#')[0].strip()
    ]


setup(
    name='hermes_mm',
    version=get_version(),
    description=('Semi-supervised dual-threshold contrastive learning for '
                 'ultrasound lesion segmentation and classification '
                 '(OpenMMLab plugin)'),
    long_description=read('README.md'),
    long_description_content_type='text/markdown',
    license='Apache License 2.0',
    packages=find_packages(exclude=('configs', 'tools', 'tests',
                                    'benchmarks')),
    python_requires='>=3.8',
    install_requires=requirements('runtime.txt'),
    extras_require={
        # mmcv is deliberately not forced: either a full mmcv (GPU,
        # `mim install "mmcv==2.1.0"`) or mmcv-lite (CPU) works.
        'cpu': requirements('cpu.txt'),
        'tests': requirements('tests.txt'),
    },
    classifiers=[
        'Programming Language :: Python :: 3',
        'Topic :: Scientific/Engineering :: Medical Science Apps.',
    ],
    zip_safe=False,
)
