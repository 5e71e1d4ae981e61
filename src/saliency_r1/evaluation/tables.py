"""Tables from per-example records: Table 1 (faithfulness) and Table 3 (pointing) layouts.

Faithfulness means are taken over the *common* examples: those whose anchors differ
(``|LL(orig) − LL(blank)| ≥ min_gap``) and where every listed method produced a map, so all rows
average the same examples. Best and second best per column are marked like the paper (bold,
underline): lower is better for deletion, higher for insertion.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def _mean(values: list[float | None]) -> float:
    v = [x for x in values if x is not None and math.isfinite(x)]
    return float(np.mean(v)) if v else float("nan")


def faithfulness_table(records: list[dict], methods: list[str], levels: list[str]) -> dict[str, Any]:
    """Means per method over the common examples; see the module docstring.

    >>> r = {"id": "a", "degenerate": False, "methods": {"m": {"deletion": {"5": 10.0}, "insertion": {"5": 1.0},
    ...      "deletion_auc": 5.0, "insertion_auc": 6.0, "seconds": 0.5}}}
    >>> faithfulness_table([r], ["m"], ["5"])["rows"]["m"]["del@5"]
    10.0
    """
    common = [r for r in records if not r.get("degenerate")
              and all(r["methods"].get(m, {}).get("deletion") is not None for m in methods)]
    rows: dict[str, dict[str, float]] = {}
    for m in methods:
        got = [r["methods"][m] for r in common]
        row = {f"del@{lv}": _mean([g["deletion"].get(lv) for g in got]) for lv in levels}
        row.update({f"ins@{lv}": _mean([g["insertion"].get(lv) for g in got]) for lv in levels})
        row["del AUC"] = _mean([g.get("deletion_auc") for g in got])
        row["ins AUC"] = _mean([g.get("insertion_auc") for g in got])
        row["s/ex"] = _mean([r["methods"].get(m, {}).get("seconds") for r in records])
        rows[m] = row
    skipped = {m: sum(1 for r in records if r["methods"].get(m, {}).get("skipped")) for m in methods}
    fallback = sum(1 for r in records if r["methods"].get("ours", {}).get("fallback"))
    return {"rows": rows, "n_records": len(records), "n_common": len(common),
            "n_degenerate": sum(1 for r in records if r.get("degenerate")), "skipped": skipped,
            "ours_fallback": fallback, "ranks": _ranks(rows)}


def _ranks(rows: dict[str, dict[str, float]]) -> dict[str, dict[str, int]]:
    """1-based rank of each method per column (deletion: ascending; others: descending); NaN last."""
    out: dict[str, dict[str, int]] = {m: {} for m in rows}
    cols = next(iter(rows.values())).keys() if rows else []
    for c in cols:
        if c == "s/ex":
            continue
        sign = 1.0 if c.startswith("del") else -1.0
        key = {m: (sign * rows[m][c] if math.isfinite(rows[m][c]) else math.inf) for m in rows}
        for rank, m in enumerate(sorted(rows, key=lambda k: (key[k], k)), 1):
            out[m][c] = rank
    return out


def _fmt(v: float, rank: int | None = None) -> str:
    s = "n/a" if not math.isfinite(v) else f"{v:.2f}"
    return f"**{s}**" if rank == 1 else f"<u>{s}</u>" if rank == 2 else s


def faithfulness_markdown(table: dict[str, Any], title: str = "Faithfulness") -> str:
    """Markdown of :func:`faithfulness_table` (Table 1 layout)."""
    rows, ranks = table["rows"], table["ranks"]
    if not rows:
        return f"## {title}\n\nNo records.\n"
    cols = list(next(iter(rows.values())).keys())
    lines = [f"## {title}", "", "| method | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for m, row in rows.items():
        lines.append(f"| {m} | " + " | ".join(_fmt(row[c], ranks[m].get(c)) for c in cols) + " |")
    lines += ["", f"Examples: {table['n_records']} scored, {table['n_common']} common to all methods, "
                  f"{table['n_degenerate']} degenerate (original and blank equally likely). "
                  "Deletion: lower is better; insertion: higher is better; **best**, <u>second</u>. "
                  "s/ex: seconds per example for the map alone (no generation)."]
    skipped = {k: v for k, v in table["skipped"].items() if v}
    if skipped:
        lines.append("Skipped (map undefined): " + ", ".join(f"{k} {v}" for k, v in skipped.items()) + ".")
    if table.get("ours_fallback"):
        lines.append(f"`ours` fell back to the sum of token maps on {table['ours_fallback']} example(s) "
                     "(no think/answer spans).")
    return "\n".join(lines) + "\n"


def pointing_table(records: list[dict], methods: list[str]) -> dict[str, Any]:
    """Energy-PG and PG (in %) per method over the examples where it produced a map; accuracy and
    format rate (in %) of the generated responses (NaN when the responses were the references).

    >>> r = {"format_ok": True, "correct": False, "methods": {"m": {"energy_pg": 0.5, "pg": 1.0}}}
    >>> pointing_table([r], ["m"])["rows"]["m"]
    {'energy-PG': 50.0, 'PG': 100.0, 'n': 1}
    """
    rows = {}
    for m in methods:
        got = [r["methods"].get(m, {}) for r in records]
        got = [g for g in got if g.get("energy_pg") is not None]
        rows[m] = {"energy-PG": 100 * _mean([g["energy_pg"] for g in got]),
                   "PG": 100 * _mean([g["pg"] for g in got]), "n": len(got)}
    n = len(records)
    flag = (lambda k: [None if r.get(k) is None else float(r[k]) for r in records])  # noqa: E731
    return {"rows": rows, "n_records": n, "accuracy": 100 * _mean(flag("correct")),
            "format_rate": 100 * _mean(flag("format_ok"))}


def pointing_markdown(table: dict[str, Any], title: str = "Pointing") -> str:
    """Markdown of :func:`pointing_table` (Table 3 layout)."""
    lines = [f"## {title}", "", "| method | energy-PG | PG | n |", "|---|---|---|---|"]
    for m, row in table["rows"].items():
        lines.append(f"| {m} | {_fmt(row['energy-PG'])} | {_fmt(row['PG'])} | {row['n']} |")
    lines += ["", f"Responses: {table['n_records']}; accuracy {_fmt(table['accuracy'])} %, "
                  f"format rate {_fmt(table['format_rate'])} %. energy-PG and PG in %."]
    return "\n".join(lines) + "\n"


__all__ = ["faithfulness_table", "faithfulness_markdown", "pointing_table", "pointing_markdown"]
