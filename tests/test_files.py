import os

import pytest

from edgemoe.files import atomic_path, atomic_write_text, canonical_copy, sha256_file


def test_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "out.txt") as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_replaces_and_has_normal_permissions(tmp_path):
    atomic_write_text(tmp_path / "a", "1")
    atomic_write_text(tmp_path / "a", "2")
    assert (tmp_path / "a").read_text() == "2"
    assert oct((tmp_path / "a").stat().st_mode & 0o777) != oct(0o600)


def test_canonical_copy_is_byte_identical(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(40 << 20))
    canonical_copy(src, tmp_path / "dst.bin")
    assert sha256_file(src) == sha256_file(tmp_path / "dst.bin")
