"""``tools/train.py --deterministic --seed 0`` is bit-reproducible on CPU.

Two independent processes (``ref`` and ``killed`` of ``conftest.py``, the
latter only differing by a hook that acts at iteration 6) run the same
command at the same time; their first 5 logged losses must be identical
floats, not merely close.
"""
N = 5


def losses(scalars):
    """iteration -> logged ``loss`` (the LoggerHook's window mean, which is
    exact float arithmetic on the per-iteration losses)."""
    return {line['iter']: line['loss'] for line in scalars if 'loss' in line}


def test_first_losses_are_bit_identical(tiny_runs):
    ref = losses(tiny_runs.ref_scalars)
    other = losses(tiny_runs.killed_scalars)
    assert list(ref)[:N] == list(other)[:N] == list(range(1, N + 1))
    for it in range(1, N + 1):
        assert ref[it] == other[it], (it, ref[it], other[it])
    # the per-iteration losses (not window means) as well, and they move
    exact_ref = [tiny_runs.ref_records[i][0]['loss'] for i in range(1, N + 1)]
    exact_other = [tiny_runs.resumed_records[i][0]['loss']
                   for i in range(1, N + 1)]
    assert exact_ref == exact_other
    assert len(set(exact_ref)) == N
