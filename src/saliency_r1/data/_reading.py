"""Where a source's rows come from: a file, a folder, a glob, a ``save_to_disk`` folder or a hub id.

:func:`resolve` turns ``path`` into :class:`Part` s (one per data file, or one ``datasets.Dataset``)
and the default image root. Folders and hub snapshots are split into data files by ``datasets``
itself (``load_dataset_builder``: the README's ``configs:`` or the hub's file-name patterns such
as ``data/train-00000-of-00002.parquet``); Parquet and Arrow files and ``save_to_disk`` /
cached datasets are read through ``datasets`` in Arrow batches (images stay undecoded
``{"bytes", "path"}`` dicts until a parser needs them). JSON and JSONL are read by
:func:`json_rows`, row by row: ``datasets``' JSON builder fails a whole file on one malformed line
and (datasets 5.2) silently turns values of mixed type into JSON strings, which would hide the
bad rows this loader reports.

A hub id ``org/name`` is looked up offline only: first the hub snapshot that
``hf download --repo-type dataset org/name`` (``huggingface-cli`` before huggingface_hub 1.0) writes
(``$HF_HUB_CACHE`` or ``$HF_HOME/hub``, ``datasets--org--name/snapshots/<sha>/``; datasets 5.2's
``load_dataset(id)`` does not read it offline), then the Arrow cache an online
``datasets.load_dataset(id)`` left (``$HF_DATASETS_CACHE`` or ``$HF_HOME/datasets``,
``org___name/<config>/<version>/<hash>/``), read as ``load_dataset`` does offline.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Union

from ..errors import InputError

logger = logging.getLogger(__name__)

Rows = Iterator[tuple[int, Any, Optional[str]]]  # (row number in the part, row, error)
DATA_SUFFIXES = {".parquet": "parquet", ".arrow": "arrow", ".json": "json", ".jsonl": "json", ".ndjson": "json"}
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")
_BATCH = 256


@dataclass
class Part:
    """One readable unit of a source: a data file, or a ``datasets.Dataset`` split."""

    label: str  # what warnings name
    stem: str  # prefix of default ids
    file: Optional[Path]  # the data file, None for a Dataset
    rows: Callable[[], Rows]


@dataclass
class Resolved:
    """The parts of a source, in order, and the folder image paths are relative to by default."""

    parts: list[Part]
    root: Path
    where: str


def hf_home() -> Path:
    """``$HF_HOME``, else ``$XDG_CACHE_HOME/huggingface``, else ``~/.cache/huggingface`` (read at call time)."""
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "huggingface"


def hub_cache() -> Path:
    """The hub file cache: ``$HF_HUB_CACHE``, else ``$HF_HOME/hub``."""
    env = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    return Path(env).expanduser() if env else hf_home() / "hub"


def datasets_cache() -> Path:
    """The datasets Arrow cache: ``$HF_DATASETS_CACHE``, else ``$HF_HOME/datasets``."""
    env = os.environ.get("HF_DATASETS_CACHE")
    return Path(env).expanduser() if env else hf_home() / "datasets"


# ------------------------------------------------------------------ row readers
def json_rows(path: Path) -> Rows:
    """``(row, value, error)`` of a JSON list (or a JSON object's single list / ``data`` entry, or
    one object), or of JSONL line by line (row = line number; a malformed line is an error row)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(f"{path} is not UTF-8 text ({e.reason} at byte {e.start}); give a JSON or JSONL file") from None
    head = text.lstrip()[:1]
    data = _whole_json(text, path) if head in "[{" and head else None
    if data is not None:
        for k, row in enumerate(data, 1):
            yield k, row, None
        return
    for k, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            yield k, json.loads(line), None
        except json.JSONDecodeError as e:
            yield k, None, f"malformed JSON ({e.msg}, column {e.colno})"


