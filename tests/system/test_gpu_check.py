"""The GPU check script (benchmarks/gpu_check.sh) runs end to end at tiny shapes on CPU (``--dry-run``) and
prints one JSON of figures; on a GPU the same parts run at the 7B / 3B shapes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_check_dry_run_prints_one_json():
    env = dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS="1")
    run = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--dry-run", "--only",
                          "tracer_sdpa"], capture_output=True, text=True, env=env, timeout=600)
    report = json.loads(run.stdout)
    assert run.returncode == 0, report
    assert report["dry_run"] is True and set(report["parts"]) == {"tracer_sdpa"}  # the parts: `--only` keeps it short
    assert report["summary"]["tracer_time_ratio_sdpa"] > 0
    assert report["parts"]["tracer_sdpa"]["figures"][0]["attn_implementation"] == "sdpa"


def test_gpu_check_refuses_without_a_gpu_unless_dry_run():
    import torch

    if torch.cuda.is_available():
        return
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py")], capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 2 and "no CUDA device" in json.loads(run.stdout)["error"]
