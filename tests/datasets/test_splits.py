"""Tests of the pure split functions (hermes_mm/datasets/splits.py)."""
import json
import random

import pytest

from hermes_mm.datasets.splits import (SPLIT_KEYS, load_split, make_split,
                                       natural_key, save_split)

# 40 images, class sizes 20/10/10: 7:1:2 is exact per class.
SIZES = (20, 10, 10)


def items_of(sizes):
    return [(f'c{c}/img ({i}).png', c) for c, n in enumerate(sizes)
            for i in range(n)]


def label_of(items):
    return dict(items)


def test_make_split_stratified_7_1_2():
    items = items_of(SIZES)
    split = make_split(items, labeled_ratio=0.125, seed=0)
    assert list(split) == list(SPLIT_KEYS)
    lab = label_of(items)
    counts = {k: [sum(lab[p] == c for p in split[k]) for c in range(3)]
              for k in SPLIT_KEYS}
    # train 14/7/7 -> labelled round-half-up(0.125 * n): 2/1/1
    assert counts['labeled'] == [2, 1, 1]
    assert counts['unlabeled'] == [12, 6, 6]
    assert counts['val'] == [2, 1, 1]
    assert counts['test'] == [4, 2, 2]
    everything = [p for k in SPLIT_KEYS for p in split[k]]
    assert sorted(everything) == sorted(p for p, _ in items)  # a partition
    assert len(set(everything)) == len(everything)
    for k in SPLIT_KEYS:
        assert split[k] == sorted(split[k])


def test_make_split_seeded_and_order_independent():
    items = items_of(SIZES)
    shuffled = list(items)
    random.Random(1).shuffle(shuffled)
    a = make_split(items, 0.25, seed=3)
    assert make_split(shuffled, 0.25, seed=3) == a
    assert make_split(items, 0.25, seed=4) != a


def test_make_split_nested_labelled_sets_fixed_eval_sets():
    items = items_of(SIZES)
    small = make_split(items, 0.125, seed=0)
    large = make_split(items, 0.5, seed=0)
    assert set(small['labeled']) < set(large['labeled'])
    assert small['val'] == large['val'] and small['test'] == large['test']


@pytest.mark.parametrize('n', range(1, 25))
def test_make_split_small_classes(n):
    # A rare class next to a big one: >= 1 labelled always; >= 1 per
    # subset from 3 images on; counts always sum to n.
    items = items_of((30, n))
    split = make_split(items, labeled_ratio=0.01, seed=n)
    lab = label_of(items)
    per = {k: sum(lab[p] == 1 for p in split[k]) for k in SPLIT_KEYS}
    assert sum(per.values()) == n
    assert per['labeled'] == 1
    if n >= 3:  # train (labelled here), val and test all non-empty
        assert min(per['labeled'], per['val'], per['test']) >= 1


def test_make_split_full_ratio_and_zero_val():
    items = items_of((10, 10))
    split = make_split(items, 1.0, seed=0, ratios=(0.8, 0.0, 0.2))
    assert split['unlabeled'] == [] and split['val'] == []
    assert len(split['labeled']) == 16 and len(split['test']) == 4


@pytest.mark.parametrize('ratio', [0, -0.5, 1.5])
def test_make_split_bad_labeled_ratio(ratio):
    with pytest.raises(ValueError, match=rf'labeled_ratio.*{ratio}'):
        make_split(items_of(SIZES), ratio, seed=0)


@pytest.mark.parametrize('ratios', [(0.7, 0.2, 0.2), (0.7, 0.3),
                                    (1.2, -0.1, -0.1)])
def test_make_split_bad_ratios(ratios):
    with pytest.raises(ValueError, match='ratios'):
        make_split(items_of(SIZES), 0.5, seed=0, ratios=ratios)


def test_make_split_test_only():
    # --ratios 0 0 1: every image in 'test', whatever labeled_ratio says
    items = items_of(SIZES)
    split = make_split(items, 0.5, seed=0, ratios=(0, 0, 1))
    assert split['labeled'] == split['unlabeled'] == split['val'] == []
    assert split['test'] == sorted(p for p, _ in items)
    # (0, .5, .5): val and test only, one class of 1 image included
    split = make_split(items + [('x/only.png', len(SIZES))], 0.5, seed=0,
                       ratios=(0, .5, .5))
    assert split['labeled'] == split['unlabeled'] == []
    assert len(split['val']) + len(split['test']) == len(items) + 1


def test_make_split_class_without_train_image():
    with pytest.raises(ValueError, match='Class index 3 has no train image'):
        make_split(items_of(SIZES), 0.5, seed=0, num_classes=4)


def test_make_split_bad_items():
    with pytest.raises(ValueError, match=r"Duplicate image path 'a.png'"):
        make_split([('a.png', 0), ('a.png', 0)], 0.5, seed=0)
    with pytest.raises(ValueError, match=r"'b.png' has class index -1"):
        make_split([('a.png', 0), ('b.png', -1)], 0.5, seed=0)


def test_natural_key_orders_numbers_by_value():
    names = ['b (10).png', 'b (2).png', 'B (3).png', 'b (1).png']
    assert sorted(names, key=natural_key) == [
        'b (1).png', 'b (2).png', 'B (3).png', 'b (10).png']


def test_save_load_roundtrip(tmp_path):
    split = make_split(items_of(SIZES), 0.125, seed=0)
    path = tmp_path / 'split.json'
    save_split(split, str(path))
    assert load_split(str(path)) == split
    assert list(json.loads(path.read_text())) == list(SPLIT_KEYS)


def test_save_split_creates_parent_folders(tmp_path):
    # the README writes data/BUSI/splits/<name>.json into a fresh folder
    split = make_split(items_of(SIZES), 0.125, seed=0)
    path = tmp_path / 'BUSI' / 'splits' / 'split_0.125_seed0.json'
    save_split(split, str(path))
    assert load_split(str(path)) == split


@pytest.mark.parametrize('content, message', [
    ({'labeled': [], 'unlabeled': [], 'val': []}, r"missing \['test'\]"),
    ({k: [] for k in SPLIT_KEYS} | {'unlabelled': []},
     r"unknown \['unlabelled'\]"),
    ({'labeled': ['a.png'], 'unlabeled': [], 'val': ['a.png'], 'test': []},
     r"'a.png' is listed in both 'labeled' and 'val'"),
    ({'labeled': ['a.png', 'a.png'], 'unlabeled': [], 'val': [], 'test': []},
     r"'a.png' is listed in both 'labeled' and 'labeled'"),
    ({'labeled': 'a.png', 'unlabeled': [], 'val': [], 'test': []},
     r"'labeled' must be a list"),
    (['a.png'], 'expected a JSON object'),
])
def test_load_split_errors(tmp_path, content, message):
    path = tmp_path / 'bad.json'
    path.write_text(json.dumps(content))
    with pytest.raises(ValueError, match=message) as err:
        load_split(str(path))
    assert 'bad.json' in str(err.value)


def test_load_split_invalid_json_and_missing(tmp_path):
    path = tmp_path / 'broken.json'
    path.write_text('{"labeled": [')
    with pytest.raises(ValueError, match='broken.json.*not valid JSON'):
        load_split(str(path))
    with pytest.raises(FileNotFoundError, match='nope.json'):
        load_split(str(tmp_path / 'nope.json'))
