"""Shared fixtures: tiny checkpoints built locally once per session (no network)."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    from saliency_r1.models.tiny import tiny_checkpoint

    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny")


@pytest.fixture(scope="session")
def tiny_gqa3_dir(tmp_path_factory):
    """A GQA ratio of 3 (6 query heads over 2 kv heads), head_dim 16."""
    from saliency_r1.models.tiny import TinyConfig, tiny_checkpoint

    cfg = TinyConfig(hidden_size=96, num_heads=6, num_kv_heads=2, intermediate_size=192)
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny_gqa3", config=cfg, seed=1)


@pytest.fixture(scope="session")
def tiny(tiny_dir):
    from saliency_r1 import load_model

    return load_model(tiny_dir)


@pytest.fixture(scope="session")
def tiny_eager(tiny_dir):
    from saliency_r1 import load_model

    return load_model(tiny_dir, attn_implementation="eager")


SMALLEST_TINY = {"hidden_size": 64, "num_layers": 2, "num_heads": 4, "num_kv_heads": 2, "intermediate_size": 128,
                 "vision_hidden": 32, "vision_depth": 1}  # the tiny model the fault tests train


def checkpointing_sft_yaml(out) -> str:
    """A ``saliency-r1 train sft`` config: the smallest tiny model, 16 ShapesWorld samples, batch 4, a checkpoint
    every step, none deleted, one thread."""
    import yaml

    return yaml.safe_dump({
        "model": {"tiny": SMALLEST_TINY, "tokenizer_corpus": 200},
        "data": {"n": 16, "seed": 3, "shapes": {"width": 112, "height": 112, "min_objects": 2, "max_objects": 3}},
        "train": {"output_dir": str(out), "per_device_train_batch_size": 4, "learning_rate": 0.01,
                  "warmup_ratio": 0.0, "lr_scheduler_type": "constant", "logging_steps": 1, "save_steps": 1,
                  "save_total_limit": None, "disable_tqdm": True, "torch_threads": 1}})


def accelerate_launch(*args: str) -> tuple[list[str], dict]:
    """``(cmd, env)`` of ``accelerate launch`` with TWO CPU processes (DDP over gloo) running ``args`` (a script and
    its arguments, or ``-m module ...``), on a free port of its own.

    ``accelerate launch --cpu --num_processes 2`` runs ONE process on a single machine (accelerate 1.15 only spawns
    CPU workers through mpirun), so the launch is ``--multi_gpu`` with no visible GPU: torchrun starts two
    processes and accelerate falls back to MULTI_CPU with the gloo backend (the run's ``use_cpu`` args pick it).
    """
    import socket
    import sys
    from pathlib import Path

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "TRL_EXPERIMENTAL_SILENCE": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [str(Path(sys.executable).parent / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port",
           str(port), *args]
    return cmd, env


def make_image(w: int = 168, h: int = 140, seed: int = 0) -> Image.Image:
    """A small scene with a few coloured shapes (deterministic)."""
    g = torch.Generator().manual_seed(seed)
    img = Image.new("RGB", (w, h), (235, 235, 230))
    d = ImageDraw.Draw(img)
    for _ in range(4):
        x, y = (int(v) for v in torch.randint(0, max(1, min(w, h) - 30), (2,), generator=g))
        col = tuple(int(c) for c in torch.randint(0, 255, (3,), generator=g))
        d.ellipse([x, y, x + 28, y + 28], fill=col)
    return img


@pytest.fixture
def image():
    return make_image()


# ---------------------------------------------------------------- hand-built results (viz tests, no model)
XSS_SCRIPT = "<script>window.__pwned=1;alert(1)</script>"
XSS_ATTR = '"><img src=x onerror="window.__pwned=1;alert(1)">'
XSS_CLOSE = "</script><script>window.__pwned=1</script>\u2028"


def hand_result(n: int = 6, grid: tuple[int, int] = (3, 4), n_images: int = 1,
                holistic: bool = True, size: tuple[int, int] = (80, 60), images: bool = True,
                tokens: list[str] | None = None, question: str = "Where is the dog?",
                seed: int = 0) -> "SaliencyResult":
    """A SaliencyResult built field by field: prompt of 10, think = tokens 1..n-3, answer after."""
    from saliency_r1.attribution.result import SaliencyResult

    gen = torch.Generator().manual_seed(seed)
    tokens = tokens if tokens is not None else [f" t{k}" for k in range(n)]
    maps = [torch.relu(torch.randn(n, *grid, generator=gen)) for _ in range(n_images)]
    ids = torch.arange(10 + n)
    per_image = [m.mean(0) for m in maps] if holistic else None
    return SaliencyResult(
        input_ids=ids, response_start=10, response_ids=ids[10:], tokens=tokens,
        think_span=(11, 10 + n - 3), answer_span=(10 + n - 2, 10 + n),
        contributions=torch.cat([m.flatten(1) for m in maps], 1), grids=[grid] * n_images,
        token_maps=maps, holistic=per_image, think=per_image, answer=None, attn=None,
        image_sizes=[size] * n_images, resized_sizes=[(grid[1] * 28, grid[0] * 28)] * n_images,
        patch_pixels=28, question=question, response_text="".join(tokens),
        holistic_reason=None if holistic else "no </think> tag: spans unknown",
        meta={"model": "hand-built", "seconds": {"trace": 0.1}},
        images=[Image.new("RGB", size, (30 * i, 90, 160)) for i in range(n_images)]
        if images else None)
