"""Several processes: SFT under ``accelerate launch`` with two CPU processes writes every file once (main process),
and the ZeRO-3 export path gathers partitioned weights before the LoRA merge (DeepSpeed faked: it needs CUDA)."""

from __future__ import annotations

import contextlib
import json
import subprocess
import types
from pathlib import Path

import pytest
import torch
import yaml

from conftest import SMALLEST_TINY, accelerate_launch, checkpointing_sft_yaml

# Every process of the launch records, through an audit hook, what it writes, moves or deletes under WATCH.
AUDIT = """
import os, sys
_root, _log = os.environ.get("WATCH"), os.environ.get("AUDIT_DIR")
if _root and _log and "RANK" in os.environ:
    _fh = open(os.path.join(_log, "rank-%s.log" % os.environ["RANK"]), "a")
    def _hook(event, args):
        if event == "open" and isinstance(args[0], str) and (args[1] or "r").strip("rbt"):
            paths = [args[0]]
        elif event in ("os.mkdir", "os.rename", "os.remove", "shutil.rmtree", "shutil.move"):
            paths = [a for a in args[:2] if isinstance(a, (str, os.PathLike))]
        else:
            return
        for p in paths:
            p = os.path.abspath(os.fspath(p))
            if p.startswith(_root):
                _fh.write(event + "\\t" + os.path.relpath(p, _root) + "\\n"); _fh.flush()
    sys.addaudithook(_hook)
"""


def _audited(env: dict, tmp_path: Path, watch: Path) -> dict:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(AUDIT)
    (tmp_path / "audit").mkdir()
    path = [str(site), *filter(None, [env.get("PYTHONPATH")])]
    return {**env, "PYTHONPATH": ":".join(path), "WATCH": str(watch), "AUDIT_DIR": str(tmp_path / "audit")}


def _written(tmp_path: Path, rank: int) -> list[str]:
    log = tmp_path / "audit" / f"rank-{rank}.log"
    return log.read_text().splitlines() if log.is_file() else []


@pytest.mark.slow
def test_sft_two_processes_write_every_file_once(tmp_path):
    """``accelerate launch`` (2 CPU processes, gloo) of ``saliency-r1 train sft`` with a tiny base model built
    for the run and LoRA: it completes; the second process writes nothing but its own RNG state in each
    checkpoint (the base model, sft_config.json, trainer_state.json, final/, sft_runs.jsonl are the main
    process's); every output is complete and nothing half-built is left. Before the fix both processes built
    ``.base.tmp`` at once and one died ("No such file or directory: .../.base.tmp")."""
    from saliency_r1 import load_model

    out = tmp_path / "run"
    data = yaml.safe_load(checkpointing_sft_yaml(out))
    data["lora"] = {"enabled": True, "r": 4, "alpha": 8, "dropout": 0.0}
    cfg = tmp_path / "sft.yaml"
    cfg.write_text(yaml.safe_dump(data))
    cmd, env = accelerate_launch("-m", "saliency_r1.cli.main", "train", "sft", "--config", str(cfg),
                                 "--max-steps", "2")
    proc = subprocess.run(cmd, env=_audited(env, tmp_path, out), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = [json.loads(line) for line in (out / "sft_runs.jsonl").read_text().splitlines()]
    assert [(r["processes"], r["start_step"], r["end_step"]) for r in runs] == [(2, 0, 2)]
    # the second process only asks for its checkpoint folders (os.makedirs(exist_ok=True); its rng_state_1.pth is
    # written by torch's C++ writer, which no audit hook sees)
    assert set(_written(tmp_path, 1)) <= {"os.mkdir\tcheckpoint-1", "os.mkdir\tcheckpoint-2"}, _written(tmp_path, 1)
    rank0 = _written(tmp_path, 0)
    for once in ("sft_config.json", "trainer_state.json", "sft_runs.jsonl", ".base.tmp", "final"):
        assert any(line.endswith("\t" + once) for line in rank0), once
    assert not [p.name for p in out.iterdir()  # no .base.tmp / .final.partial left (the run's lock file stays)
                if p.name.startswith(".") and p.name != ".saliency-r1.lock"]
    for s in (1, 2):
        ckpt = out / f"checkpoint-{s}"
        assert sorted(p.name for p in ckpt.glob("rng_state_*")) == ["rng_state_0.pth", "rng_state_1.pth"]
        assert json.loads((ckpt / "trainer_state.json").read_text())["global_step"] == s
    final = out / "final"
    assert (final / "adapter" / "adapter_config.json").is_file() and (final / "sft_config.json").is_file()
    merged, adapter = load_model(final), load_model(final / "adapter")
    x = {"input_ids": torch.tensor([[5, 6, 7]])}
    with torch.no_grad():
        assert torch.allclose(merged.hf(**x).logits, adapter.hf(**x).logits, atol=1e-4)


# ------------------------------------------------------------------------------- ZeRO-3, faked on CPU

class FakeZero3:
    """What ZeRO-3 does to a model, without DeepSpeed: each parameter keeps only an empty ``data`` (its shard is
    elsewhere) and carries ``ds_id``; ``deepspeed.zero.GatheredParameters(params, modifier_rank=None)`` puts the
    full tensors back for the block and partitions them again after it. Records every gather."""

    def __init__(self, model):
        self.full = {}
        self.gathers: list[int] = []
        for i, p in enumerate(model.parameters()):
            p.ds_id = i
            self.full[i] = p.data
            p.data = torch.empty(0, dtype=p.dtype)

    @contextlib.contextmanager
    def GatheredParameters(self, params, modifier_rank=None):  # noqa: N802 -- deepspeed's name
        assert modifier_rank is None  # an export reads the weights; nothing is broadcast back
        params = list(params)
        self.gathers.append(len(params))
        for p in params:
            p.data = self.full[p.ds_id]
        try:
            yield
        finally:
            for p in params:
                p.data = torch.empty(0, dtype=p.dtype)

    def module(self) -> types.SimpleNamespace:
        """Stands for the ``deepspeed`` module (only ``deepspeed.zero.GatheredParameters`` is used)."""
        return types.SimpleNamespace(zero=types.SimpleNamespace(GatheredParameters=self.GatheredParameters))


def _lora_model(seed: int = 0):
    from peft import LoraConfig, get_peft_model

    from saliency_r1.models.tiny import TinyConfig, build_tiny

    model, processor = build_tiny(TinyConfig(**SMALLEST_TINY), seed=seed)
    peft = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    torch.manual_seed(seed)
    for name, p in peft.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.5)  # a non-zero adapter, so that a merge changes the weights
    return peft, processor


