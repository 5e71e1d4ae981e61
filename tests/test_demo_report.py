"""The demo's report logic: aggregation over seeds, the verdict's checks, the tables, the page."""

from __future__ import annotations

import json

import pytest

from saliency_r1.experiments import report as rep
from saliency_r1.experiments.pipeline import load_preset

ARMS = {
    "sft": {"accuracy": 0.80, "energy_pg": 0.20, "pg": 0.30},
    "vision-r1": {"accuracy": 0.82, "energy_pg": 0.21, "pg": 0.31},
}


def _agg(sal):
    rows = dict(ARMS, **{"saliency-r1": sal})
    return {a: rep.aggregate([m]) for a, m in rows.items()}


def test_verdict_holds_only_when_every_check_passes():
    good = rep.verdict(_agg({"accuracy": 0.81, "energy_pg": 0.30, "pg": 0.40}))
    assert good["holds"] and "holds" in good["text"]
    worse_pg = rep.verdict(_agg({"accuracy": 0.81, "energy_pg": 0.30, "pg": 0.305}))
    assert not worse_pg["holds"] and "pg > vision-r1" in worse_pg["text"]
    lost_acc = rep.verdict(_agg({"accuracy": 0.70, "energy_pg": 0.30, "pg": 0.40}))
    assert not lost_acc["holds"] and "accuracy" in lost_acc["text"]


def test_aggregate_mean_std_over_seeds():
    agg = rep.aggregate([{"pg": 0.2}, {"pg": 0.4}])
    assert abs(agg["pg"]["mean"] - 0.3) < 1e-12 and abs(agg["pg"]["std"] - 0.1) < 1e-12
    table = rep.markdown_table({"sft": agg})
    assert "30.0 ± 10.0" in table


def test_report_page_is_self_contained(tmp_path):
    arms = _agg({"accuracy": 0.81, "energy_pg": 0.30, "pg": 0.40})
    summary = {"preset": "quick", "seeds": [0], "n_test": 3, "arms": arms, "verdict": rep.verdict(arms),
               "counterfactual": {"sft": {"clean": 1.0, "foreground_sigma25": 0.5, "n": 2}}, "timings": {}}
    page = rep.write_report(tmp_path, summary, None, None).read_text()
    assert "Table 3 analogue" in page and "http" not in page.replace("http-equiv", "")
    assert "50.0" in page


def test_preset_overrides_are_checked():
    import pytest

    from saliency_r1.errors import InputError

    assert load_preset("quick", {"sft_steps": 7}).sft_steps == 7
    with pytest.raises(InputError, match="unknown key"):
        load_preset("quick", {"nope": 1})
    with pytest.raises(InputError, match="unknown preset"):
        load_preset("huge")


@pytest.mark.slow
def test_demo_end_to_end_in_miniature_then_resume(tmp_path):
    """The whole demo with every stage cut to a step or two: all arms evaluated, the focused-vs-distracted test
    and the report written; a second run resumes (no stage is redone) and gives the same summary."""
    from saliency_r1.cli.main import main

    out = tmp_path / "demo"
    args = ["demo", "--out", str(out)] + [a for kv in ("sft_steps=2", "grpo_steps=1", "grpo_n=2", "n_test=3",
                                                       "n_counterfactual=1", "n_focus=2", "n_precondition=2") for a in ("--set", kv)]
    assert main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["arms"]) == {"sft", "vision-r1", "saliency-r1"}
    assert set(summary["focus"]) == {"sft", "vision-r1", "saliency-r1"}
    assert all(0.0 <= summary["focus"][a]["focused"]["mean"] <= 1.0 for a in summary["focus"])
    assert set(summary["focus_variants"]) == {"full", "think", "answer", "attn"}
    diag = json.loads((out / "seed0/precondition/sft.json").read_text())["focus"]  # the variants' test, computed once
    assert {v: {k: x["mean"] for k, x in s.items()} for v, s in summary["focus_variants"].items()} == diag
    assert summary["precondition"]["0"]["n_pairs"] == 2 and "share / chance" in summary["precondition"]["0"]["table"]
    md = (out / "summary.md").read_text()
    assert md.index("Can the reward see the reasoning") < md.index("Table 3 analogue")
    assert "distracted_rate" in summary["arms"]["sft"] and (out / "report.html").is_file()
    assert "focused reasoning" in (out / "report.html").read_text()
    from saliency_r1 import load_model
    from saliency_r1.models.loading import resolve_model_dir

    assert resolve_model_dir(out / "saliency-r1").name == "merged" and resolve_model_dir(out / "sft").name == "final"
    assert type(load_model(out / "saliency-r1").model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    marks = {p: p.stat().st_mtime_ns for p in out.glob("seed0/*/.done")}
    assert len(marks) == 3
    assert main(args) == 0
    assert {p: p.stat().st_mtime_ns for p in out.glob("seed0/*/.done")} == marks
    again = json.loads((out / "summary.json").read_text())
    assert again["arms"] == summary["arms"] and again["focus"] == summary["focus"]


def test_experiments_sit_between_evaluation_and_cli():
    """``experiments`` imports nothing from ``cli``; no earlier stage imports ``experiments``; the CLI's demo
    module is a thin layer (no stage logic) and no module finds configs through ``parents[...]`` of its file."""
    import ast
    import re
    from pathlib import Path

    src = Path(__file__).resolve().parents[1] / "src" / "saliency_r1"
    for path in (src / "experiments").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                mod = "." * node.level + (node.module or "")
                assert not re.match(r"(\.\.|saliency_r1\.)cli", mod), path
    for path in src.rglob("*.py"):
        text = path.read_text()
        assert "parents[" not in text, path
        if path.parent.name not in ("experiments", "cli"):
            assert not re.search(r"(\.\.|saliency_r1\.)experiments", text), path
    demo = ast.parse((src / "cli" / "demo.py").read_text())
    assert {n.name for n in demo.body if isinstance(n, ast.FunctionDef)} <= {"add_parser", "run", "_parse_sets"}
