"""`saliency-r1 explain`: saliency maps, scores and a report for one example or a JSONL batch.

Single example::

    saliency-r1 explain --model DIR --image IMG --question Q [--response TEXT [--truncate-response]]
        [--box X1,Y1,X2,Y2 ...] [--box-format xyxy|xywh|norm_xyxy|visual_cot] [--mask PATH_OR_JSON]
        [--out DIR] [--which holistic|think|answer|attn] [--max-new-tokens N]
        [--do-sample --temperature T --top-p P] [--seed S] [--device D] [--dtype T]

Batch (resumable)::

    saliency-r1 explain --batch rows.jsonl --model DIR --out DIR [same options]

Each example directory holds ``report.html``, ``holistic.png``, ``tokens.png``, ``result.json`` and
``saliency/`` (the :class:`~saliency_r1.attribution.result.SaliencyResult`, reload it with
``SaliencyResult.load``). In ``result.json``, ``think_span`` / ``answer_span`` index ``tokens``
(add ``response_start`` for positions in the traced sequence) and ``boxes_xyxy`` are pixels of the
explained image (``image_sizes``; the file's own pixels, ``image_file_size``, unless the file was over the
pixel cap of :mod:`saliency_r1._images` and downscaled on opening). Single mode writes into a fresh
sibling of ``--out`` and swaps it in at the end, so a failure leaves the previous complete output as
it was; a batch holds a lock on ``--out`` (a second run on it gets one line naming the holder's pid)
and refuses image/mask paths outside the batch file's folder unless ``--allow-outside-paths``. A batch writes ``DIR/<id>/`` per row, one line per row in ``DIR/records.jsonl``
(status ``ok`` or ``skipped`` with its reason), ``DIR/run.json`` (the options; a resumed run must
pass the same ones) and ``DIR/summary.{md,json}``; re-running the same command skips the rows with
an ``ok`` record and redoes everything else (skipped rows are retried). Exit status: 0 all done,
1 batch finished with skipped rows, 2 bad input (one line on stderr).
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from .._images import original_size
from .._io import output_lock
from ..attribution.options import RELU, THINK_QUERY_OFFSETS
from ..errors import InputError, SaliencyR1Error, UnsupportedModelError
from ..scoring import BOX_FORMATS, MAP_KINDS, authors_box_bug, score_result
from ._common import (BatchTally, RecordLog, check_run_options, iter_jsonl, one_line, quiet_libraries, safe_name,
                      staged_dir, summarise_batch, write_json, writing)
from .explain_inputs import Example, load_image, row_example, row_id, single_example  # noqa: F401  (re-exported)

FILES = ("report.html", "holistic.png", "tokens.png", "result.json", "saliency")
_PARTIAL = ".partial-"
_RESERVED = {"records.jsonl", "summary.md", "summary.json", "run.json"}


def add_parser(sub) -> None:
    """Register ``explain`` on the top-level sub-parsers."""
    p = sub.add_parser("explain", help="saliency maps, scores and an HTML report for one image or a JSONL batch",
                       description=__doc__.splitlines()[0],
                       epilog="A box starting with '-' needs '=': --box=-3,4,50,60.")
    p.add_argument("--model", required=True, help="checkpoint (or LoRA adapter) directory of a Qwen-VL model")
    one = p.add_argument_group("single example")
    one.add_argument("--image", help="image file (PNG/JPEG/WebP...; CMYK, RGBA, grey, 16-bit are converted)")
    one.add_argument("--question", help="the question (plain text; HTML in it is shown as text)")
    one.add_argument("--response", default=None, help="explain this response (teacher-forced) instead of generating")
    p.add_argument("--truncate-response", action="store_true",
                   help="cut a given response that does not fit the model's positions after the prompt (with a "
                        "warning) instead of refusing it")
    one.add_argument("--box", action="append", default=None, metavar="BOX",
                     help='evidence box "x1,y1,x2,y2" or "[x1, y1, x2, y2]"; repeat for several (union)')
    one.add_argument("--mask", action="append", default=None, metavar="PATH_OR_JSON",
                     help="evidence mask: a mask image (non-zero = evidence), a .json file or inline JSON of "
                          "pixel polygons [[x, y], ...]; repeatable")
    p.add_argument("--box-format", default="xyxy", choices=BOX_FORMATS,
                   help="convention of --box and of batch rows without box_format (default xyxy, pixels)")
    p.add_argument("--batch", default=None, metavar="ROWS.jsonl",
                   help="JSONL of examples: image, question, [response], [boxes], [box_format], [id]")
    p.add_argument("--allow-outside-paths", action="store_true",
                   help="let batch rows name image/mask files outside the batch file's folder (refused by default)")
    p.add_argument("--out", default=None, help="output directory (single default: runs/explain; batch: required)")
    p.add_argument("--which", default="holistic", choices=MAP_KINDS, help="map to score (default holistic)")
    rec = p.add_argument_group("the authors' recipe (parity options; defaults are the paper's)")
    rec.add_argument("--relu", default="per_token", choices=RELU,
                     help="ReLU each token's map before summing (paper, default) or once after the sum (authors' code)")
    rec.add_argument("--think-query-offset", type=int, default=0, choices=THINK_QUERY_OFFSETS,
                     help="first-hop query: 0 the thinking token's own position (paper), -1 the one before (authors')")
    rec.add_argument("--authors-box-bug", action="store_true",
                     help="BUG parity: score against boxes with y2 scaled by the image width, as the authors' "
                          "reward code does (off by default; never for real results)")
    gen = p.add_argument_group("generation (when no response is given)")
    gen.add_argument("--max-new-tokens", type=int, default=256, help="default 256")
    gen.add_argument("--do-sample", action="store_true", help="sample instead of greedy decoding")
    gen.add_argument("--temperature", type=float, default=None, help="sampling temperature (> 0)")
    gen.add_argument("--top-p", type=float, default=None, help="nucleus sampling mass in (0, 1]")
    gen.add_argument("--seed", type=int, default=None, help="torch seed, set before each example")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: cuda when available)")
    p.add_argument("--dtype", default=None, help="float32 (default), bf16, fp16 or auto")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Explain one example or a batch; see the module docstring."""
    _check_args(args)
    quiet_libraries(getattr(args, "debug", False))
    return run_batch(args) if args.batch else run_single(args)