def test_zero3_export_gathers_the_weights_before_the_lora_merge(tmp_path, monkeypatch):
    """Under (faked) ZeRO-3 :func:`export_final` gathers every parameter once, then merges and saves: the
    merged checkpoint equals the one exported from the same model without ZeRO-3. Without the gather the save
    silently writes the empty shards (peft only warns), so the gather is what makes the export right."""
    from safetensors.torch import load_file

    from saliency_r1.training import _distributed
    from saliency_r1.training._distributed import full_weights, partitioned_parameters
    from saliency_r1.training.sft import export_final, save_final

    reference, processor = _lora_model()
    save_final(reference, processor, tmp_path / "plain")
    model, processor = _lora_model()
    n_params = len(list(model.parameters()))
    zero3 = FakeZero3(model)
    monkeypatch.setattr(_distributed, "_deepspeed", zero3.module)
    assert len(partitioned_parameters(model)) == n_params
    export_final(model, processor, tmp_path / "zero3")
    assert zero3.gathers == [n_params]
    want, got = load_file(tmp_path / "plain" / "model.safetensors"), load_file(tmp_path / "zero3" / "model.safetensors")
    assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)
    assert (tmp_path / "zero3" / "adapter" / "adapter_config.json").is_file()

    again, processor = _lora_model()
    FakeZero3(again)  # partitioned, and this time nothing gathers
    with pytest.warns(UserWarning, match="ZeRO-3"):
        save_final(again, processor, tmp_path / "ungathered")
    bad = load_file(tmp_path / "ungathered" / "model.safetensors")
    assert bad.keys() == want.keys() and all(t.numel() == 0 for t in bad.values())
    monkeypatch.setattr(_distributed, "_deepspeed", None)  # without ZeRO-3 deepspeed is never asked for
    lin = torch.nn.Linear(2, 2)
    with full_weights(lin) as m:
        assert m is lin


def test_an_export_without_weights_is_one_line(tmp_path):
    """ZeRO-3 with ``zero3_save_16bit_model: false`` makes ``trainer.save_model`` write an adapter file with no
    tensors; GRPO's export then stops with one line naming the setting, instead of merging nothing."""
    from safetensors.torch import save_file

    from saliency_r1.errors import InputError
    from saliency_r1.training._distributed import check_saved_weights

    save_file({}, str(tmp_path / "adapter_model.safetensors"))
    with pytest.raises(InputError, match="zero3_save_16bit_model: true") as e:
        check_saved_weights(tmp_path)
    assert "\n" not in str(e.value)
    save_file({"w": torch.ones(2)}, str(tmp_path / "adapter_model.safetensors"))
    check_saved_weights(tmp_path)
