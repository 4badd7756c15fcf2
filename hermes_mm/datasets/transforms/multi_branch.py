"""Several views of one image: the last step of a semi-supervised pipeline.

The design follows MMDetection's ``MultiBranch`` transform
(``mmdet/datasets/transforms/wrappers.py``, used by its Soft Teacher and
Mean Teacher configs). Transforms placed *before* ``MultiBranch`` run once,
so every branch shares their result (geometry: resize, crop, flip); each
branch pipeline then runs on its own deep copy (photometric changes only).
Hence the weak and the strong view of an unlabelled image have
corresponding pixels, which pixel-wise pseudo-labels need.
"""
import copy
from typing import Dict, List, Optional, Sequence

from mmcv.transforms import BaseTransform, Compose

from hermes_mm.registry import TRANSFORMS

#: The keys every branch pipeline must produce (the packer's output).
PACKED_KEYS = ('inputs', 'data_samples')


@TRANSFORMS.register_module()
class MultiBranch(BaseTransform):
    """Run one pipeline per branch and group the packed outputs by key.

    Every name in ``branch_field`` appears in the output; a branch without
    a pipeline holds ``None``. Labelled and unlabelled samples therefore
    have the same structure and MMEngine's default ``pseudo_collate``
    batches them into ``{'inputs': {branch: [Tensor | None, ...]},
    'data_samples': {branch: [SegDataSample | None, ...]}}``, which
    :class:`MultiBranchSegDataPreProcessor` consumes.

    Example (unlabelled pipeline; geometry before, photometry inside)::

        dict(type='MultiBranch',
             branch_field=['sup', 'unsup_weak', 'unsup_strong'],
             unsup_weak=[dict(type='PackMultiTaskInputs')],
             unsup_strong=[dict(type='RandomSpeckleNoise'),
                           dict(type='PackMultiTaskInputs')])

    Args:
        branch_field (Sequence[str]): Names of all branches of the
            semi-supervised batch, e.g. ``['sup', 'unsup_weak',
            'unsup_strong']``. Must be the same list for every dataset
            concatenated into one training set.
        **branch_pipelines (list[dict | callable]): One pipeline per branch
            this sample feeds, keyed by a name from ``branch_field``. Each
            must end with a packer (e.g. ``PackMultiTaskInputs``) that
            returns ``{'inputs': ..., 'data_samples': ...}``.

    Returns (of :meth:`transform`):
        dict | None: ``{'inputs': {branch: Tensor(3, H, W) | None},
        'data_samples': {branch: SegDataSample | None}}``, or ``None`` if a
        branch pipeline returned ``None`` (the dataset then re-samples).
    """

    def __init__(self, branch_field: Sequence[str],
                 **branch_pipelines: List[dict]) -> None:
        branch_field = list(branch_field)
        if not branch_field:
            raise ValueError('`branch_field` must name at least one branch.')
        if len(set(branch_field)) != len(branch_field):
            raise ValueError(
                f'`branch_field` has repeated names: {branch_field}.')
        unknown = sorted(set(branch_pipelines) - set(branch_field))
        if unknown:
            raise ValueError(
                f'Branch pipelines {unknown} are not in `branch_field` '
                f'{branch_field}.')
        if not branch_pipelines:
            raise ValueError(
                'MultiBranch needs at least one branch pipeline, one of '
                f'{branch_field}.')
        self.branch_field = branch_field
        # Kept in `branch_field` order so random draws happen in a fixed
        # order whatever order the config lists the keywords in.
        self.branch_pipelines: Dict[str, Compose] = {
            branch: Compose(branch_pipelines[branch])
            for branch in branch_field if branch in branch_pipelines
        }

    def transform(self, results: dict) -> Optional[dict]:
        """Apply each branch pipeline to a deep copy of ``results``."""
        packed = {key: dict.fromkeys(self.branch_field) for key in PACKED_KEYS}
        for branch, pipeline in self.branch_pipelines.items():
            branch_results = pipeline(copy.deepcopy(results))
            if branch_results is None:
                return None
            missing = [k for k in PACKED_KEYS if k not in branch_results]
            if missing:
                raise ValueError(
                    f'The pipeline of branch {branch!r} must end with a '
                    f'packer (e.g. PackMultiTaskInputs) producing '
                    f'{list(PACKED_KEYS)}; its output lacks {missing} '
                    f'(keys: {sorted(branch_results)}).')
            for key in PACKED_KEYS:
                packed[key][branch] = branch_results[key]
        return packed

    def __repr__(self) -> str:
        repr_str = self.__class__.__name__
        repr_str += f'(branch_field={self.branch_field}, '
        repr_str += f'branch_pipelines={self.branch_pipelines})'
        return repr_str
