"""Faults: a full disk while writing a report gives one clear line and leaves earlier outputs intact."""

from __future__ import annotations

import errno
from pathlib import Path

from conftest import make_image
from saliency_r1.cli.main import main


def test_disk_full_while_writing_report(tiny_dir, tmp_path, monkeypatch, capsys):
    img = tmp_path / "scene.png"
    make_image(112, 84).save(img)
    out = tmp_path / "out"
    args = ["explain", "--model", str(tiny_dir), "--image", str(img), "--question", "What colour?",
            "--response", "<think>red</think>red", "--out", str(out)]
    assert main(args) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert "report.html" in before

    real = Path.write_text

    def full_disk(self, *a, **kw):
        if self.name.startswith(".report.html"):
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return real(self, *a, **kw)

    monkeypatch.setattr(Path, "write_text", full_disk)
    capsys.readouterr()
    assert main(args[:-4] + ["--response", "<think>blue</think>blue", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "No space left" in err[0] and "Traceback" not in err[0]
    assert (out / "report.html").read_bytes() == before["report.html"]  # the earlier report is intact
    assert not list(out.glob(".report.html*"))  # no temporary file left behind
