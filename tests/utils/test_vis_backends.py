"""The TensorBoard / W&B setting (issue 17, point 1): the README's way
reaches the visualizer; a top-level ``vis_backends`` in a child config does
not, and tools/train.py says so."""
import os.path as osp

from mmengine.config import Config

from hermes_mm.utils.vis_backends import vis_backends_mismatch

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEMO = osp.join(REPO, 'configs', 'demo', 'hermes_synthetic.py')
README = osp.join(REPO, 'README.md')


def child(tmp_path, body):
    path = tmp_path / 'child.py'
    path.write_text(f'_base_ = [{DEMO!r}]\n{body}\n')
    return Config.fromfile(str(path))


def readme_snippet():
    """The ```python block of README's Visualisation section."""
    text = open(README).read()
    section = text[text.index('## Visualisation'):]
    start = section.index('```python\n') + len('```python\n')
    return section[start:section.index('```', start)]


def test_readme_snippet_adds_the_backend(tmp_path):
    snippet = readme_snippet()
    assert 'visualizer = dict(' in snippet
    cfg = child(tmp_path, snippet)
    types = [b['type'] for b in cfg.visualizer.vis_backends]
    assert types == ['LocalVisBackend', 'TensorboardVisBackend']
    assert cfg.visualizer.type == 'HermesVisualizer'  # merged, not replaced
    assert vis_backends_mismatch(cfg) is None


def test_top_level_vis_backends_is_named(tmp_path):
    cfg = child(tmp_path, "vis_backends = [dict(type='LocalVisBackend'), "
                "dict(type='TensorboardVisBackend')]")
    # what MMEngine does: the visualizer keeps the base's list
    assert [b['type'] for b in cfg.visualizer.vis_backends] == [
        'LocalVisBackend']
    message = vis_backends_mismatch(cfg)
    assert "vis_backends=['LocalVisBackend', 'TensorboardVisBackend']" in \
        message
    assert "visualizer.vis_backends=['LocalVisBackend']" in message
    assert 'visualizer = dict(vis_backends=[' in message
    assert vis_backends_mismatch(Config.fromfile(DEMO)) is None


def test_train_warns(tmp_path, monkeypatch, load_script):
    """tools/train.py logs the warning before building anything (the
    shipped BUSI config then stops on its offline ImageNet weights, which
    ends this test without training)."""
    from hermes_mm.utils import pretrained
    path = tmp_path / 'busi_tb.py'
    path.write_text(
        f"_base_ = [{osp.join(REPO, 'configs', 'hermes_busi.py')!r}]\n"
        "vis_backends = [dict(type='LocalVisBackend'), "
        "dict(type='WandbVisBackend')]\n")
    monkeypatch.setattr(pretrained, 'download_error', lambda url: 'offline')
    monkeypatch.setattr(pretrained, 'hub_cache_file',
                        lambda url: str(tmp_path / 'none.pth'))
    monkeypatch.setenv('LOCAL_RANK', '0')
    train = load_script('tools/train.py')
    warnings = []
    monkeypatch.setattr(
        'hermes_mm.utils.vis_backends.print_log',
        lambda msg, **kwargs: warnings.append((msg, kwargs.get('level'))))
    try:
        train.main([str(path), '--work-dir', str(tmp_path / 'w')])
    except SystemExit:
        pass
    (message, level), = warnings
    assert level == 30 and 'WandbVisBackend' in message
