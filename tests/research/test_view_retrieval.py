"""research/instance_contrast/view_retrieval.py: the retrieval numbers by
hand, and on a real tiny Hermes run folder the queries are the student's
strong views and the keys the teacher's weak views of the same images."""
import json
import math
import os.path as osp
import random

import numpy as np
import pytest
import torch
from mmengine.config import Config

import hermes_mm.apis as apis
from hermes_mm.registry import DATASETS


@pytest.fixture(scope='module')
def vr(load_script):
    return load_script('research/instance_contrast/view_retrieval.py')


def test_retrieval_by_hand(vr):
    keys = torch.eye(3)
    # image 0 finds itself; image 1 finds image 2; image 2 finds itself
    queries = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.1, 1.0],
                            [0.0, 0.0, 1.0]])
    out = vr.retrieval(queries, keys, temperature=0.5)
    assert out['top1'] == pytest.approx(2 / 3)
    assert out['chance_top1'] == pytest.approx(1 / 3)
    assert out['chance_infonce'] == pytest.approx(math.log(3))
    q = torch.nn.functional.normalize(queries, dim=1)
    assert out['infonce'] == pytest.approx(float(
        torch.nn.functional.cross_entropy(q @ keys.t() / 0.5,
                                          torch.arange(3))))
    assert out['cos_positive'] == pytest.approx(float(q.diag().mean()))
    off = (q @ keys.t())[~torch.eye(3, dtype=torch.bool)]
    assert out['cos_negative'] == pytest.approx(float(off.mean()))


def test_views_and_networks_on_a_tiny_run(vr, tmp_path, monkeypatch,
                                          tiny_hermes_run):
    run, _ = tiny_hermes_run
    # the tiny config's data_root is relative: generated under tmp_path
    monkeypatch.chdir(tmp_path)
    seen = []
    # record which network saw which view
    calls = {'student': [], 'teacher': []}
    original = apis.HermesInferencer

    class Spying(original):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            for name, net in (('student', self.model.student),
                              ('teacher', self.model.teacher.module)):
                fwd = net.forward_train

                def spy(x, _fwd=fwd, _name=name):
                    calls[_name].append(x.clone())
                    return _fwd(x)
                net.forward_train = spy
            seen.append(self.model)

    monkeypatch.setattr(apis, 'HermesInferencer', Spying)
    out = str(tmp_path / 'vr.json')
    rows = vr.main([run, '--num', '3', '--out', out])
    assert rows[0]['images'] == 3
    with open(out) as f:
        assert json.load(f)['rows'][0]['top1'] == rows[0]['top1']
    # rebuild the same views (same seed) and check who saw what
    model_used = seen[0]
    cfg = Config.fromfile(osp.join(run, 'config.py'))
    ds = DATASETS.build(cfg.train_dataloader.dataset.datasets[1])
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    for i in range(3):
        views = ds[i]['inputs']
        for name, branch in (('student', 'unsup_strong'),
                             ('teacher', 'unsup_weak')):
            x = model_used.data_preprocessor(
                dict(inputs=[views[branch]], data_samples=None),
                False)['inputs']
            torch.testing.assert_close(calls[name][i], x)
    # the two views really differ, so swapped branches would fail above
    assert not torch.equal(calls['student'][0], calls['teacher'][0])
