# Hermes on the synthetic demo data where every CutMixed unlabelled image
# keeps its image-level signal: the student also classifies the strong view
# before the paste (model.unmixed_image_view, issue 20; opt-in until
# measured on several data styles, benchmarks/results/).
#   python tools/train.py configs/demo/variants/hermes_synthetic_unmixed_view.py
_base_ = '../hermes_synthetic.py'

model = dict(unmixed_image_view=True)
