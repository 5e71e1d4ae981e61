"""A real ``kill -9`` in the middle of SFT or GRPO, then the same command again: training resumes from the last
complete checkpoint, the finished checkpoints are untouched, and the step count continues."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import SMALLEST_TINY, accelerate_launch, checkpointing_sft_yaml
from saliency_r1.config_io import packaged_config
from saliency_r1.training._checkpoints import checkpoints, is_complete


def _complete(out):
    """Steps of the complete checkpoints, by the project's own rule: a ``trainer_state.json`` cut short by the
    kill does not count (resuming moves that checkpoint aside and writes it again)."""
    return [int(p.name.split("-")[1]) for p in checkpoints(out) if is_complete(p)]


def _process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (from ``/proc/*/stat``): torchrun starts each worker in a session of its
    own, so killing the launcher's process group would leave the workers training on."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree = [pid]
    for p in tree:
        tree += parents.get(p, [])
    return tree


def _kill_9_after_3_checkpoints(cmd: list[str], env: dict, out, n: int = 3) -> list[int]:
    """Run ``cmd --max-steps 500``, ``kill -9`` it and every process under it (an ``accelerate launch`` and its
    workers alike, all at once) once ``n`` checkpoints are complete; the complete ones, judged after the kill
    (a ``trainer_state.json`` cut short does not count)."""
    proc = subprocess.Popen(cmd + ["--max-steps", "500"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while len(_complete(out)) < n and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    tree = _process_tree(proc.pid)
    for pid in tree:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.wait()
    while any(Path(f"/proc/{pid}").exists() and _state(pid) != "Z" for pid in tree[1:]):
        time.sleep(0.05)  # the workers are gone before the next launch starts
    done = _complete(out)
    assert proc.returncode == -signal.SIGKILL and len(done) >= n, done
    return done


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


@pytest.mark.slow
def test_kill_9_during_sft_then_resume(tmp_path):
    out = tmp_path / "run"
    cfg = tmp_path / "sft.yaml"
    cfg.write_text(checkpointing_sft_yaml(out))
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    cmd = [sys.executable, "-m", "saliency_r1.cli.main", "train", "sft", "--config", str(cfg)]
    done = _kill_9_after_3_checkpoints(cmd, env, out)
    last = done[-1]
    kept = {s: (out / f"checkpoint-{s}" / "model.safetensors").stat().st_mtime_ns for s in done}
    res = subprocess.run(cmd + ["--max-steps", str(last + 2)], env=env, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    for s, mtime in kept.items():  # finished checkpoints are not rewritten
        assert (out / f"checkpoint-{s}" / "model.safetensors").stat().st_mtime_ns == mtime
    runs = [json.loads(line) for line in (out / "sft_runs.jsonl").read_text().splitlines()]
    assert runs[-1]["start_step"] == last and runs[-1]["end_step"] == last + 2
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == last + 2
    assert (out / "final" / "config.json").is_file()


# ------------------------------------------------------------------------------------------------ GRPO

def _grpo_config(tmp_path, out, per_device_train_batch_size: int = 4):
    """The smallest GRPO run: the tiny model of ``SMALLEST_TINY``, 4 completions of <= 12 tokens per step, LoRA, a
    checkpoint every step and none deleted (so that the finished ones can be checked afterwards)."""
    from saliency_r1.models.tiny import TinyConfig, tiny_checkpoint

    model = tiny_checkpoint(tmp_path / "tiny", config=TinyConfig(**SMALLEST_TINY))
    data = {"extends": str(packaged_config("grpo_shapes.yaml")), "name": "kill9", "output_dir": str(out),
            "model": {"path": str(model), "build_tiny": False},
            "data": {"n": 8, "seed": 3, "shapes": {"width": 112, "height": 112, "large_size": [30, 36],
                                                   "small_size": [18, 24], "cell_layout": 0}},
            "rewards": {"saliency_batch_size": 4},
            "grpo": {"num_generations": 4, "per_device_train_batch_size": per_device_train_batch_size,
                     "max_completion_length": 12,
                     "logging_steps": 1, "save_steps": 1, "save_total_limit": None}}
    path = tmp_path / "grpo.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.slow
def test_kill_9_during_grpo_then_resume(tmp_path):
    """``kill -9`` of ``saliency-r1 train grpo`` once >= 3 checkpoints are complete; the same command again
    resumes from the last complete one (its log history is the prefix of the new one, steps continue without
    a gap or a repeat), the finished checkpoints' adapter weights are not rewritten, and the run exports."""
    out = tmp_path / "run"
    cfg = _grpo_config(tmp_path, out)
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", TRL_EXPERIMENTAL_SILENCE="1",
               OMP_NUM_THREADS="1")  # GRPO has no torch_threads setting; torch reads OMP_NUM_THREADS
    cmd = [sys.executable, "-m", "saliency_r1.cli.main", "train", "grpo", "--config", str(cfg)]
    done = _kill_9_after_3_checkpoints(cmd, env, out)
    last = done[-1]
    weights = "adapter_model.safetensors"  # LoRA: the checkpoint's weights are the adapter
    kept = {s: (out / f"checkpoint-{s}" / weights).stat().st_mtime_ns for s in done}
    history = json.loads((out / f"checkpoint-{last}" / "trainer_state.json").read_text())["log_history"]
    res = subprocess.run(cmd + ["--max-steps", str(last + 2)], env=env, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    for s, mtime in kept.items():  # finished checkpoints are not rewritten
        assert (out / f"checkpoint-{s}" / weights).stat().st_mtime_ns == mtime
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == last + 2
    assert state["log_history"][:len(history)] == history  # resumed from checkpoint-{last}, not from scratch
    assert [h["step"] for h in state["log_history"] if "loss" in h] == list(range(1, last + 3))
    assert _complete(out)[-2:] == [last + 1, last + 2]
    assert (out / "merged" / "config.json").is_file() and (out / "adapter" / "adapter_config.json").is_file()


# --------------------------------------------------------------------------------------- two processes

@pytest.mark.slow
def test_kill_9_of_two_processes_during_sft_then_resume(tmp_path):
    """``accelerate launch`` (2 CPU processes) of SFT from an existing checkpoint (``model.path``), the launcher's
    processes (launcher and workers) killed with -9 once 2 checkpoints are complete; the same launch again resumes from the last
    one (both processes: one RNG state each), the step count continues, and final/ is written once."""
    from saliency_r1.models.tiny import TinyConfig, tiny_checkpoint

    out = tmp_path / "run"
    data = yaml.safe_load(checkpointing_sft_yaml(out))
    data["model"] = {"path": str(tiny_checkpoint(tmp_path / "tiny", config=TinyConfig(**SMALLEST_TINY)))}
    cfg = tmp_path / "sft.yaml"
    cfg.write_text(yaml.safe_dump(data))
    args = ["-m", "saliency_r1.cli.main", "train", "sft", "--config", str(cfg)]
    cmd, env = accelerate_launch(*args)
    done = _kill_9_after_3_checkpoints(cmd, env, out, n=2)
    last = done[-1]
    kept = {s: (out / f"checkpoint-{s}" / "model.safetensors").stat().st_mtime_ns for s in done}
    cmd, env = accelerate_launch(*args, "--max-steps", str(last + 2))
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    for s, mtime in kept.items():
        assert (out / f"checkpoint-{s}" / "model.safetensors").stat().st_mtime_ns == mtime
    (run,) = [json.loads(line) for line in (out / "sft_runs.jsonl").read_text().splitlines()]  # main process only
    assert (run["processes"], run["resumed_from"], run["start_step"], run["end_step"]) == (
        2, f"checkpoint-{last}", last, last + 2)
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == last + 2
    assert sorted(p.name for p in (out / f"checkpoint-{last + 2}").glob("rng_state_*")) == [
        "rng_state_0.pth", "rng_state_1.pth"]
    assert (out / "final" / "config.json").is_file()
    assert [p.name for p in out.glob(".*")] == [".saliency-r1.lock"]  # nothing half-built; the run's lock file stays


@pytest.mark.slow
def test_kill_9_of_two_processes_during_grpo_then_resume(tmp_path):
    """The same for GRPO (2 processes x 2 completions = one group of 4 per step): resumed from the last complete
    checkpoint (its log history is the prefix of the new one), no step lost or repeated, exported once."""
    out = tmp_path / "run"
    cfg = _grpo_config(tmp_path, out, per_device_train_batch_size=2)
    args = ["-m", "saliency_r1.cli.main", "train", "grpo", "--config", str(cfg)]
    cmd, env = accelerate_launch(*args)
    done = _kill_9_after_3_checkpoints(cmd, env, out, n=2)
    last = done[-1]
    history = json.loads((out / f"checkpoint-{last}" / "trainer_state.json").read_text())["log_history"]
    cmd, env = accelerate_launch(*args, "--max-steps", str(last + 2))
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == last + 2
    assert state["log_history"][:len(history)] == history
    assert [h["step"] for h in state["log_history"] if "loss" in h] == list(range(1, last + 3))
    assert (out / "merged" / "config.json").is_file() and (out / "adapter" / "adapter_config.json").is_file()
