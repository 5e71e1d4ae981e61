"""Find the last *complete* ``checkpoint-N`` of a run, and set incomplete ones aside.

HF ``Trainer._save_checkpoint`` writes, in order: the weights, the optimizer/scheduler/scaler, the
RNG state, then ``trainer_state.json``. A checkpoint is therefore complete when
``trainer_state.json`` exists, parses, and its ``global_step`` equals the ``N`` of the folder name;
a run killed mid-save leaves a folder without it, which resuming must skip.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Iterator

from .._io import checkpoint_writes, output_lock

logger = logging.getLogger(__name__)

_CKPT = re.compile(r"^checkpoint-(\d+)$")
STATE = "trainer_state.json"


def checkpoint_step(path: str | Path) -> int | None:
    """``N`` of a ``checkpoint-N`` folder name, else None.

    >>> checkpoint_step("runs/x/checkpoint-12"), checkpoint_step("runs/x/final")
    (12, None)
    """
    m = _CKPT.match(Path(path).name)
    return int(m.group(1)) if m else None


def is_complete(path: str | Path) -> bool:
    """Whether ``path`` is a finished checkpoint (readable ``trainer_state.json`` at its own step).

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp()) / "checkpoint-3"; d.mkdir()
    >>> is_complete(d)
    False
    >>> _ = (d / "trainer_state.json").write_text('{"global_step": 3}'); is_complete(d)
    True
    """
    p = Path(path)
    step = checkpoint_step(p)
    if step is None or not (p / STATE).is_file():
        return False
    try:
        return int(json.loads((p / STATE).read_text()).get("global_step", -1)) == step
    except (OSError, ValueError, TypeError, AttributeError):
        return False


def checkpoints(output_dir: str | Path) -> list[Path]:
    """All ``checkpoint-N`` folders of ``output_dir``, by step."""
    d = Path(output_dir)
    if not d.is_dir():
        return []
    found = [p for p in d.iterdir() if p.is_dir() and checkpoint_step(p) is not None]
    return sorted(found, key=checkpoint_step)


def last_complete_checkpoint(output_dir: str | Path) -> Path | None:
    """The complete checkpoint with the highest step, or None.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> for n in (1, 2):
    ...     (d / f"checkpoint-{n}").mkdir()
    ...     _ = (d / f"checkpoint-{n}" / "trainer_state.json").write_text(f'{{"global_step": {n}}}')
    >>> (d / "checkpoint-3").mkdir()  # killed while saving
    >>> last_complete_checkpoint(d).name
    'checkpoint-2'
    """
    done = [p for p in checkpoints(output_dir) if is_complete(p)]
    return done[-1] if done else None


def set_aside_incomplete(output_dir: str | Path) -> list[Path]:
    """Rename incomplete ``checkpoint-N`` folders to ``incomplete-checkpoint-N-<time>`` (never deleted),
    so that a resumed run can write ``checkpoint-N`` afresh. Returns the new paths."""
    moved = []
    for p in checkpoints(output_dir):
        if not is_complete(p):
            target = p.with_name(f"incomplete-{p.name}-{int(time.time())}")
            shutil.move(str(p), str(target))
            logger.warning("%s is incomplete (no valid %s); moved it to %s", p, STATE, target.name)
            moved.append(target)
    return moved


def archive_checkpoints(output_dir: str | Path) -> Path | None:
    """Move every ``checkpoint-N`` into ``previous-<time>/`` (a fresh start that keeps the old run)."""
    found = checkpoints(output_dir)
    if not found:
        return None
    target = Path(output_dir) / f"previous-{time.strftime('%Y%m%d-%H%M%S')}"
    target.mkdir(parents=True, exist_ok=True)
    for p in found:
        shutil.move(str(p), str(target / p.name))
    logger.warning("starting over: moved %d old checkpoint(s) to %s", len(found), target)
    return target


def load_checkpoint_weights(model, checkpoint: Path) -> None:
    """Load a full fine-tuning ``checkpoint-N``'s weights into ``model`` (strict: every key).

    The Trainer's own resume loads ``model.safetensors`` with a plain ``load_state_dict(strict=False)``, but
    ``save_pretrained`` writes Qwen-VL weights under the checkpoint keys (``model.layers.…``, ``visual.…``),
    which differ from the module's (``model.language_model.layers.…``): without this nothing would load and
    the run would go on from the base weights. ``from_pretrained`` maps the keys (a second copy of the
    weights is in memory for a moment).

    >>> import tempfile
    >>> from saliency_r1.models.tiny import build_tiny, tiny_checkpoint
    >>> load_checkpoint_weights(build_tiny()[0], tiny_checkpoint(tempfile.mkdtemp() + "/ckpt"))  # every key matched
    """
    from ..models.loading import model_class

    saved = model_class(checkpoint).from_pretrained(str(checkpoint), dtype=next(model.parameters()).dtype,
                                                    use_safetensors=True)
    model.load_state_dict(saved.state_dict(), strict=True)
    del saved


@contextmanager
def run_guard(output_dir: str | Path, what: str) -> Iterator[None]:
    """One training run per output folder, and failed checkpoint writes as one line.

    The main process holds :func:`saliency_r1._io.output_lock` on ``output_dir`` (a second run gets one line
    naming the holder's pid; the lock dies with the process); on every process a checkpoint write that fails
    with any exception type (``OSError``, torch's ``RuntimeError``, ``SafetensorError``) becomes one
    :class:`~saliency_r1.errors.WriteError` naming the file (:func:`saliency_r1._io.checkpoint_writes`).

    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> with run_guard(d, "SFT run"):
    ...     with run_guard(d, "SFT run"):
    ...         pass
    Traceback (most recent call last):
    ...
    saliency_r1.errors.InputError: ... is in use by another SFT run (pid ...); wait for it to finish or pass another output folder
    """
    lock = output_lock(output_dir, what) if is_main_process() else nullcontext()
    with lock, checkpoint_writes(output_dir):
        yield


_RANK_VARS = ("RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK")  # torchrun/accelerate, Open MPI, MPICH


def is_main_process() -> bool:
    """Whether this is the global rank 0, from the launcher's environment (before the Trainer sets up
    distributed state, accelerate's ``PartialState`` still says every process is the main one).

    >>> is_main_process() == (os.environ.get("RANK", "0") == "0")
    True
    """
    for name in _RANK_VARS:
        if os.environ.get(name, "").strip():
            return os.environ[name].strip() == "0"
    return True


__all__ = ["load_checkpoint_weights", "run_guard", "is_main_process", "checkpoint_step",
           "is_complete", "checkpoints", "last_complete_checkpoint", "set_aside_incomplete",
           "archive_checkpoints"]
