from .multi_source_ratio_sampler import MultiSourceRatioSampler

__all__ = ['MultiSourceRatioSampler']
