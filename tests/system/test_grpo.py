"""GRPO training: configs and variants, a smoke run, interrupt + resume, two processes under accelerate."""

from __future__ import annotations

import dataclasses
import doctest
import glob
import http.server
import json
import os
import signal
import subprocess
import threading
from pathlib import Path

import pytest
import torch
import yaml
from transformers import TrainerCallback

from conftest import accelerate_launch
from saliency_r1.config_io import packaged_root
from saliency_r1.training.grpo import build_rewards, grpo_args, prepare_model_dir, run_from_config, train_grpo
from saliency_r1.training.grpo_config import load_run_config
from saliency_r1.training.grpo_rollouts import FormatForcingRollout

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = packaged_root()  # the tiny CPU configs ship with the package
REAL = ROOT / "configs"  # the real-model configs stay in the repository
SMALL = {"grpo.num_generations": 4, "grpo.per_device_train_batch_size": 4, "grpo.max_completion_length": 20,
         "grpo.logging_steps": 1, "data.n": 8,
         "data.shapes": {"width": 112, "height": 112, "large_size": [30, 36], "small_size": [18, 24], "cell_layout": 0}}


@pytest.fixture(autouse=True)
def _quiet_trl(monkeypatch):
    monkeypatch.setenv("TRL_EXPERIMENTAL_SILENCE", "1")


def _write_config(tmp_path: Path, tiny_dir: Path, name: str = "run.yaml", **over) -> Path:
    """A run YAML extending the `zero` variant, small enough for CPU; dotted keys nest."""
    data: dict = {"extends": str(CONFIGS / "variants" / "zero.yaml"), "output_dir": str(tmp_path / "out"),
                  "model": {"path": str(tiny_dir), "build_tiny": False}}
    for key, value in {**SMALL, **over}.items():
        *parents, leaf = key.split(".")
        node = data
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def _steps(out: Path) -> list[dict]:
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    return [h for h in history if "loss" in h]


# ------------------------------------------------------------------------------------------------ configs

def test_all_configs_load_and_variants_differ_as_in_table_9():
    full = load_run_config(CONFIGS / "grpo_shapes.yaml")
    assert (full.grpo.beta, full.grpo.num_generations, full.lora.target_modules) == (0.001, 8, ["q_proj", "v_proj"])
    assert (full.rewards.accuracy, full.rewards.format, full.rewards.saliency, full.rewards.variant) == (1, 1, 1, "full")
    v = {Path(p).stem: load_run_config(p) for p in glob.glob(str(CONFIGS / "variants" / "*.yaml"))}
    assert set(v) == {"pure", "zero", "attn", "think", "answer", "vision-r1", "authors"}
    assert (v["pure"].rewards.accuracy, v["pure"].rewards.format, v["pure"].rewards.saliency) == (0, 0, 1)
    assert v["zero"].model.path.endswith("/base") and v["zero"].model.path != full.model.path
    assert [v[k].rewards.variant for k in ("attn", "think", "answer")] == ["attn", "think", "answer"]
    assert v["vision-r1"].rewards.saliency == 0
    a = v["authors"].rewards  # the authors' released recipe; the paper's definition is the default
    assert (a.relu, a.think_query_offset, a.authors_box_bug) == ("after_sum", -1, True)
    assert (full.rewards.relu, full.rewards.think_query_offset, full.rewards.authors_box_bug) == ("per_token", 0, False)
    assert len({c.output_dir for c in v.values()} | {full.output_dir}) == 8
    z3 = load_run_config(REAL / "grpo_qwen2_5_vl_7b_zero3.yaml")
    vl = load_run_config(REAL / "grpo_qwen2_5_vl_7b_vllm.yaml")
    assert z3.grpo.beta == 0.001 and z3.grpo.learning_rate == 1e-5 and z3.rewards.judge.mode == "binary"
    assert vl.grpo.use_vllm and vl.grpo.extra["ds3_gather_for_generation"] and not z3.grpo.use_vllm
    assert yaml.safe_load((REAL / "accelerate" / "zero3.yaml").read_text())["deepspeed_config"]["zero_stage"] == 3