def _check_args(args: argparse.Namespace) -> None:
    """Mode and generation options that do not fit together: one-line InputErrors."""
    if args.batch:
        clash = [f"--{n}" for n in ("image", "question", "response", "box", "mask") if getattr(args, n)]
        if clash:
            raise InputError(f"--batch takes its examples from the JSONL file; drop {', '.join(clash)}")
        if not args.out:
            raise InputError("--batch needs --out DIR (records.jsonl there makes the run resumable)")
    elif not args.image or args.question is None:
        raise InputError("pass --image IMG and --question TEXT (or --batch ROWS.jsonl)")
    if args.max_new_tokens < 1:
        raise InputError(f"--max-new-tokens {args.max_new_tokens} must be at least 1")
    if not args.do_sample and (args.temperature is not None or args.top_p is not None):
        raise InputError("--temperature and --top-p only apply when sampling; add --do-sample")
    if args.temperature is not None and not args.temperature > 0:
        raise InputError(f"--temperature {args.temperature} must be > 0")
    if args.top_p is not None and not 0 < args.top_p <= 1:
        raise InputError(f"--top-p {args.top_p} must lie in (0, 1]")


def generate_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments for HF ``generate`` from the command line."""
    kw: dict[str, Any] = {"max_new_tokens": args.max_new_tokens, "do_sample": bool(args.do_sample)}
    if args.temperature is not None:
        kw["temperature"] = args.temperature
    if args.top_p is not None:
        kw["top_p"] = args.top_p
    return kw


# ---------------------------------------------------------------- model and one example


def load(args: argparse.Namespace):
    """``load_model`` with the device checked first and unexpected load failures as one line."""
    import torch

    from ..attribution.model import load_model

    if args.device:
        try:
            dev = torch.device(args.device)
        except RuntimeError:
            raise InputError(f"unknown --device {args.device!r}; use cpu, cuda or cuda:N") from None
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise InputError(f"--device {args.device} but no CUDA GPU is visible; use --device cpu")
    try:
        return load_model(args.model, device=args.device, dtype=args.dtype)
    except UnsupportedModelError as e:
        raise UnsupportedModelError(f"{e}; pass --model a checkpoint directory of one of these") from None
    except SaliencyR1Error:
        raise
    except Exception as e:  # corrupt weights, wrong shapes, a bad processor file...
        if getattr(args, "debug", False):
            raise
        raise InputError(f"could not load the model in {args.model} ({type(e).__name__}: {one_line(e, 120)}); "
                         "pass a complete Qwen2-VL / Qwen2.5-VL checkpoint directory") from None


def score_all(result, ex: Example, which: str, box_bug: bool = False
              ) -> tuple[dict | None, dict[str, dict], str | None]:
    """Scores of the chosen map, of every available map, and why there are none (or None).

    ``box_bug``: the boxes go through :func:`saliency_r1.scoring.authors_box_bug` first (parity only)."""
    if not ex.boxes and ex.mask is None:
        return None, {}, "no evidence boxes or mask given; pass --box (or boxes in the row) to score"
    boxes = ex.boxes
    if box_bug and boxes:
        boxes = authors_box_bug(boxes, result.image_sizes[0])
        if not boxes and ex.mask is None:
            return None, {}, "--authors-box-bug left no box (y2 * W / H <= y1 for every box); no scores"
    ex = dataclasses.replace(ex, boxes=boxes)
    by_map = {}
    for kind in MAP_KINDS:
        if getattr(result, kind) is not None:
            s = score_result(result, boxes=ex.boxes or None, masks=ex.mask, which=kind)
            by_map[kind] = {"energy_pg": s["energy_pg"], "pg": s["pg"]}
    if which in by_map:
        return by_map[which], by_map, None
    why = (result.holistic_reason or "not computed") if which == "holistic" else "not computed"
    return None, by_map, f"the {which!r} map is not available ({why}); no scores"


def _report_scores(scores: dict | None, by_map: dict, which: str) -> dict[str, Any] | None:
    """The score table of the HTML report: the chosen map first, then the others' energy-PG."""
    if scores is None:
        return None
    table: dict[str, Any] = {"energy_pg": scores["energy_pg"], "pg": scores["pg"], "map": which}
    table.update({f"energy_pg_{k}": v["energy_pg"] for k, v in by_map.items() if k != which})
    return table


