"""Tests of ``LoadImageAsStored``'s undecodable-image error
(hermes_mm/datasets/transforms/load_image_as_stored.py); EXIF and 12-bit
decoding are tested in tests/utils and tests/reliability/test_bad_inputs."""
import cv2
import numpy as np
import pytest

from hermes_mm.datasets.transforms import LoadImageAsStored


@pytest.mark.parametrize('content', [b'<html>404</html>', b'',
                                     b'\x89PNG\r\n\x1a\n' + b'\0' * 20])
def test_undecodable_image_names_file_and_expectation(tmp_path, content):
    path = tmp_path / 'benign (3).png'
    path.write_bytes(content)
    with pytest.raises(ValueError) as err:
        LoadImageAsStored()(dict(img_path=str(path)))
    msg = str(err.value)
    assert repr(str(path)) in msg
    assert f'{len(content)} bytes' in msg
    assert 'expected a complete PNG, JPEG, BMP or TIFF image' in msg
    assert 'tools/check_dataset.py' in msg


def test_good_missing_and_ignored_files(tmp_path):
    good = tmp_path / 'ok.png'
    cv2.imwrite(str(good), np.full((5, 7, 3), 9, np.uint8))
    out = LoadImageAsStored()(dict(img_path=str(good)))
    assert out['img'].shape == (5, 7, 3) and out['ori_shape'] == (5, 7)
    with pytest.raises(FileNotFoundError):
        LoadImageAsStored()(dict(img_path=str(tmp_path / 'gone.png')))
    bad = tmp_path / 'bad.png'
    bad.write_bytes(b'not an image')
    assert LoadImageAsStored(ignore_empty=True)(
        dict(img_path=str(bad))) is None
