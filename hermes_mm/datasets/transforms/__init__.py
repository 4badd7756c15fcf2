from .formatting import PackMultiTaskInputs
from .load_image_as_stored import LoadImageAsStored
from .loading import LoadMultiTaskAnnotations
from .multi_branch import MultiBranch
from .random_speckle_noise import RandomSpeckleNoise

__all__ = [
    'LoadImageAsStored', 'LoadMultiTaskAnnotations', 'MultiBranch',
    'PackMultiTaskInputs', 'RandomSpeckleNoise'
]