def _whole_json(text: str, path: Path) -> Optional[list]:
    """The rows of a whole-file JSON document; None when the text is JSONL (several objects)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        if text.lstrip().startswith("["):
            raise InputError(f"{path} starts like a JSON list but is not valid JSON ({e.msg}, line {e.lineno}); "
                             "fix it or write one object per line (JSONL)") from None
        return None  # JSONL: parsed line by line
    if isinstance(data, list):
        return data
    if isinstance(data, dict):
        if isinstance(data.get("data"), list):
            return data["data"]
        if len(data) == 1:
            (value,) = data.values()
            if isinstance(value, list) and value and all(isinstance(r, dict) for r in value):
                return value  # {"anything": [rows]}
    return [data]  # a single JSON object: one row


def dataset_rows(ds: Any) -> Rows:
    """The rows of a ``datasets.Dataset`` / ``IterableDataset`` as plain dicts, in Arrow batches
    (Image columns stay ``{"bytes", "path"}`` dicts; nothing is decoded here)."""
    k = 0
    for table in ds.with_format("arrow").iter(batch_size=_BATCH):
        for row in table.to_pylist():
            k += 1
            yield k, row, None


def _parquet_rows(path: Path) -> Rows:
    import datasets

    try:
        ds = datasets.load_dataset("parquet", data_files=[str(path)], split="train", streaming=True,
                                   cache_dir=str(datasets_cache()))
        yield from dataset_rows(ds)
    except InputError:
        raise
    except Exception as e:  # noqa: BLE001 - any reader failure is the file's fault
        raise InputError(f"cannot read Parquet file {path} ({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
                         "check that it is a complete Parquet file") from None


def _arrow_rows(path: Path) -> Rows:
    import datasets

    try:
        ds = datasets.Dataset.from_file(str(path))
    except Exception as e:  # noqa: BLE001
        raise InputError(f"cannot read Arrow file {path} ({type(e).__name__}); give a datasets .arrow file") from None
    yield from dataset_rows(ds)


_READERS = {"parquet": _parquet_rows, "arrow": _arrow_rows, "json": json_rows}


def _file_part(path: Path) -> Part:
    kind = DATA_SUFFIXES.get(path.suffix.lower(), "json")  # anything else: JSON / JSONL text
    return Part(str(path), path.stem, path, lambda: _READERS[kind](path))


def _dataset_part(ds: Any, label: str, stem: str) -> Part:
    return Part(label, stem, None, lambda: dataset_rows(ds))


# ------------------------------------------------------------------ layouts
def _is_saved_dataset(folder: Path) -> bool:
    return (folder / "dataset_dict.json").is_file() or (
        (folder / "state.json").is_file() and (folder / "dataset_info.json").is_file())


def _pick_split(splits: Any, split: str, where: str) -> Any:
    if split not in splits:
        raise InputError(f"{where} has no split {split!r} (splits: {', '.join(map(str, splits))}); set split: to one")
    return splits[split]


def _saved(folder: Path, split: str) -> list[Part]:
    """A ``save_to_disk`` folder: a Dataset (split ignored) or a DatasetDict (pick ``split``)."""
    import datasets

    try:
        ds = datasets.load_from_disk(str(folder))
    except Exception as e:  # noqa: BLE001
        raise InputError(f"cannot load the save_to_disk folder {folder} ({type(e).__name__}: "
                         f"{str(e).splitlines()[0][:200]})") from None
    if isinstance(ds, datasets.DatasetDict):
        return [_dataset_part(_pick_split(ds, split, str(folder)), f"{folder}[{split}]", f"{folder.name}-{split}")]
    return [_dataset_part(ds, str(folder), folder.name)]


def _folder_files(folder: Path, split: str, data_files: Any) -> list[Path]:
    """The data files of ``split`` in ``folder``: ``data_files`` patterns (relative to the folder)
    when given, else ``datasets``' own resolution (README ``configs:``, hub file-name patterns)."""
    if data_files is not None:
        patterns = [data_files] if isinstance(data_files, str) else list(data_files)
        files = sorted({Path(f) for pat in patterns for f in glob.glob(str(folder / pat), recursive=True)
                        if Path(f).is_file()})
        if not files:
            raise InputError(f"data_files {patterns} match no file under {folder}; give paths relative to it")
        return files
    import datasets

    try:
        builder = datasets.load_dataset_builder(str(folder), cache_dir=str(datasets_cache()))
    except Exception as e:  # noqa: BLE001
        raise InputError(f"no data files found in {folder} ({type(e).__name__}: {str(e).splitlines()[0][:160]}); "
                         "give a data file, a glob, or data_files: patterns") from None
    files = [Path(f) for f in _pick_split(builder.config.data_files or {}, split, str(folder))]
    kept = [f for f in files if f.suffix.lower() in DATA_SUFFIXES]
    if files and not kept:
        raise InputError(f"split {split!r} of {folder} has no .parquet/.arrow/.json/.jsonl file (found e.g. "
                         f"{files[0].name}); give a data file, a glob, or data_files: patterns")
    return kept


