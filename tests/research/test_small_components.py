"""research/small_components.py: which test_cfg keys it sets, and a
clear error before quality.py has produced the runs. (The re-test itself
is tools/test.py with test_cfg.min_lesion_area / lesion_classes, covered
by tests/models/segmentors/test_multi_task_segmentor.py.)"""
import pytest
from mmengine.config import Config


@pytest.fixture(scope='module')
def bench(load_script):
    return load_script('research/small_components.py')


def test_test_options_target_the_predicting_segmentor(bench, tmp_path):
    for model, prefix in ((dict(type='HermesSegmentor', segmentor=dict()),
                           'model.segmentor.test_cfg'),
                          (dict(type='MultiTaskSegmentor'),
                           'model.test_cfg')):
        path = str(tmp_path / 'cfg.py')
        Config(dict(model=model)).dump(path)
        assert bench.test_options(path, 0.03) == [
            f'{prefix}.min_lesion_area=0.03']
        assert bench.test_options(path, 0.03, [0, 1]) == [
            f'{prefix}.min_lesion_area=0.03',
            f'{prefix}.lesion_classes=[0,1]']


def test_missing_quality_runs_are_named(bench, tmp_path):
    args = ['--out-dir', str(tmp_path), '--seeds', '0', '--ratios',
            '0.125', '--variants', 'supervised', '--cache-dir',
            str(tmp_path / 'cache')]
    with pytest.raises(SystemExit, match='run.json missing'):
        bench.main(args)
    with pytest.raises(SystemExit, match='held-out'):
        bench.main(args + ['--heldout-num', '0'])
