"""research/gloo_teardown_stress.py: one real 2-rank torchrun run that
ends like tools/train.py (end_distributed_worker), recorded in the JSON."""
import json


def test_one_run_per_ending_is_recorded(load_script, tmp_path):
    bench = load_script('research/gloo_teardown_stress.py')
    out = tmp_path / 'results.json'
    result = bench.main([
        '--runs', '1', '--endings', 'end_worker', '--steps', '2', '--late',
        '0.1', '--out',
        str(out)
    ])
    assert json.loads(out.read_text())['summary'] == result['summary']
    run, = result['runs']
    assert run['ending'] == 'end_worker' and run['index'] == 0
    assert run['returncode'] == 0, run['output_tail']
    assert result['summary']['end_worker'] == dict(
        runs=1, failed=0, gloo_abort=0, mean_seconds=run['seconds'])
    assert result['settings']['late'] == 0.1
    assert 'torch' in result['environment']
