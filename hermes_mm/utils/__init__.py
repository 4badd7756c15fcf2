from .checksums import tree_checksums
from .config_utils import (config_with_overrides, iter_dataset_cfgs,
                           iter_loader_datasets, load_config, rewrite_datasets,
                           set_dist_backend, to_jsonable)

__all__ = [
    'config_with_overrides', 'iter_dataset_cfgs', 'iter_loader_datasets',
    'load_config', 'rewrite_datasets', 'set_dist_backend', 'to_jsonable',
    'tree_checksums'
]
