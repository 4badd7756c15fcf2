from .formatting import PackMultiTaskInputs
from .loading import LoadMultiTaskAnnotations
from .multi_branch import MultiBranch
from .random_speckle_noise import RandomSpeckleNoise

__all__ = [
    'LoadMultiTaskAnnotations', 'MultiBranch', 'PackMultiTaskInputs',
    'RandomSpeckleNoise'
]
