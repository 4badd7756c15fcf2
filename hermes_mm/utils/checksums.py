"""sha256 of every file under a folder: how the tests and
``benchmarks/bad_inputs.py`` show that a data set was left unchanged."""
import hashlib
import os
import os.path as osp
from typing import Dict

#: Bytes read at a time (large images are not loaded whole).
CHUNK_BYTES = 1 << 20


def tree_checksums(root: str) -> Dict[str, str]:
    """sha256 hex digest of every file under ``root``.

    Args:
        root (str): Folder to walk (symlinks to folders are not followed).

    Returns:
        dict: Path relative to ``root`` (OS separators) -> hex digest.
    """
    out = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = osp.join(dirpath, name)
            digest = hashlib.sha256()
            with open(path, 'rb') as f:
                for chunk in iter(lambda: f.read(CHUNK_BYTES), b''):
                    digest.update(chunk)
            out[osp.relpath(path, root)] = digest.hexdigest()
    return out