def test_grpo_trains_on_the_cold_start_world():
    """GRPO prompts come from the same ShapesWorld distribution as the SFT cold start (and the demo's held-out
    split): a different world would make the start model guess, and the saliency signal drown."""
    from saliency_r1.experiments.pipeline import PRESETS, world
    from saliency_r1.data import ShapesWorldConfig
    from saliency_r1.training.sft import load_config

    def plain(cfg: ShapesWorldConfig) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(cfg)))  # tuples and lists alike

    sft = plain(load_config(CONFIGS / "sft_shapes.yaml").data.shapes)
    assert plain(load_run_config(CONFIGS / "grpo_shapes.yaml").data.shapes) == sft
    assert plain(ShapesWorldConfig(**world())) == sft
    demo = world(PRESETS["quick"])  # the demo's world differs only in its documented overrides
    assert {k for k in sft if sft[k] != demo[k]} == set(PRESETS["quick"].world)


def test_grpo_args_and_rewards_per_variant(tmp_path):
    full = load_run_config(CONFIGS / "grpo_shapes.yaml", output_dir=str(tmp_path))
    args = grpo_args(full)
    assert (args.beta, args.num_generations, args.loss_type, args.bf16, args.gradient_checkpointing) == (
        0.001, 8, "grpo", False, False)
    names = lambda cfg: [getattr(f, "__name__") for f in build_rewards(cfg.rewards, tmp_path)[0]]  # noqa: E731
    assert names(full) == ["format", "accuracy", "saliency"]
    vr1 = load_run_config(CONFIGS / "variants" / "vision-r1.yaml")
    assert names(vr1) == ["format", "accuracy"]
    vr1.rewards.log_zero_weight = True
    assert build_rewards(vr1.rewards, tmp_path)[1] == [1.0, 1.0, 0.0]
    pure = load_run_config(CONFIGS / "variants" / "pure.yaml")
    assert build_rewards(pure.rewards, tmp_path)[1] == [0.0, 0.0, 1.0]


def test_config_errors(tmp_path):
    from saliency_r1.errors import InputError

    bad = tmp_path / "bad.yaml"
    bad.write_text("grpo: {learnin_rate: 1}\n")
    with pytest.raises(InputError, match="learnin_rate"):
        load_run_config(bad)
    loop = tmp_path / "loop.yaml"
    loop.write_text("extends: loop.yaml\n")
    with pytest.raises(InputError, match="extends itself"):
        load_run_config(loop)


# ---------------------------------------------------------------------------------------------- smoke run

