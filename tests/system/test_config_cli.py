"""`saliency-r1 train sft|grpo`: any field overridable (`--grpo.learning_rate 2e-5 --lora.r 8 --output_dir X`),
precedence defaults < YAML (extends) < command line, `--help` listing every field, a missing logging backend
refused before training, and a fuzz over config values and arguments: exit 0, or exit 2 with one line, never a
traceback. The trainers are replaced by their argument builders (TRL's SFTConfig / GRPOConfig are still
built and checked), so nothing trains."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from saliency_r1.cli.main import main
from saliency_r1.config_io import leaf_fields
from saliency_r1.training import grpo, sft
from saliency_r1.training.grpo_config import GRPORunConfig
from saliency_r1.training.sft_config import SFTRunConfig

LONG = os.environ.get("SALIENCY_R1_LONG_FUZZ") == "1"
FUZZ = settings(max_examples=300 if LONG else 40, deadline=None, derandomize=not LONG,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
CLASSES = {"sft": SFTRunConfig, "grpo": GRPORunConfig}
SEEN: list = []  # the configs the mocked trainers received


def _fake_sft(config):
    SEEN.append(config)
    sft.sft_args(config.train, Path(config.train.output_dir))  # TRL's own checks still run
    return Path(config.train.output_dir) / "final"


def _fake_grpo(config):
    SEEN.append(config)
    grpo.grpo_args(config)
    return Path(config.output_dir)


@contextlib.contextmanager
def no_training():
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sft, "train_sft", _fake_sft)
        mp.setattr(grpo, "train_grpo", _fake_grpo)
        SEEN.clear()
        yield SEEN


def cli(*argv: str) -> tuple[int, str, str]:
    """``main(argv)`` in process: (exit status, stdout, stderr); argparse's SystemExit becomes a status."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(list(argv))
        except SystemExit as e:
            rc = e.code if isinstance(e.code, int) else 2
    return rc, out.getvalue(), err.getvalue()


def assert_clean(rc: int, err: str) -> None:
    """Exit 0, or exit 2 with exactly one line on stderr; never a traceback."""
    assert "Traceback" not in err, err
    assert rc in (0, 2), (rc, err)
    if rc == 2:
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("saliency-r1: error: "), err


def _yaml(tmp: Path, data: dict, name: str = "run.yaml") -> str:
    p = tmp / name
    p.write_text(yaml.safe_dump(data))
    return str(p)


SFT_BASE = {"train": {"output_dir": "OUT", "use_cpu": True, "bf16": False}}
GRPO_BASE = {"output_dir": "OUT", "grpo": {"use_cpu": True, "bf16": False, "activation_checkpointing": False,
                                           "per_device_train_batch_size": 8}}


def _base(stage: str, tmp: Path) -> dict:
    import copy

    data = copy.deepcopy(SFT_BASE if stage == "sft" else GRPO_BASE)
    node = data["train"] if stage == "sft" else data
    node["output_dir"] = str(tmp / "out")
    return data


# ---------------------------------------------------------------- overrides and precedence
def test_dotted_and_bare_overrides_and_the_old_flags(tmp_path):
    cfg = _yaml(tmp_path, _base("grpo", tmp_path))
    with no_training() as seen:
        rc, _, err = cli("train", "grpo", "--config", cfg, "--grpo.learning_rate", "2e-5", "--lora.r", "8",
                         "--output_dir", str(tmp_path / "X"), "--max-steps", "3", "--no-resume",
                         "--lora.target_modules", "[q_proj, k_proj]", "--rewards.judge.timeout_s", "2",
                         "--beta", "0", "--data.shapes", "{width: 112, height: 112}")
        assert rc == 0, err
        (c,) = seen
    assert (c.grpo.learning_rate, c.lora.r, c.output_dir, c.grpo.max_steps, c.resume) == (
        2e-5, 8, str(tmp_path / "X"), 3, False)
    assert c.lora.target_modules == ["q_proj", "k_proj"] and c.lora.enabled  # the rest of the GRPO defaults kept
    assert c.rewards.judge.timeout_s == 2.0 and c.grpo.beta == 0.0 and c.data.shapes.width == 112
    cfg = _yaml(tmp_path, _base("sft", tmp_path))
    with no_training() as seen:
        rc, _, err = cli("train", "sft", "--config", cfg, "--train.learning_rate", "1e-4", "--out", "2024",
                         "--lora.enabled", "true", "--max_steps", "5", "--model.path", "null")
        assert rc == 0, err
        (c,) = seen
    assert (c.train.learning_rate, c.train.output_dir, c.lora.enabled, c.train.max_steps) == (1e-4, "2024", True, 5)
    assert c.model.path is None and c.lora.r == 128  # SFT's own LoRA defaults


def test_precedence_defaults_then_parent_then_child_then_command_line(tmp_path):
    _yaml(tmp_path, _base("grpo", tmp_path) | {"grpo": {**GRPO_BASE["grpo"], "beta": 0.1, "epsilon": 0.3},
                                                "lora": {"r": 4}}, "parent.yaml")
    child = _yaml(tmp_path, {"extends": "parent.yaml", "grpo": {"beta": 0.2}}, "child.yaml")
    with no_training() as seen:
        assert cli("train", "grpo", "--config", child)[0] == 0
        assert cli("train", "grpo", "--config", child, "--grpo.beta", "0.3", "--lora.r", "5")[0] == 0
        first, second = seen
    assert (first.grpo.beta, first.grpo.epsilon, first.lora.r, first.grpo.temperature) == (0.2, 0.3, 4, 1.0)
    assert (second.grpo.beta, second.grpo.epsilon, second.lora.r) == (0.3, 0.3, 5)


