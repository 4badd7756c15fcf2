from .distributed import (cpu_distributed_cfg, end_distributed_worker,
                          revert_sync_bn_cfg, setup_cpu_distributed,
                          shutdown_distributed)
from .hermes_inferencer import (DEFAULT_EXCLUDE, HermesInferencer,
                                InferenceInput, collect_inputs)

__all__ = [
    'DEFAULT_EXCLUDE', 'HermesInferencer', 'InferenceInput',
    'collect_inputs', 'cpu_distributed_cfg', 'end_distributed_worker',
    'revert_sync_bn_cfg', 'setup_cpu_distributed', 'shutdown_distributed'
]
