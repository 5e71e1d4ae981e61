"""A real ``kill -9`` in the middle of SFT, then the same command again: training resumes from the last
complete checkpoint, the finished checkpoints are untouched, and the step count continues."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

CONFIG = """
model: {tiny: {hidden_size: 64, num_layers: 2, num_heads: 4, num_kv_heads: 2, intermediate_size: 128,
               vision_hidden: 32, vision_depth: 1}, tokenizer_corpus: 200}
data: {n: 16, seed: 3, shapes: {width: 112, height: 112, min_objects: 2, max_objects: 3}}
train: {output_dir: OUT, per_device_train_batch_size: 4, learning_rate: 0.01, warmup_ratio: 0.0,
        lr_scheduler_type: constant, logging_steps: 1, save_steps: 1, save_total_limit: null,
        disable_tqdm: true, torch_threads: 1}
"""


def _complete(out):
    return sorted(int(p.parent.name.split("-")[1]) for p in out.glob("checkpoint-*/trainer_state.json"))


@pytest.mark.slow
def test_kill_9_during_sft_then_resume(tmp_path):
    out = tmp_path / "run"
    cfg = tmp_path / "sft.yaml"
    cfg.write_text(CONFIG.replace("OUT", str(out)))
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    cmd = [sys.executable, "-m", "saliency_r1.cli.main", "train", "sft", "--config", str(cfg)]
    proc = subprocess.Popen(cmd + ["--max-steps", "500"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while len(_complete(out)) < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = _complete(out)
    assert proc.returncode == -signal.SIGKILL and len(done) >= 3, done
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
