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