@pytest.mark.parametrize("args,needle", [
    (["--lora.r", "abc"], "lora.r = 'abc' is not an integer"),
    (["--grpo.learning_rate", "-1"], "grpo.learning_rate = -1 is out of range; use a value > 0"),
    (["--lora.enabled", "0"], "lora.enabled = 0 is not true or false"),
    (["--grpo.num_generations", "1"], "grpo.num_generations = 1 is out of range"),
    (["--grpo.lerning_rate", "1"], "unrecognized arguments"),
    (["--lora.r"], "expected one argument"),
    (["--data.shapes", "{width: [1"], "not valid YAML"),
    (["--grpo.report_to", "tensorbord"], "not a logging backend"),
    (["--grpo.per_device_train_batch_size", "3"], "invalid grpo settings"),  # TRL: 3 is not divisible by 8
])
def test_bad_command_line_is_one_line(tmp_path, args, needle):
    cfg = _yaml(tmp_path, _base("grpo", tmp_path))
    with no_training() as seen:
        rc, _, err = cli("train", "grpo", "--config", cfg, *args)
    assert_clean(rc, err)
    assert rc == 2 and needle in err, err
    assert not seen or args[0] == "--grpo.per_device_train_batch_size"


def test_help_lists_every_field_with_type_default_and_help(tmp_path):
    for stage, cls in CLASSES.items():
        rc, out, _ = cli("train", stage, "--help")
        assert rc == 0
        for name, _, md in leaf_fields(cls):
            line = next((ln for ln in out.splitlines() if ln.startswith(f"  {name} (")), None)
            assert line is not None, f"{stage} --help lacks {name}"
            assert "default" in line and md["help"][:30] in line, line
    rc, out, _ = cli("train", "grpo", "--help")
    assert "  grpo.learning_rate (float, default 1e-05, > 0): paper and authors: 1e-5" in out


def test_missing_logging_backend_stops_before_training(tmp_path, monkeypatch):
    from transformers.integrations import integration_utils as iu

    monkeypatch.setattr(iu, "get_available_reporting_integrations", lambda: [])
    for stage in ("sft", "grpo"):
        cfg = _yaml(tmp_path, _base(stage, tmp_path))
        with no_training() as seen:
            rc, _, err = cli("train", stage, "--config", cfg, "--report_to", "tensorboard")
            assert not seen  # refused before the trainer was called
        assert_clean(rc, err)
        assert rc == 2 and "pip install 'saliency-r1[logging]'" in err


# ---------------------------------------------------------------- fuzz
values = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 10**6), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8), st.sampled_from(["1e-3", "no", "yes", "0", "-1", "nan", "1e400", "[a]", "{}", "-"]),
    st.lists(st.one_of(st.integers(-2, 9), st.text(max_size=4)), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(-2, 9), max_size=2))


def _keys(stage: str) -> list[str]:
    return [n for n, _, _ in leaf_fields(CLASSES[stage])] + ["nope", "lora", "data.sources", "grpo.extra", "train"]


def _set(config: dict, key: str, value) -> None:
    *parents, leaf = key.split(".")
    node = config
    for p in parents:
        if not isinstance(node.get(p), dict):
            node[p] = {}
        node = node[p]
    node[leaf] = value


@FUZZ
@given(stage=st.sampled_from(["sft", "grpo"]), data=st.data())
def test_fuzz_config_values(stage, data):
    flat = data.draw(st.dictionaries(st.sampled_from(_keys(stage)), values, max_size=4))
    with tempfile.TemporaryDirectory() as tmp:
        config = _base(stage, Path(tmp))
        for key, value in flat.items():
            _set(config, key, value)
        path = Path(tmp) / "c.yaml"
        path.write_text(yaml.safe_dump(config, allow_unicode=True))
        with no_training():
            rc, _, err = cli("train", stage, "--config", str(path))
    assert_clean(rc, err)


flags = st.sampled_from(["--grpo.learning_rate", "--learning_rate", "--lora.r", "--lora.enabled", "--out",
                         "--max-steps", "--no-resume", "--resume", "--data.shapes", "--data.sources", "--model.path",
                         "--rewards.judge.timeout_s", "--num_generations", "--train.save_steps", "--beta",
                         "--report_to", "--grpo.extra", "--config", "--bogus", "-x", "--help-me"])
tokens = st.one_of(flags, st.sampled_from(["2e-5", "0", "-1", "true", "no", "null", "[q_proj]", "{width: 9}",
                                           "{", "nan", "8", "", "tensorboard"]), st.text(max_size=6))


@FUZZ
@given(stage=st.sampled_from(["sft", "grpo"]), argv=st.lists(tokens, max_size=6))
def test_fuzz_command_line(stage, argv):
    with tempfile.TemporaryDirectory() as tmp:
        cfg = _yaml(Path(tmp), _base(stage, Path(tmp)))
        with no_training():
            rc, _, err = cli("train", stage, "--config", cfg, *argv)
    assert_clean(rc, err)


@pytest.mark.slow
def test_real_process_bad_config_is_one_line(tmp_path):
    cfg = _yaml(tmp_path, {"grpo": {"learning_rate": "-1e-3", "num_generations": 0}})
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    proc = subprocess.run([sys.executable, "-m", "saliency_r1.cli.main", "train", "grpo", "--config", cfg],
                          capture_output=True, text=True, env=env, timeout=300)
    assert_clean(proc.returncode, proc.stderr)
    assert proc.returncode == 2 and "grpo.learning_rate = '-1e-3' is out of range" in proc.stderr