def explain_example(model, ex: Example, out_dir: Path, args: argparse.Namespace,
                    timings: dict[str, float] | None = None) -> dict[str, Any]:
    """Explain, score and write every file of one example into ``out_dir``; returns result.json's dict.

    ``timings`` (e.g. the model's load time) are added to the ones measured here."""
    import torch

    from ..viz import holistic_png, report_html, token_grid_png

    t0 = time.perf_counter()
    if args.seed is not None:
        torch.manual_seed(args.seed)
    kwargs = generate_kwargs(args) if ex.response is None else {}
    result = model.explain(ex.image, ex.question, response=ex.response, relu=args.relu,
                           think_query_offset=args.think_query_offset,
                           truncate_response=bool(getattr(args, "truncate_response", False)), **kwargs)
    scores, by_map, note = score_all(result, ex, args.which, args.authors_box_bug)
    t1 = time.perf_counter()
    boxes = ex.boxes or None
    with writing(out_dir / "saliency"):  # a failed write of any type: one line naming the file
        result.save(out_dir / "saliency")
    with writing(out_dir / "report.html"):
        report_html(result, out_dir / "report.html", boxes=boxes,
                    scores=_report_scores(scores, by_map, args.which), title=one_line(ex.question, 100))
    with writing(out_dir / "holistic.png"):
        holistic_png(result, out_dir / "holistic.png", boxes=boxes)
    with writing(out_dir / "tokens.png"):
        token_grid_png(result, out_dir / "tokens.png")
    timings = {**(timings or {}), **result.meta.get("timings", {})}
    timings.update(explain_total_s=t1 - t0, write_s=time.perf_counter() - t1)
    data = _result_json(result, ex, scores, by_map, note, timings, kwargs, args.which)
    with writing(out_dir / "result.json"):
        write_json(out_dir / "result.json", data)  # last: its presence marks a complete directory
    return data


