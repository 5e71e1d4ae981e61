"""Faults: a full disk while writing a report or a training checkpoint gives one clear line and leaves earlier
outputs intact; a run cut short by it resumes from the last complete checkpoint."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest
import torch

from conftest import checkpointing_sft_yaml, make_image
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


# --------------------------------------------------------------------------- disk full during a checkpoint

def _full_disk_at(monkeypatch, what: str, folder: str) -> None:
    """Make the write of ``what`` ("weights" or "trainer_state") into ``folder`` fail as a full disk does:
    half the bytes reach the file, then ``OSError(ENOSPC)``."""
    import transformers.modeling_utils as mu
    from transformers.trainer_callback import TrainerState

    def cut_short(path: Path) -> None:
        data = path.read_bytes()
        path.write_bytes(data[:len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    if what == "weights":
        real = mu.safe_save_file

        def save_file(tensors, filename, *a, **kw):
            real(tensors, filename, *a, **kw)
            if Path(filename).parent.name == folder:
                cut_short(Path(filename))

        monkeypatch.setattr(mu, "safe_save_file", save_file)
    else:
        real = TrainerState.save_to_json

        def save_to_json(self, json_path):
            real(self, json_path)
            if Path(json_path).parent.name == folder:
                cut_short(Path(json_path))

        monkeypatch.setattr(TrainerState, "save_to_json", save_to_json)


@pytest.mark.slow
@pytest.mark.parametrize("what", ["weights", "trainer_state"])
def test_disk_full_while_writing_a_checkpoint(what, tmp_path, monkeypatch, capsys):
    """SFT (``saliency-r1 train sft``) with a checkpoint every step; the disk fills while checkpoint-3 is
    written (its weights, or its trainer_state.json: the last file of a checkpoint). One line naming
    "No space left", exit 2, no traceback; checkpoints 1-2 intact and loadable. After space is freed the
    same command sets the half-written checkpoint-3 aside and resumes from checkpoint-2."""
    from saliency_r1.models.loading import model_class
    from saliency_r1.training._checkpoints import is_complete

    torch.set_num_threads(1)
    out = tmp_path / "run"
    cfg = tmp_path / "sft.yaml"
    cfg.write_text(checkpointing_sft_yaml(out))
    cmd = ["train", "sft", "--config", str(cfg)]
    _full_disk_at(monkeypatch, what, "checkpoint-3")
    capsys.readouterr()
    assert main(cmd + ["--max-steps", "6"]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("saliency-r1: error")]
    assert len(lines) == 1 and "No space left" in lines[0] and "Traceback" not in err, err[-2000:]
    assert err.strip().splitlines()[-1] == lines[0]  # the last thing printed
    assert [is_complete(out / f"checkpoint-{s}") for s in (1, 2, 3)] == [True, True, False]
    assert not (out / "checkpoint-4").exists() and not (out / "final").exists()
    kept = {s: {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in (out / f"checkpoint-{s}").iterdir()}
            for s in (1, 2)}
    for s in (1, 2):  # the earlier checkpoints load, every weight present (a cut-short file does not load)
        ckpt = out / f"checkpoint-{s}"
        _, info = model_class(ckpt).from_pretrained(str(ckpt), use_safetensors=True, output_loading_info=True)
        assert not (info["missing_keys"] or info["unexpected_keys"] or info["mismatched_keys"]), info

    monkeypatch.undo()  # space freed
    assert main(cmd + ["--max-steps", "5"]) == 0
    runs = [json.loads(line) for line in (out / "sft_runs.jsonl").read_text().splitlines()]
    assert (runs[-1]["resumed_from"], runs[-1]["start_step"], runs[-1]["end_step"]) == ("checkpoint-2", 2, 5)
    aside = list(out.glob("incomplete-checkpoint-3-*"))  # the half-written one, set aside, not deleted
    assert len(aside) == 1 and not is_complete(aside[0])
    assert all(is_complete(out / f"checkpoint-{s}") for s in (3, 4, 5))
    for s, files in kept.items():  # untouched by the failure and by the resume
        assert {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in (out / f"checkpoint-{s}").iterdir()} == files
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 5
    assert [h["step"] for h in state["log_history"] if "loss" in h] == [1, 2, 3, 4, 5]
