"""benchmarks/small_components.py: which test_cfg key it sets, and a clear
error before quality.py has produced the runs. (The re-test itself is
tools/test.py with test_cfg.min_lesion_area, covered by
tests/models/segmentors/test_multi_task_segmentor.py.)"""
import pytest
from mmengine.config import Config


@pytest.fixture(scope='module')
def bench(load_script):
    return load_script('benchmarks/small_components.py')


def test_area_option_targets_the_predicting_segmentor(bench, tmp_path):
    for model, key in ((dict(type='HermesSegmentor', segmentor=dict()),
                        'model.segmentor.test_cfg.min_lesion_area'),
                       (dict(type='MultiTaskSegmentor'),
                        'model.test_cfg.min_lesion_area')):
        path = str(tmp_path / 'cfg.py')
        Config(dict(model=model)).dump(path)
        assert bench.area_option(path, 0.03) == f'{key}=0.03'


def test_missing_quality_runs_are_named(bench, tmp_path):
    args = ['--out-dir', str(tmp_path), '--seeds', '0', '--ratios',
            '0.125', '--variants', 'supervised', '--cache-dir',
            str(tmp_path / 'cache')]
    with pytest.raises(SystemExit, match='run.json missing'):
        bench.main(args)
    with pytest.raises(SystemExit, match='held-out'):
        bench.main(args + ['--heldout-num', '0'])