def _result_json(result, ex: Example, scores, by_map, note, timings, kwargs, which) -> dict[str, Any]:
    """The content of ``result.json`` (spans as indices into ``tokens``)."""
    rs = result.response_start
    rel = (lambda s: [s[0] - rs, s[1] - rs] if s is not None else None)
    return {
        "id": ex.id, "model": result.meta.get("model"), "image": ex.image_path,
        "image_sizes": [list(s) for s in result.image_sizes], "image_file_size": list(original_size(ex.image)),
        "question": ex.question,
        "response_given": ex.response is not None, "response_text": result.response_text,
        "reference_answer": ex.reference, "tokens": list(result.tokens), "response_start": rs,
        "think_span": rel(result.think_span), "answer_span": rel(result.answer_span),
        "holistic_reason": result.holistic_reason, "boxes_xyxy": ex.boxes, "mask": ex.mask is not None,
        "which": which, "scores": scores, "scores_by_map": by_map, "score_note": note,
        "generate_kwargs": kwargs, "timings": timings, "files": {name: name for name in FILES},
    }


# ---------------------------------------------------------------- single mode


def run_single(args: argparse.Namespace) -> int:
    """Explain one example into ``--out`` and print a short summary."""
    ex = single_example(args)
    t0 = time.perf_counter()
    out = Path(args.out or "runs/explain")
    _check_ours(out)  # before the model loads
    model = load(args)
    load_s = time.perf_counter() - t0
    with staged_dir(out) as fresh:  # a failure leaves the old complete output as it was
        data = explain_example(model, ex, fresh, args, timings={"load_s": load_s})
    _print_single(data, out)
    return 0


def _print_single(data: dict, out: Path) -> None:
    """The short stdout summary: response, scores (or why none), paths."""
    print(f"response:  {one_line(data['response_text'], 200)}")
    s = data["scores"]
    if s is not None:
        hit = "hit" if s["pg"] else "miss"
        print(f"energy-PG: {s['energy_pg']:.3f}   PG: {s['pg']:.0f} ({hit})   ({data['which']} map)")
    else:
        print(f"scores:    n/a: {data['score_note']}")
    for name in FILES:
        print(f"{name.split('.')[0] + ':':<10} {out / name}{'/' if '.' not in name else ''}")


# ---------------------------------------------------------------- batch mode


def run_batch(args: argparse.Namespace) -> int:
    """Explain every row of ``--batch`` into ``--out``, resuming from ``records.jsonl``."""
    t0 = time.perf_counter()
    rows_path, out = Path(args.batch), Path(args.out)
    rows = list(iter_jsonl(rows_path))
    if not rows:
        raise InputError(f"batch file {rows_path} has no rows; write one JSON object per line")
    with output_lock(out, "explain batch"):  # one run per folder: a second one gets the holder's pid
        return _run_batch_locked(args, t0, rows_path, out, rows)


def _run_batch_locked(args: argparse.Namespace, t0: float, rows_path: Path, out: Path, rows: list) -> int:
    """:func:`run_batch` once the output folder's lock is held."""
    from tqdm import tqdm

    check_run_options(out / "run.json", _run_options(args))
    log = RecordLog(out / "records.jsonl")
    ok = {str(r["id"]): r for r in log.read()  # an ok record wins over a later duplicate-row record
          if r.get("status") == "ok" and (out / str(r.get("dir")) / "result.json").is_file()}
    pending = [n for n, row, _ in rows if row_id(row, n) not in ok]
    model = load(args) if pending else None
    _remove_partials(out)
    tally, seen = BatchTally(), {}
    bar = tqdm(rows, desc="explain", unit="row", dynamic_ncols=True, file=sys.stderr)
    for number, row, problem in bar:
        rid = row_id(row, number)
        if rid in ok and rid not in seen:
            seen[rid] = number
            tally.resumed += 1
            tally.records.append(ok[rid])
            continue
        rec = _batch_row(model, number, row, problem, rid, seen, rows_path.parent, out, args)
        log.append(rec)
        if rec["status"] == "ok":
            tally.done += 1
            tally.records.append(rec)
        else:
            tally.skipped.append(rec)
            bar.write(f"row {number} ({rid}): skipped: {rec['reason']}", file=sys.stderr)
    bar.close()
    _summarise(args, out, rows_path, len(rows), tally, time.perf_counter() - t0)
    return 1 if tally.skipped else 0