class _Failing500:
    def __init__(self):
        class H(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                self.rfile.read(int(self.headers["Content-Length"]))
                self.send_response(500)
                self.end_headers()

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"


class _ParamWatch(TrainerCallback):
    def on_train_begin(self, args, state, control, model=None, **kw):
        self.before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

    def on_train_end(self, args, state, control, model=None, **kw):
        after = dict(model.named_parameters())
        self.changed = [n for n, p in self.before.items() if not torch.equal(p, after[n].detach())]


def _export_without_some_boxes(tmp_path: Path) -> Path:
    from saliency_r1.data import ShapesWorldConfig, export, generate

    cfg = ShapesWorldConfig(**SMALL["data.shapes"])
    path = export(generate(cfg, 8, seed=3), tmp_path / "data")
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for r in rows[::2]:
        r["boxes"], r["masks"] = [], None
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_grpo_smoke_run(tmp_path, tiny_dir):
    """Two steps with formatted rollouts: parameters move, saliency logs lie in [0, 1], rows without boxes
    are None and counted, a judge that answers HTTP 500 gives None without stopping training, and the
    exported merged model loads."""
    from saliency_r1 import load_model

    server = _Failing500()
    try:
        cfg = load_run_config(_write_config(
            tmp_path, tiny_dir, **{"grpo.max_steps": 2, "grpo.per_device_train_batch_size": 8, "data.source": "file",
                                   "data.path": str(_export_without_some_boxes(tmp_path)), "data.format": "shapes",
                                   "rewards.judge": {"url": server.url, "model": "m", "max_retries": 0,
                                                     "timeout_s": 2}}))
        watch = _ParamWatch()
        from saliency_r1.rewards.judge import JudgeFailedError

        with pytest.raises(JudgeFailedError, match="every one of the"):  # every judge call failed: exit 2, after export
            train_grpo(cfg, callbacks=[watch], rollout_func=FormatForcingRollout(0.75, seed=1))
        out = Path(cfg.output_dir)
    finally:
        server.httpd.shutdown()
    assert watch.changed and all("lora" in n for n in watch.changed)
    steps = _steps(out)
    assert [h["step"] for h in steps] == [1, 2]
    logged = lambda key: [h[key] for h in steps if h.get(key) is not None]  # noqa: E731  (None: all rows None)
    for key in ("rewards/saliency/mean", "saliency/alignment", "saliency/pg", "rewards/format/mean"):
        assert logged(key) and all(0.0 <= v <= 1.0 for v in logged(key)), key
    assert sum(logged("saliency/none_rows")) > 0  # half of the prompts have no boxes: None, counted
    assert logged("completions/mean_length") and logged("kl")
    assert sum(logged("judge/failures")) > 0
    assert (out / "adapter" / "adapter_config.json").is_file() and (out / "merged" / "config.json").is_file()
    assert load_model(out / "merged").spec.family == "qwen2_5_vl"
    assert load_model(out / "adapter").spec.family == "qwen2_5_vl"
    assert yaml.safe_load((out / "run_config.yaml").read_text())["name"] == "saliency-r1-zero"
    cfg.model.path = str(out / "adapter")  # a LoRA adapter as the starting point: merged once, then used
    init = prepare_model_dir(cfg)
    assert init == (out / "init_model").resolve() and load_model(init).spec.family == "qwen2_5_vl"


# ------------------------------------------------------------------------------------------ resume

class _InterruptAt(TrainerCallback):
    """Send ourselves SIGINT (Ctrl-C) when step ``step`` begins."""

    def __init__(self, step: int):
        self.step = step

    def on_step_begin(self, args, state, control, **kw):
        if state.global_step + 1 == self.step:
            os.kill(os.getpid(), signal.SIGINT)


def test_interrupt_and_resume(tmp_path, tiny_dir):
    """Ctrl-C during step 2 (checkpoints every 100 steps) still saves step 2; a checkpoint killed mid-write
    is skipped; the resumed run continues at step 3 and no finished step is lost or repeated."""
    path = _write_config(tmp_path, tiny_dir, **{"grpo.max_steps": 4, "grpo.save_steps": 100})
    out = train_grpo(load_run_config(path), callbacks=[_InterruptAt(2)])
    assert [h["step"] for h in _steps(out)] == [1, 2]
    assert json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())["global_step"] == 2
    assert not (out / "merged").exists()
    partial = out / "checkpoint-3"  # a later save killed half-way: weights, no trainer_state.json
    partial.mkdir()
    (partial / "adapter_model.safetensors").write_bytes(b"\0" * 16)
    out2 = run_from_config(path)  # the CLI's entry point; resume is on by default
    assert out2 == out
    assert [h["step"] for h in _steps(out)] == [1, 2, 3, 4]
    assert list(out.glob("incomplete-checkpoint-3-*")) and (out / "checkpoint-4" / "trainer_state.json").is_file()
    assert (out / "merged" / "model.safetensors").is_file()


# ----------------------------------------------------------------------------------- two processes

DRIVER = """
import json, os, sys
import torch
torch.set_num_threads(1)
from saliency_r1.training.grpo import train_grpo
from saliency_r1.training.grpo_config import load_run_config
from saliency_r1.training.grpo_rollouts import FormatForcingRollout
from accelerate import PartialState
cfg = load_run_config(sys.argv[1])
out = train_grpo(cfg, rollout_func=FormatForcingRollout(0.75, seed=PartialState().process_index))
if PartialState().is_main_process:
    (out / "world.json").write_text(json.dumps({"world_size": PartialState().num_processes}))
"""


@pytest.mark.slow
def test_two_processes_under_accelerate(tmp_path, tiny_dir):
    """GRPO on two CPU processes (DDP over gloo) with `accelerate launch` (:func:`conftest.accelerate_launch`)."""
    path = _write_config(tmp_path, tiny_dir, **{"grpo.max_steps": 2, "grpo.per_device_train_batch_size": 2,
                                                "grpo.max_completion_length": 12})
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    cmd, env = accelerate_launch(str(driver), str(path))
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=85)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "out"
    assert json.loads((out / "world.json").read_text()) == {"world_size": 2}
    steps = _steps(out)
    assert [h["step"] for h in steps] == [1, 2]
    assert all(0.0 <= h["rewards/saliency/mean"] <= 1.0 for h in steps)
    assert (out / "merged" / "config.json").is_file()


def test_doctests():
    import saliency_r1.training._checkpoints as ck
    import saliency_r1.training.grpo_config as gc
    import saliency_r1.training.grpo_data as gd
    import saliency_r1.training.grpo_rollouts as gr

    for mod in (ck, gc, gd, gr):
        failed, _ = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
        assert failed == 0, mod.__name__
