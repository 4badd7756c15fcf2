import os

from hermes_mm.utils import checksums as checksums_module
from hermes_mm.utils import tree_checksums


def test_tree_checksums_relative_paths_and_changes(tmp_path, monkeypatch):
    (tmp_path / 'a').mkdir()
    (tmp_path / 'a' / 'x.png').write_bytes(b'abc')
    (tmp_path / 'y.txt').write_bytes(b'')
    sums = tree_checksums(str(tmp_path))
    assert set(sums) == {os.path.join('a', 'x.png'), 'y.txt'}
    # sha256('abc') and sha256(b'')
    assert sums[os.path.join('a', 'x.png')].startswith('ba7816bf8f01cfea')
    assert sums['y.txt'].startswith('e3b0c44298fc1c14')
    # chunked reading gives the same digest as one read
    monkeypatch.setattr(checksums_module, 'CHUNK_BYTES', 2)
    assert tree_checksums(str(tmp_path)) == sums
    (tmp_path / 'y.txt').write_bytes(b'!')
    assert tree_checksums(str(tmp_path))['y.txt'] != sums['y.txt']
