"""A real ``kill -9`` in the middle of SFT or GRPO, then the same command again: training resumes from the last
complete checkpoint, the finished checkpoints are untouched, and the step count continues."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from conftest import SMALLEST_TINY, checkpointing_sft_yaml
from saliency_r1.config_io import packaged_config
from saliency_r1.training._checkpoints import checkpoints, is_complete


def _complete(out):
    """Steps of the complete checkpoints, by the project's own rule: a ``trainer_state.json`` cut short by the
    kill does not count (resuming moves that checkpoint aside and writes it again)."""
    return [int(p.name.split("-")[1]) for p in checkpoints(out) if is_complete(p)]


def _kill_9_after_3_checkpoints(cmd: list[str], env: dict, out) -> list[int]:
    """Run ``cmd --max-steps 500``, ``kill -9`` it once 3 checkpoints are complete; the complete ones, judged
    after the kill (a ``trainer_state.json`` cut short does not count)."""
    proc = subprocess.Popen(cmd + ["--max-steps", "500"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while len(_complete(out)) < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = _complete(out)
    assert proc.returncode == -signal.SIGKILL and len(done) >= 3, done
    return done


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

def _grpo_config(tmp_path, out):
    """The smallest GRPO run: the tiny model of ``SMALLEST_TINY``, 4 completions of <= 12 tokens per step, LoRA, a
    checkpoint every step and none deleted (so that the finished ones can be checked afterwards)."""
    from saliency_r1.models.tiny import TinyConfig, tiny_checkpoint

    model = tiny_checkpoint(tmp_path / "tiny", config=TinyConfig(**SMALLEST_TINY))
    data = {"extends": str(packaged_config("grpo_shapes.yaml")), "name": "kill9", "output_dir": str(out),
            "model": {"path": str(model), "build_tiny": False},
            "data": {"n": 8, "seed": 3, "shapes": {"width": 112, "height": 112, "large_size": [30, 36],
                                                   "small_size": [18, 24]}},
            "rewards": {"saliency_batch_size": 4},
            "grpo": {"num_generations": 4, "per_device_train_batch_size": 4, "max_completion_length": 12,
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
