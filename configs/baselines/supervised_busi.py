# Supervised-only baseline: the Hermes network on the labelled images of the
# split only (same as configs/supervised_busi.py, listed with the baselines).
_base_ = '../supervised_busi.py'