def _glob(pattern: str) -> Resolved:
    files = sorted(Path(f) for f in glob.glob(os.path.expanduser(pattern), recursive=True) if Path(f).is_file())
    files = [f for f in files if f.suffix.lower() in DATA_SUFFIXES]
    if not files:
        raise InputError(f"glob {pattern!r} matches no .parquet/.arrow/.json/.jsonl file")
    prefix = re.split(r"[*?\[]", os.path.expanduser(pattern), maxsplit=1)[0]
    root = Path(prefix) if prefix.endswith(os.sep) else Path(prefix).parent
    return Resolved([_file_part(f) for f in files], root, pattern)


def hub_snapshot(repo_id: str, revision: Optional[str] = None) -> Optional[Path]:
    """The local snapshot folder of dataset ``repo_id`` in the hub cache, or None (never downloads)."""
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        folder = huggingface_hub.snapshot_download(repo_id, repo_type="dataset", revision=revision,
                                                   cache_dir=str(hub_cache()), local_files_only=True)
    except (LocalEntryNotFoundError, FileNotFoundError, OSError, ValueError):
        return None
    return Path(folder)


def cached_dataset(repo_id: str, split: str) -> Optional[Any]:
    """Split ``split`` of the Arrow cache an online ``load_dataset(repo_id)`` wrote, or None; read
    with datasets' own offline builder (``datasets.packaged_modules.cache``)."""
    from datasets.naming import camelcase_to_snakecase
    from datasets.packaged_modules.cache.cache import Cache

    namespace, name = repo_id.split("/")
    root = datasets_cache() / f"{namespace}___{camelcase_to_snakecase(name)}"
    if not any(Path(p).is_dir() for p in glob.glob(str(root / "*" / "*" / "*"))):
        return None
    try:
        builder = Cache(cache_dir=str(datasets_cache()), dataset_name=name, repo_id=repo_id, version="auto",
                        hash="auto")
    except Exception as e:  # noqa: BLE001
        raise InputError(f"the datasets cache of {repo_id} in {root} is unreadable ({type(e).__name__}: "
                         f"{str(e).splitlines()[0][:160]})") from None
    splits = builder.info.splits or {}
    if split not in splits:
        raise InputError(f"cached dataset {repo_id} has no split {split!r} (splits: {', '.join(splits)}); "
                         "set split: to one")
    return builder.as_dataset(split=split)


def _hub(repo_id: str, split: str, data_files: Any, revision: Optional[str]) -> Resolved:
    snap = hub_snapshot(repo_id, revision)
    if snap is not None:
        files = _folder_files(snap, split, data_files)
        return Resolved([_file_part(f) for f in files], snap, f"{repo_id} ({snap})")
    ds = cached_dataset(repo_id, split) if data_files is None else None
    if ds is not None:
        name = repo_id.split("/")[1]
        return Resolved([_dataset_part(ds, f"{repo_id}[{split}]", f"{name}-{split}")], datasets_cache(), repo_id)
    raise InputError(f"no file or folder {repo_id!r}, and dataset {repo_id} is not in the local HF cache "
                     f"({hub_cache()} or {datasets_cache()}); download it with: hf download --repo-type dataset "
                     f"{repo_id} (huggingface_hub < 1.0: huggingface-cli download --repo-type dataset {repo_id})")


def resolve(path: Union[str, Path], split: str = "train", data_files: Any = None,
            revision: Optional[str] = None) -> Resolved:
    """The parts of source ``path`` (see the module docstring) and its default image root.

    >>> import tempfile, pathlib, json
    >>> d = pathlib.Path(tempfile.mkdtemp()); _ = (d / "a.jsonl").write_text(json.dumps({"x": 1}))
    >>> r = resolve(d / "a.jsonl"); [row for part in r.parts for row in part.rows()], r.root == d
    ([(1, {'x': 1}, None)], True)
    """
    text = str(path)
    p = Path(text).expanduser()
    if any(ch in text for ch in "*?[") and not p.exists():
        return _glob(text)
    if p.is_file():
        return Resolved([_file_part(p)], p.parent, str(p))
    if p.is_dir():
        if data_files is None and (p / "data.jsonl").is_file():  # a ShapesWorld export
            return Resolved([_file_part(p / "data.jsonl")], p, str(p / "data.jsonl"))
        if _is_saved_dataset(p):
            return Resolved(_saved(p, split), p, str(p))
        return Resolved([_file_part(f) for f in _folder_files(p, split, data_files)], p, str(p))
    if HUB_ID.match(text):
        return _hub(text, split, data_files, revision)
    raise InputError(f"data file not found: {p}")


__all__ = ["resolve", "Resolved", "Part", "json_rows", "hub_cache", "datasets_cache"]
