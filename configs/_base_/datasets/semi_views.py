# Views shared by every semi-supervised data config: branch names and the
# strong view (photometric jitter, blur, speckle noise, CutOut; CutMix is
# applied in-batch by the model). Geometry is shared with the weak view.
branch_field = ['sup', 'unsup_weak', 'unsup_strong']
labeled_per_batch = 4
unlabeled_per_batch = 4
samples_per_batch = labeled_per_batch + unlabeled_per_batch
strong_pipeline = [
    dict(
        type='RandomApply',
        transforms=[
            dict(type='mmpretrain.ColorJitter', brightness=0.5, contrast=0.5)
        ],
        prob=0.8),
    dict(
        type='mmpretrain.GaussianBlur',
        magnitude_range=(0.1, 2.0),
        magnitude_std='inf',
        prob=0.5),
    dict(type='RandomSpeckleNoise', prob=0.5, sigma_range=(0.05, 0.2)),
    # The pseudo-label inside the hole is kept (FixMatch-style).
    dict(
        type='RandomCutOut',
        prob=0.5,
        n_holes=1,
        cutout_ratio=[(0.1, 0.1), (0.2, 0.2), (0.3, 0.3)],
        fill_in=(0, 0, 0)),
    dict(type='PackMultiTaskInputs'),
]
