"""ingest_worker.file_save: ingest's own write into the local file storage, which must store
files as Django's FileSystemStorage.save() does (names, folders, permissions, never over an
existing file), and any other storage through its save()."""

import os
import stat

import pytest
from django.core.exceptions import SuspiciousFileOperation
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage, InMemoryStorage

from annotate.services.ingest_worker import file_save


def mode_of(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_writes_the_file_where_and_as_the_storage_would(tmp_path):
    storage = FileSystemStorage(location=tmp_path, file_permissions_mode=0o640)
    name = file_save(storage, "images/7/ab/abcd/photo.jpg", b"picture bytes")
    assert name == "images/7/ab/abcd/photo.jpg"
    assert (tmp_path / name).read_bytes() == b"picture bytes"
    # The storage's own save of the same kind of file: the same mode and group.
    theirs = storage.save("images/7/ab/abce/photo.jpg", ContentFile(b"other"))
    assert mode_of(tmp_path / name) == mode_of(tmp_path / theirs) == 0o640
    assert os.stat(tmp_path / name).st_gid == os.stat(tmp_path / theirs).st_gid
    with storage.open(name) as f:
        assert f.read() == b"picture bytes"


def test_an_existing_file_is_never_overwritten(tmp_path):
    storage = FileSystemStorage(location=tmp_path)
    (tmp_path / "preprocessed").mkdir()
    (tmp_path / "preprocessed" / "x.jpg").write_bytes(b"old")
    name = file_save(storage, "preprocessed/x.jpg", b"new")
    assert name != "preprocessed/x.jpg" and name.startswith("preprocessed/x_")
    assert (tmp_path / "preprocessed" / "x.jpg").read_bytes() == b"old"
    assert (tmp_path / name).read_bytes() == b"new"


def test_a_name_leading_out_of_the_storage_is_refused(tmp_path):
    storage = FileSystemStorage(location=tmp_path / "media")
    with pytest.raises(SuspiciousFileOperation):
        file_save(storage, "../outside.jpg", b"x")
    assert not (tmp_path / "outside.jpg").exists()


def test_a_failed_write_leaves_no_file(tmp_path, monkeypatch):
    storage = FileSystemStorage(location=tmp_path, file_permissions_mode=0o644)

    def fchmod_failing(fd, mode):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fchmod", fchmod_failing)
    with pytest.raises(OSError, match="No space"):
        file_save(storage, "images/1/aa/a.jpg", b"bytes")
    assert not (tmp_path / "images" / "1" / "aa" / "a.jpg").exists()


def test_other_storages_save_through_their_own_save(tmp_path):
    storage = InMemoryStorage()
    name = file_save(storage, "images/1/aa/a.jpg", b"in memory")
    with storage.open(name) as f:
        assert f.read() == b"in memory"
    assert not any(tmp_path.iterdir())


def test_folder_permissions_go_through_the_storage(tmp_path):
    storage = FileSystemStorage(location=tmp_path, directory_permissions_mode=0o750)
    name = file_save(storage, "display/3/cd/c.jpg", b"shown")
    assert (tmp_path / name).read_bytes() == b"shown"
    assert mode_of(tmp_path / "display" / "3" / "cd") == 0o750
