"""RandomStateHook restores torch's generator on resume only
(end to end: test_kill_resume.py)."""
from types import SimpleNamespace

import pytest
import torch

from hermes_mm.engine.hooks import RandomStateHook
from hermes_mm.engine.hooks.random_state_hook import CHECKPOINT_KEY


@pytest.fixture(autouse=True)
def keep_global_generator():
    state = torch.get_rng_state()
    yield
    torch.set_rng_state(state)


def saved_checkpoint(iteration):
    checkpoint = dict(meta=dict(iter=iteration))
    RandomStateHook().before_save_checkpoint(None, checkpoint)
    return checkpoint


def test_restores_when_resuming_at_the_checkpoint_iteration():
    torch.manual_seed(0)
    checkpoint = saved_checkpoint(4)
    expected = torch.rand(3)  # what the interrupted run drew next
    assert checkpoint[CHECKPOINT_KEY]['torch'].dtype == torch.uint8
    torch.manual_seed(123)  # the resumed process: another state
    hook = RandomStateHook()
    hook.after_load_checkpoint(None, checkpoint)
    hook.before_train_iter(SimpleNamespace(iter=4), 0)
    assert torch.equal(torch.rand(3), expected)
    # only once: the next iteration keeps its own stream
    hook.before_train_iter(SimpleNamespace(iter=5), 1)
    assert not torch.equal(torch.rand(3), expected)


def test_load_from_does_not_restore():
    torch.manual_seed(0)
    checkpoint = saved_checkpoint(4)
    expected = torch.rand(3)
    torch.manual_seed(123)
    hook = RandomStateHook()
    hook.after_load_checkpoint(None, checkpoint)
    hook.before_train_iter(SimpleNamespace(iter=0), 0)  # fine-tuning start
    assert not torch.equal(torch.rand(3), expected)
    hook.after_load_checkpoint(None, dict(meta=dict(iter=4)))  # old file
    hook.before_train_iter(SimpleNamespace(iter=4), 0)
