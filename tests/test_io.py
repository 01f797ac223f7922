"""vaebook.io: atomic writes leave either the old file or the new one, with ordinary permissions."""
from __future__ import annotations

import os
import stat

import pytest
import torch

from vaebook import io


def _mode(p) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


def test_atomic_text_replaces_content_and_leaves_no_temp_files(tmp_path):
    p = tmp_path / "sub" / "table.csv"
    io.atomic_write_text(p, "a,b\n1,2\n")
    io.atomic_write_text(p, "a,b\n3,4\n")
    assert p.read_text() == "a,b\n3,4\n"
    assert sorted(x.name for x in p.parent.iterdir()) == ["table.csv"]


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    p = tmp_path / "metrics.json"
    io.atomic_write_text(p, '{"ok": 1}')

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(io.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        io.atomic_write_text(p, '{"half": ')
    assert p.read_text() == '{"ok": 1}'
    assert [x.name for x in tmp_path.iterdir()] == ["metrics.json"]


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_written_files_get_the_mode_a_plain_open_gives(tmp_path, umask):
    old = os.umask(umask)
    try:
        plain = tmp_path / "plain.txt"
        plain.write_text("x")
        a = io.atomic_write_text(tmp_path / "a.txt", "x")
        b = io.atomic_torch_save({"w": torch.ones(2)}, tmp_path / "b.pt")
    finally:
        os.umask(old)
    assert _mode(a) == _mode(b) == _mode(plain) == 0o666 & ~umask
    assert torch.equal(torch.load(b, weights_only=True)["w"], torch.ones(2))


def test_torch_save_fsyncs_the_file_before_the_rename_and_then_the_folder(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        st = os.fstat(fd)
        events.append(("fsync", st.st_ino, stat.S_ISDIR(st.st_mode)))
        real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", os.stat(src).st_ino, False))
        real_replace(src, dst)

    monkeypatch.setattr(io.os, "fsync", fsync)
    monkeypatch.setattr(io.os, "replace", replace)
    p = io.atomic_torch_save({"w": torch.arange(5)}, tmp_path / "ckpt.pt")
    ino = os.stat(p).st_ino
    kinds = [e[0] for e in events]
    assert ("fsync", ino, False) in events  # the file itself (it keeps its inode through the rename)
    assert events.index(("fsync", ino, False)) < kinds.index("replace")
    assert ("fsync", os.stat(tmp_path).st_ino, True) in events[kinds.index("replace"):]  # the folder entry
    assert torch.equal(torch.load(p, weights_only=True)["w"], torch.arange(5))
    assert [x.name for x in tmp_path.iterdir()] == ["ckpt.pt"]


def test_full_disk_during_torch_save_names_file_and_free_space(tmp_path, monkeypatch):
    """torch's own full-disk message is 'unexpected pos'; the error names the file and the free space, and the old
    file and no temporary survive."""
    p = io.atomic_torch_save({"w": torch.ones(2)}, tmp_path / "model.pt")

    def full(obj, f, *a, **k):
        f.write(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 947665792 vs 947665684")

    monkeypatch.setattr(io.torch, "save", full)
    with pytest.raises(OSError, match=r"model\.pt.*unexpected pos.*GiB free on its disk"):
        io.atomic_torch_save({"w": torch.zeros(2)}, p)
    assert [x.name for x in tmp_path.iterdir()] == ["model.pt"]
    assert torch.equal(torch.load(p, weights_only=True)["w"], torch.ones(2))
