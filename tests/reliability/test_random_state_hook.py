"""RandomStateHook restores torch's generator on resume only
(end to end: test_kill_resume.py)."""
from types import SimpleNamespace

import pytest
import torch
from mmengine.hooks import CheckpointHook

from hermes_mm.engine.hooks import RandomStateHook, random_state_hook
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
    assert checkpoint[CHECKPOINT_KEY]['ranks'][0]['torch'].dtype == torch.uint8
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


def test_checkpoint_without_per_rank_list_still_restores():
    torch.manual_seed(0)
    old = dict(meta=dict(iter=4),
               **{CHECKPOINT_KEY: dict(torch=torch.get_rng_state())})
    expected = torch.rand(3)
    torch.manual_seed(123)
    hook = RandomStateHook()
    hook.after_load_checkpoint(None, old)
    hook.before_train_iter(SimpleNamespace(iter=4), 0)
    assert torch.equal(torch.rand(3), expected)


def iter_runner(iteration, max_iters, hooks):
    return SimpleNamespace(iter=iteration, max_iters=max_iters, hooks=hooks)


def test_checkpoint_due_follows_the_checkpoint_hooks_rule():
    due = RandomStateHook._checkpoint_due
    every2 = CheckpointHook(interval=2, by_epoch=False, save_last=False)
    assert due(iter_runner(1, 9, [every2]), by_epoch=False)  # saves iter 2
    assert not due(iter_runner(2, 9, [every2]), by_epoch=False)
    assert not due(iter_runner(8, 9, [every2]), by_epoch=False)
    last = CheckpointHook(interval=4, by_epoch=False, save_last=True)
    assert due(iter_runner(8, 9, [last]), by_epoch=False)  # the last iter
    assert not due(iter_runner(8, 9, []), by_epoch=False)
    # an epoch-based hook saves after epochs, never after iterations
    per_epoch = CheckpointHook(interval=1, by_epoch=True)
    assert not due(iter_runner(1, 9, [per_epoch]), by_epoch=False)
    runner = SimpleNamespace(epoch=0, max_epochs=3, hooks=[per_epoch])
    assert due(runner, by_epoch=True)


def test_distributed_save_keeps_every_rank_and_restores_its_own(
        monkeypatch):
    """Two simulated ranks: the gathered list is saved; rank 1 gets its
    own stream back, and another world size gets nothing."""
    torch.manual_seed(1)
    rank1_state = torch.get_rng_state()
    rank1_next = torch.rand(3)
    torch.manual_seed(0)
    monkeypatch.setattr(random_state_hook, 'get_world_size', lambda: 2)
    monkeypatch.setattr(random_state_hook, 'all_gather_object',
                        lambda obj: [obj, dict(torch=rank1_state)])
    hook = RandomStateHook()
    runner = iter_runner(3, 8, [CheckpointHook(interval=4, by_epoch=False)])
    hook.after_train_iter(runner, 0)
    checkpoint = dict(meta=dict(iter=4))
    hook.before_save_checkpoint(runner, checkpoint)
    saved = checkpoint[CHECKPOINT_KEY]['ranks']
    assert len(saved) == 2 and torch.equal(saved[1]['torch'], rank1_state)
    # no gather on an iteration without a checkpoint: nothing is saved
    hook.after_train_iter(iter_runner(4, 8, runner.hooks), 0)
    unforeseen = dict(meta=dict(iter=5))
    hook.before_save_checkpoint(runner, unforeseen)
    assert CHECKPOINT_KEY not in unforeseen

    monkeypatch.setattr(random_state_hook, 'get_rank', lambda: 1)
    torch.manual_seed(123)
    hook.after_load_checkpoint(None, checkpoint)
    hook.before_train_iter(SimpleNamespace(iter=4), 0)
    assert torch.equal(torch.rand(3), rank1_next)

    monkeypatch.setattr(random_state_hook, 'get_world_size', lambda: 4)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    hook.after_load_checkpoint(None, checkpoint)
    hook.before_train_iter(SimpleNamespace(iter=4), 0)
    assert torch.equal(torch.rand(3), expected)  # left alone
