"""Folders follow the pipeline: every import inside ``saliency_r1`` (module-level or inside a function) goes to the
same stage or an earlier one. One table, :data:`STAGES`, written once; a package that is not in it fails the test.

The order: the foundation (errors, file and image I/O, config reading, the response grammar) → ``models`` and ``data`` (inputs) →
``capture`` → ``attribution`` → ``scoring`` → ``rewards`` → ``training`` | ``evaluation`` (siblings: neither imports
the other; both may use the rewards — GRPO trains on them, the focus test evaluates them) → ``viz`` →
``experiments`` (the demo) → ``cli``. The package root (``saliency_r1/__init__.py``) is the public API and may
import any stage.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "saliency_r1"

FOUNDATION = {"errors", "_io", "_images", "_config_types", "config_io", "configs", "grammar"}
STAGES: dict[str, int] = {
    **{name: 0 for name in FOUNDATION},
    "models": 1, "data": 1,
    "capture": 2,
    "attribution": 3,
    "scoring": 4,
    "rewards": 5,
    "training": 6, "evaluation": 6,
    "viz": 7,
    "experiments": 8,
    "cli": 9, "__main__": 9,  # python -m saliency_r1 is the CLI
}
"""Rank of each top-level package or module of ``saliency_r1``; an import may only go to an equal or lower rank."""

SIBLINGS_APART = {("training", "evaluation"), ("evaluation", "training"), ("models", "data"), ("data", "models")}
"""Same-rank pairs that must not import each other either."""


def _stage(rel: Path) -> str:
    return rel.parts[0].removesuffix(".py")


def _targets(rel: Path, text: str) -> list[tuple[str, int]]:
    """``(top-level saliency_r1 package, line)`` of every import in the module ``rel`` (relative to the package,
    source ``text``) that stays inside the package."""
    here = ["saliency_r1", *rel.with_suffix("").parts]
    if here[-1] == "__init__":
        here = here[:-1]
    else:
        here = here[:-1]  # a module's relative imports start from its package
    out = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - node.level + 1]
                target = base + (node.module.split(".") if node.module else [a.name for a in node.names[:1]])
            else:
                target = (node.module or "").split(".")
            names = [target]
        elif isinstance(node, ast.Import):
            names = [a.name.split(".") for a in node.names]
        else:
            continue
        for t in names:
            if t[:1] == ["saliency_r1"] and len(t) > 1:
                out.append((t[1], node.lineno))
    return out


def _modules() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if p.relative_to(SRC) != Path("__init__.py"))


def test_every_package_has_a_stage():
    tops = {_stage(p.relative_to(SRC)) for p in _modules()}
    assert tops <= set(STAGES), f"packages without a stage in STAGES: {sorted(tops - set(STAGES))}"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_imports_go_to_earlier_stages(path):
    me = _stage(path.relative_to(SRC))
    bad = [f"line {line}: {me} -> {target}" for target, line in _targets(path.relative_to(SRC), path.read_text())
           if target in STAGES and me in STAGES
           and (STAGES[target] > STAGES[me] or (me, target) in SIBLINGS_APART)]
    assert not bad, f"{path.relative_to(SRC)} imports a later stage: {bad}"


def test_the_checker_sees_relative_absolute_and_lazy_imports():
    """The checker itself: lazy, relative and absolute imports are all found, from modules and packages."""
    src = "def f():\n    from ..viz import html\n    from . import x\nimport saliency_r1.cli.main\n"
    assert sorted(_targets(Path("scoring/probe.py"), src)) == [("cli", 4), ("scoring", 3), ("viz", 2)]
    assert sorted(_targets(Path("scoring/__init__.py"), "from .x import y\nfrom .. import errors\n")) == \
        [("errors", 2), ("scoring", 1)]
