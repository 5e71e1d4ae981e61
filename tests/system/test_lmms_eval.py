"""System test: lmms-eval (0.7.3, the harness of the paper's Table 2) evaluates a project checkpoint on a local
5-row task, with the images reaching the model through ``AutoProcessor`` -> ``Qwen2_5_VLProcessor``.

lmms-eval needs torchvision, which must stay out of the project's venv, so it runs in a separate venv named
by ``SALIENCY_R1_LMMS_PYTHON`` (its python executable; setup in docs/real_models.md). Skipped without one.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

TASK_DIR = Path(__file__).resolve().parents[2] / "docs" / "lmms_eval"
ENV_VAR = "SALIENCY_R1_LMMS_PYTHON"


def _lmms_python() -> str:
    python = os.environ.get(ENV_VAR)
    if not python:
        pytest.skip(f"{ENV_VAR} is not set (python of a venv with lmms-eval 0.7.3; see docs/real_models.md)")
    probe = subprocess.run([python, "-c", "import lmms_eval, torchvision"], capture_output=True, text=True,
                           timeout=300)
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["?"])[-1]
        pytest.skip(f"lmms_eval is not importable with {python}: {last}")
    return python


def _offline_env(tmp_path) -> dict:
    env = dict(os.environ, HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               HF_DATASETS_OFFLINE="1", OMP_NUM_THREADS="2", TOKENIZERS_PARALLELISM="false")
    env.pop("PYTHONPATH", None)
    return env


def _write_task(tmp_path) -> Path:
    """The documented task folder, with its 5 rows written by ``datasets`` (Image feature, parquet)."""
    import datasets
    from PIL import Image

    tasks = shutil.copytree(TASK_DIR, tmp_path / "tasks")
    rows = {"image": [Image.new("RGB", (56 + 28 * i, 56), (50 * i, 90, 200)) for i in range(5)],
            "question": [f"What colour is picture {i}?" for i in range(5)], "answer": ["blue"] * 5}
    features = datasets.Features({"image": datasets.Image(), "question": datasets.Value("string"),
                                  "answer": datasets.Value("string")})
    (tmp_path / "data").mkdir()
    datasets.Dataset.from_dict(rows, features=features).to_parquet(str(tmp_path / "data" / "test.parquet"))
    return tasks


def test_lmms_eval_runs_on_a_project_checkpoint(tiny_dir, tmp_path):
    python = _lmms_python()
    env = _offline_env(tmp_path)
    probe = subprocess.run([python, "-c", "from transformers import AutoProcessor; import sys; "
                            "print(type(AutoProcessor.from_pretrained(sys.argv[1])).__name__)", str(tiny_dir)],
                           capture_output=True, text=True, env=env, timeout=300)
    assert probe.stdout.strip().splitlines()[-1] == "Qwen2_5_VLProcessor", probe.stderr[-2000:]
    tasks = _write_task(tmp_path)
    cmd = [python, "-m", "lmms_eval", "--model", "qwen2_5_vl",
           "--model_args", f"pretrained={tiny_dir},device=cpu,device_map=cpu,min_pixels=3136,max_pixels=50176",
           "--tasks", "saliency_local", "--include_path", str(tasks), "--batch_size", "1",
           "--gen_kwargs", "max_new_tokens=8", "--log_samples", "--output_path", str(tmp_path / "out")]
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    results = glob.glob(str(tmp_path / "out" / "**" / "*_results.json"), recursive=True)
    samples = glob.glob(str(tmp_path / "out" / "**" / "*_samples_saliency_local.jsonl"), recursive=True)
    assert results and samples, run.stdout[-2000:]
    metric = json.loads(Path(results[0]).read_text())["results"]["saliency_local"]
    assert 0.0 <= metric["exact_match,none"] <= 1.0
    rows = [json.loads(line) for line in Path(samples[0]).read_text().splitlines() if line.strip()]
    assert len(rows) == 5 and all(r["resps"] for r in rows)