def _run_options(args: argparse.Namespace) -> dict[str, Any]:
    """The options that change a row's result: a resumed batch must keep them."""
    return {"model": str(Path(args.model).resolve()), "dtype": args.dtype, "which": args.which,
            "box_format": args.box_format, "seed": args.seed, **generate_kwargs(args),
            **({"relu": args.relu} if args.relu != "per_token" else {}),
            **({"think_query_offset": args.think_query_offset} if args.think_query_offset else {}),
            **({"authors_box_bug": True} if args.authors_box_bug else {}),
            **({"allow_outside_paths": True} if args.allow_outside_paths else {})}


def _batch_row(model, number: int, row: dict | None, problem: str | None, rid: str, seen: dict,
               base: Path, out: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Run one row; a bad row becomes a ``skipped`` record (re-raised with ``--debug``)."""
    try:
        if problem:
            raise InputError(problem)
        first = next((k for k in seen if dir_name(k) == dir_name(rid)), None)
        if first is not None:
            raise InputError(f"duplicate id {rid!r} (same folder as line {seen[first]}); give each row a unique id")
        seen[rid] = number
        ex = row_example(row, number, base, args)
        data = _write_row(model, ex, out, args)
    except SaliencyR1Error as e:
        return {"id": rid, "row": number, "status": "skipped", "reason": str(e)}
    except Exception as e:  # an unexpected failure skips the row, the batch goes on
        if getattr(args, "debug", False):
            raise
        return {"id": rid, "row": number, "status": "skipped",
                "reason": f"internal error {type(e).__name__}: {one_line(e, 200)} (re-run with --debug)"}
    return {"id": rid, "row": number, "status": "ok", "dir": dir_name(rid),
            "response_text": data["response_text"], "reference_answer": data["reference_answer"],
            "which": data["which"], "scores": data["scores"], "score_note": data["score_note"],
            "timings": data["timings"]}


def dir_name(rid: str) -> str:
    """The example folder's name for row id ``rid`` (never one of the batch's own files).

    >>> dir_name("a/b"), dir_name("summary.md")
    ('a_b', '_summary.md')
    """
    name = safe_name(rid)
    return f"_{name}" if name in _RESERVED else name


def _check_ours(path: Path) -> None:
    """Refuse ``path`` unless it is absent or an explain output folder (nothing in it we did not write)."""
    if not path.exists() and not path.is_symlink():
        return
    ours = set(FILES)
    if path.is_symlink() or not path.is_dir() or any(c.name not in ours and not c.name.startswith(".")
                                                     for c in path.iterdir()):
        raise InputError(f"{path} exists and is not an explain output folder; move it away or choose another --out")


def _remove_ours(path: Path) -> None:
    """Delete an example folder left incomplete, refusing to touch anything this command did not write."""
    _check_ours(path)
    if path.exists():
        shutil.rmtree(path)


def _write_row(model, ex: Example, out: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Write the example into a hidden partial folder, then rename it into place."""
    final, partial = out / dir_name(ex.id), out / f"{_PARTIAL}{dir_name(ex.id)}"
    for stale in (partial, final):  # no ok record: whatever is here is incomplete; redo it
        _remove_ours(stale)
    partial.mkdir(parents=True)
    data = explain_example(model, ex, partial, args)
    partial.replace(final)
    return data


def _remove_partials(out: Path) -> None:
    """Delete partial example folders a crash left behind."""
    for p in out.glob(f"{_PARTIAL}*"):
        _remove_ours(p)


def _summarise(args, out: Path, rows_path: Path, n_rows: int, tally: BatchTally, elapsed: float) -> None:
    """Means over this file's ok rows (resumed ones included), counts, skipped and unscored rows."""
    summarise_batch(out, f"saliency-r1 explain: {rows_path.name}",
                    f"model `{args.model}`, map `{args.which}`, output `{out}`", n_rows, tally,
                    {"energy_pg": "mean energy-PG", "pg": "mean PG"}, elapsed,
                    extra={"batch": str(rows_path), "model": args.model, "which": args.which})


__all__ = ["add_parser", "run", "Example", "explain_example", "score_all", "load", "row_example", "single_example"]
