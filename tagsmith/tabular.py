"""Readers that turn toxicity / classification tables into tagsmith classification records.

Record contract (what every reader returns, one dict per source row, in file order):

* single label: ``{"text": str, "label": str}``
* multi-label:  ``{"text": str, "labels": {"toxic": 0/1, "insult": 0/1, ...}}``

plus ``"id": str`` whenever the source has an id column / key.

Rules shared by every reader:

* A row whose text is missing, NaN or blank is an error that names the file and the row; rows are
  never dropped silently.
* A missing column is a :class:`TableFormatError` naming the file, the missing column(s) and the
  columns that were found.
* Texts are never stripped or re-encoded: what is in the cell is what you get.

Row numbers in messages are 1-based data rows (the header is not counted); for JSONL they are
line numbers.

pandas is only needed for CSV/TSV input (it lives in the ``train`` extra) and is imported lazily.
"""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path
from typing import Any, Iterable, Sequence

__all__ = [
    "TableFormatError",
    "OLID_LABELS",
    "JIGSAW_LABEL_COLUMNS",
    "read_olid",
    "read_jigsaw",
    "read_civil_comments",
    "read_table",
    "read_records",
    "read_classification",
    "unescape_csv_field",
]

#: OLID subtask A code -> tagsmith toxicity label.
OLID_LABELS = {"OFF": "toxic", "NOT": "non-toxic"}

#: The six 0/1 label columns of the Jigsaw Toxic Comment Classification Challenge.
JIGSAW_LABEL_COLUMNS = ("toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate")

_JSON_SUFFIXES = (".jsonl", ".json", ".ndjson")
_FORMATS = ("auto", "olid", "jigsaw", "civil_comments", "table", "records")


class TableFormatError(ValueError):
    """A table does not have the expected shape or content.

    The message always names the file; for missing columns it lists the missing and the found
    columns, for bad cells it names the row (and the id when there is one).
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        missing: Sequence[str] = (),
        found: Sequence[str] = (),
        row: int | None = None,
    ) -> None:
        super().__init__(message)
        self.path = None if path is None else str(path)
        self.missing = list(missing)
        self.found = list(found)
        self.row = row


# --------------------------------------------------------------------------------------------------
# helpers


def _pd():
    try:
        import pandas as pd
    except ImportError as exc:  # pragma: no cover - pandas is in the train extra
        raise ImportError(
            "reading CSV/TSV tables needs pandas: pip install 'tagsmith[train]' (or pandas>=2.0)"
        ) from exc
    return pd


def _is_missing(value: Any) -> bool:
    """None, float NaN, or a pandas NA/NaT scalar (checked by type name: no pandas import)."""
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    return type(value).__name__ in ("NAType", "NaTType")


def _row_ref(row: int, rid: Any = None) -> str:
    return f"row {row}" + (f" (id={rid})" if rid is not None and not _is_missing(rid) else "")


def _check_text(value: Any, path: Path, row: int, column: str, rid: Any = None) -> str:
    if _is_missing(value):
        raise TableFormatError(
            f"{path}: {_row_ref(row, rid)} has no text (column {column!r} is empty/NaN); "
            "fix or remove the row - rows are never dropped silently",
            path=path,
            row=row,
        )
    if not isinstance(value, str):
        raise TableFormatError(
            f"{path}: {_row_ref(row, rid)}: text in column {column!r} is "
            f"{type(value).__name__} {value!r}, expected a string",
            path=path,
            row=row,
        )
    if not value.strip():
        raise TableFormatError(
            f"{path}: {_row_ref(row, rid)} has empty text (column {column!r} is blank); "
            "fix or remove the row - rows are never dropped silently",
            path=path,
            row=row,
        )
    return value


def _require_columns(path: Path, found: Sequence[str], required: Iterable[str], what: str) -> None:
    found = [str(c) for c in found]
    missing = [c for c in required if c not in found]
    if missing:
        raise TableFormatError(
            f"{path}: {what} needs column(s) {missing} which are missing; "
            f"columns found: {found}",
            path=path,
            missing=missing,
            found=found,
        )


def _pick_column(path: Path, found: Sequence[str], candidates: Sequence[str], what: str) -> str:
    for c in candidates:
        if c in found:
            return c
    raise TableFormatError(
        f"{path}: {what} needs one of the columns {list(candidates)}, none is present; "
        f"columns found: {[str(c) for c in found]}",
        path=path,
        missing=list(candidates),
        found=[str(c) for c in found],
    )


def _label_str(value: Any) -> str:
    """Labels are kept as strings; numbers become their integer spelling when integral."""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, str):
        return value
    raise TypeError(f"unsupported label type {type(value).__name__}: {value!r}")


def _id_str(value: Any) -> str | None:
    if _is_missing(value):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


_CSV_QUOTED = re.compile(r'"((?:[^"]|"")*)"', re.DOTALL)


def unescape_csv_field(text: str) -> str:
    """Undo CSV quoting of one field: ``"a ""b"" c"`` -> ``a "b" c``.

    Only a field that is entirely wrapped in quotes with every inner quote doubled is changed;
    anything else (a lone ``"``, quotes in the middle) is returned as is. This is what a default
    CSV reader would have produced for such a field, without its row-merging failure mode.
    """
    m = _CSV_QUOTED.fullmatch(text)
    return m.group(1).replace('""', '"') if m else text


def _read_delimited(path: Path, sep: str, quoting: int, header_only: bool = False):
    """Read a CSV/TSV with every column as string; only empty cells are NaN.

    ``keep_default_na=False`` keeps tweets such as ``NA`` or ``null`` as text; empty cells still
    become NaN so the empty-text check sees them.
    """
    pd = _pd()
    kwargs: dict[str, Any] = dict(
        sep=sep,
        quoting=quoting,
        dtype=str,
        keep_default_na=False,
        na_values=[""],
        encoding="utf-8",
    )
    if header_only:
        kwargs["nrows"] = 0
    try:
        return pd.read_csv(path, **kwargs)
    except pd.errors.ParserError as exc:
        raise TableFormatError(f"{path}: cannot parse as {sep!r}-separated table: {exc}", path=path) from exc
    except pd.errors.EmptyDataError as exc:
        raise TableFormatError(f"{path}: file is empty (no header row)", path=path) from exc


def _iter_json(path: Path) -> Iterable[tuple[int, dict]]:
    """Yield (line/record number, object) from a JSONL file or a JSON array file."""
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    stripped = text.lstrip()
    if path.suffix.lower() == ".json" and stripped.startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise TableFormatError(f"{path}: invalid JSON: {exc}", path=path) from exc
        for i, obj in enumerate(data, 1):
            if not isinstance(obj, dict):
                raise TableFormatError(
                    f"{path}: record {i} is {type(obj).__name__}, expected an object", path=path, row=i
                )
            yield i, obj
        return
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TableFormatError(f"{path}: line {i} is not valid JSON: {exc}", path=path, row=i) from exc
        if not isinstance(obj, dict):
            raise TableFormatError(
                f"{path}: line {i} is {type(obj).__name__}, expected a JSON object", path=path, row=i
            )
        yield i, obj


def _json_columns(rows: list[tuple[int, dict]]) -> list[str]:
    cols: dict[str, None] = {}
    for _, obj in rows:
        for k in obj:
            cols.setdefault(k, None)
    return list(cols)


def _sep_for(path: Path, sep: str | None) -> str:
    if sep is not None:
        return sep
    suffix = path.suffix.lower()
    if suffix == ".tsv":
        return "\t"
    if suffix == ".csv":
        return ","
    raise TableFormatError(
        f"{path}: cannot infer the separator from extension {suffix!r}; pass sep=',' or sep='\\t' "
        "(or use .csv / .tsv / .jsonl)",
        path=path,
    )


def _existing(path: str | Path) -> Path:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such file")
    return p


# --------------------------------------------------------------------------------------------------
# readers


def read_olid(path: str | Path, unescape_quotes: bool = False) -> list[dict]:
    """Read an OLID / OffensEval TSV (columns ``id``, ``tweet``, ``subtask_a`` = OFF/NOT).

    The file is read with ``quoting=csv.QUOTE_NONE``: tweets contain lone and unbalanced double
    quotes, and a default (QUOTE_MINIMAL) reader treats a leading ``"`` as the start of a quoted
    field, which can swallow tabs and newlines and merge rows. With QUOTE_NONE every line is one
    row and every cell is kept byte for byte.

    Note: in the distributed ``olid-training-v1.0.tsv``, 1,057 tweets that contain a ``"`` were
    themselves written CSV-escaped (wrapped in quotes, inner quotes doubled). They are returned
    verbatim by default; ``unescape_quotes=True`` undoes that escaping for fields that are
    entirely wrapped that way (see :func:`unescape_csv_field`), which gives the original tweet.

    ``OFF`` -> ``"toxic"``, ``NOT`` -> ``"non-toxic"``; any other value is an error naming the row.
    """
    path = _existing(path)
    df = _read_delimited(path, "\t", csv.QUOTE_NONE)
    _require_columns(path, list(df.columns), ("tweet", "subtask_a"), "OLID (read_olid)")
    has_id = "id" in df.columns
    ids = df["id"].tolist() if has_id else [None] * len(df)
    out: list[dict] = []
    for i, (rid, tweet, code) in enumerate(zip(ids, df["tweet"].tolist(), df["subtask_a"].tolist()), 1):
        text = _check_text(tweet, path, i, "tweet", rid)
        key = code.strip() if isinstance(code, str) else code
        if key not in OLID_LABELS:
            raise TableFormatError(
                f"{path}: {_row_ref(i, rid)}: subtask_a is {code!r}, expected one of "
                f"{sorted(OLID_LABELS)}",
                path=path,
                row=i,
            )
        if unescape_quotes:
            text = unescape_csv_field(text)
        rec: dict = {"text": text, "label": OLID_LABELS[key]}
        if has_id and _id_str(rid) is not None:
            rec["id"] = _id_str(rid)
        out.append(rec)
    return out


def _binary01(value: Any, path: Path, row: int, column: str, rid: Any) -> int | None:
    """Parse a 0/1 cell; returns None for -1 (Jigsaw's 'not scored' marker)."""
    v = value.strip() if isinstance(value, str) else value
    if v in ("0", "1", 0, 1, "0.0", "1.0", 0.0, 1.0):
        return int(float(v))
    if v in ("-1", -1, "-1.0"):
        return None
    raise TableFormatError(
        f"{path}: {_row_ref(row, rid)}: column {column!r} is {value!r}, expected 0 or 1",
        path=path,
        row=row,
    )


def read_jigsaw(path: str | Path, multilabel: bool = False, drop_unscored: bool = False) -> list[dict]:
    """Read a Jigsaw toxic-comment CSV (``comment_text`` + the six 0/1 label columns).

    Binary (default): ``"toxic"`` if any of the six columns is 1, else ``"non-toxic"``.
    ``multilabel=True``: ``{"labels": {column: 0/1 for the six columns}}``.

    The Kaggle ``test_labels.csv`` marks rows that were not scored with -1. They are an error
    unless ``drop_unscored=True``, which drops exactly those rows (a row with any -1).
    """
    path = _existing(path)
    df = _read_delimited(path, ",", csv.QUOTE_MINIMAL)
    _require_columns(path, list(df.columns), ("comment_text", *JIGSAW_LABEL_COLUMNS), "Jigsaw (read_jigsaw)")
    has_id = "id" in df.columns
    ids = df["id"].tolist() if has_id else [None] * len(df)
    texts = df["comment_text"].tolist()
    cols = {c: df[c].tolist() for c in JIGSAW_LABEL_COLUMNS}
    out: list[dict] = []
    for i, (rid, raw) in enumerate(zip(ids, texts), 1):
        values = {c: _binary01(cols[c][i - 1], path, i, c, rid) for c in JIGSAW_LABEL_COLUMNS}
        if any(v is None for v in values.values()):
            if drop_unscored:
                continue
            raise TableFormatError(
                f"{path}: {_row_ref(i, rid)} has label -1 (Jigsaw marks unscored test rows so); "
                "pass drop_unscored=True to skip such rows",
                path=path,
                row=i,
            )
        text = _check_text(raw, path, i, "comment_text", rid)
        rec: dict = {"text": text}
        if multilabel:
            rec["labels"] = dict(values)  # type: ignore[arg-type]
        else:
            rec["label"] = "toxic" if any(values.values()) else "non-toxic"
        if has_id and _id_str(rid) is not None:
            rec["id"] = _id_str(rid)
        out.append(rec)
    return out


def _as_float(value: Any, path: Path, row: int, column: str, rid: Any) -> float:
    try:
        f = float(value)
    except (TypeError, ValueError):
        f = float("nan")
    if math.isnan(f):
        raise TableFormatError(
            f"{path}: {_row_ref(row, rid)}: column {column!r} is {value!r}, expected a number",
            path=path,
            row=row,
        )
    return f


def read_civil_comments(path: str | Path, threshold: float = 0.5) -> list[dict]:
    """Read Civil Comments (CSV or JSONL): text in ``text`` (or ``comment_text``) and a toxicity
    score in ``toxicity`` (or ``target``, as in the Kaggle unintended-bias CSV).

    ``"toxic"`` iff score >= ``threshold``, else ``"non-toxic"``.
    """
    path = _existing(path)
    if path.suffix.lower() in _JSON_SUFFIXES:
        rows = list(_iter_json(path))
        found = _json_columns(rows)
        records = [(n, obj) for n, obj in rows]
    else:
        df = _read_delimited(path, "\t" if path.suffix.lower() == ".tsv" else ",", csv.QUOTE_MINIMAL)
        found = [str(c) for c in df.columns]
        records = list(enumerate(df.to_dict("records"), 1))
    text_col = _pick_column(path, found, ("text", "comment_text"), "Civil Comments (read_civil_comments)")
    score_col = _pick_column(path, found, ("toxicity", "target"), "Civil Comments (read_civil_comments)")
    out: list[dict] = []
    for i, obj in records:
        rid = obj.get("id")
        text = _check_text(obj.get(text_col), path, i, text_col, rid)
        score = _as_float(obj.get(score_col), path, i, score_col, rid)
        rec: dict = {"text": text, "label": "toxic" if score >= threshold else "non-toxic"}
        if _id_str(rid) is not None:
            rec["id"] = _id_str(rid)
        out.append(rec)
    return out


def read_table(
    path: str | Path,
    text_column: str,
    label_column: str,
    sep: str | None = None,
    id_column: str | None = "id",
    quoting: int | None = None,
) -> list[dict]:
    """Read a generic CSV / TSV / JSONL table into single-label records.

    ``sep`` is inferred from the extension (``.tsv`` -> tab, ``.csv`` -> comma); ``.jsonl`` /
    ``.json`` are read as JSON records. Labels are kept as strings: numbers become ``"0"``, ``"1"``
    etc. (integral floats such as ``1.0`` too; booleans become ``"0"``/``"1"``).

    Quoting: TSV is read with ``csv.QUOTE_NONE`` by default (a tab-separated file has no quoting
    convention, and a stray ``"`` must not merge rows); CSV with standard quoting. Pass
    ``quoting`` to override. ``id_column`` (default ``"id"``) is kept as ``"id"`` when present.
    """
    path = _existing(path)
    if path.suffix.lower() in _JSON_SUFFIXES and sep is None:
        rows = list(_iter_json(path))
        found = _json_columns(rows)
        records: list[tuple[int, dict]] = rows
    else:
        s = _sep_for(path, sep)
        q = quoting if quoting is not None else (csv.QUOTE_NONE if s == "\t" else csv.QUOTE_MINIMAL)
        df = _read_delimited(path, s, q)
        found = [str(c) for c in df.columns]
        records = list(enumerate(df.to_dict("records"), 1))
    _require_columns(path, found, (text_column, label_column), "read_table")
    use_id = id_column is not None and id_column in found
    out: list[dict] = []
    for i, obj in records:
        rid = obj.get(id_column) if use_id else None
        text = _check_text(obj.get(text_column), path, i, text_column, rid)
        raw = obj.get(label_column)
        if _is_missing(raw) or (isinstance(raw, str) and not raw.strip()):
            raise TableFormatError(
                f"{path}: {_row_ref(i, rid)} has no label (column {label_column!r} is empty/NaN)",
                path=path,
                row=i,
            )
        try:
            label = _label_str(raw)
        except TypeError as exc:
            raise TableFormatError(f"{path}: {_row_ref(i, rid)}: {exc}", path=path, row=i) from exc
        rec: dict = {"text": text, "label": label}
        if use_id and _id_str(rid) is not None:
            rec["id"] = _id_str(rid)
        out.append(rec)
    return out


def read_records(path: str | Path) -> list[dict]:
    """Read JSON/JSONL that is already in record form and validate it.

    Each object needs ``text`` and exactly one of ``label`` (string; integers are converted to
    their string form) or ``labels`` (object of name -> 0/1). ``id`` is kept (as a string).
    Other keys are dropped.
    """
    path = _existing(path)
    out: list[dict] = []
    for i, obj in _iter_json(path):
        rid = obj.get("id")
        if "text" not in obj:
            raise TableFormatError(
                f"{path}: record {i} has no 'text' key; keys found: {list(obj)}",
                path=path, missing=["text"], found=list(obj), row=i,
            )
        text = _check_text(obj["text"], path, i, "text", rid)
        has_label, has_labels = "label" in obj, "labels" in obj
        if has_label == has_labels:
            raise TableFormatError(
                f"{path}: {_row_ref(i, rid)} must have exactly one of 'label' or 'labels'; "
                f"keys found: {list(obj)}",
                path=path, missing=[] if has_label else ["label"], found=list(obj), row=i,
            )
        rec: dict = {"text": text}
        if has_label:
            raw = obj["label"]
            if _is_missing(raw) or (isinstance(raw, str) and not raw.strip()) or isinstance(raw, float):
                raise TableFormatError(
                    f"{path}: {_row_ref(i, rid)}: label {raw!r} is not a non-empty string or integer",
                    path=path, row=i,
                )
            try:
                rec["label"] = _label_str(raw)
            except TypeError as exc:
                raise TableFormatError(f"{path}: {_row_ref(i, rid)}: {exc}", path=path, row=i) from exc
        else:
            labels = obj["labels"]
            if not isinstance(labels, dict) or not labels:
                raise TableFormatError(
                    f"{path}: {_row_ref(i, rid)}: 'labels' must be a non-empty object name -> 0/1, "
                    f"got {labels!r}",
                    path=path, row=i,
                )
            clean: dict[str, int] = {}
            for name, v in labels.items():
                if isinstance(v, bool) or v not in (0, 1):
                    raise TableFormatError(
                        f"{path}: {_row_ref(i, rid)}: labels[{name!r}] is {v!r}, expected 0 or 1",
                        path=path, row=i,
                    )
                clean[str(name)] = int(v)
            rec["labels"] = clean
        if _id_str(rid) is not None:
            rec["id"] = _id_str(rid)
        out.append(rec)
    return out


# --------------------------------------------------------------------------------------------------
# dispatch


def _sniff_columns(path: Path) -> list[str]:
    if path.suffix.lower() in _JSON_SUFFIXES:
        for _, obj in _iter_json(path):
            return list(obj)
        raise TableFormatError(f"{path}: no records", path=path)
    with open(path, encoding="utf-8") as fh:
        first = fh.readline()
    if not first.strip():
        raise TableFormatError(f"{path}: file is empty (no header row)", path=path)
    sep = "\t" if (path.suffix.lower() == ".tsv" or ("\t" in first and path.suffix.lower() != ".csv")) else ","
    # TSV without quoting, as every reader here reads it: an OLID tweet opening with '"' must not swallow the file
    quoting = csv.QUOTE_NONE if sep == "\t" else csv.QUOTE_MINIMAL
    return [str(c) for c in _read_delimited(path, sep, quoting, header_only=True).columns]


def sniff_format(path: str | Path) -> str:
    """Guess the format of a classification file from its extension and columns / keys."""
    path = _existing(path)
    cols = set(_sniff_columns(path))
    if {"tweet", "subtask_a"} <= cols:
        return "olid"
    if {"comment_text", *JIGSAW_LABEL_COLUMNS} <= cols:
        return "jigsaw"
    if cols & {"text", "comment_text"} and cols & {"toxicity", "target"}:
        return "civil_comments"
    if path.suffix.lower() in _JSON_SUFFIXES and "text" in cols and ({"label", "labels"} & cols):
        return "records"
    if {"text", "label"} <= cols:
        return "table"
    raise TableFormatError(
        f"{path}: cannot tell the format from the columns {sorted(cols)}; pass format= one of "
        f"{list(_FORMATS[1:])} (for 'table' also text_column= and label_column=)",
        path=path,
        found=sorted(cols),
    )


def read_classification(path: str | Path, format: str = "auto", **kw: Any) -> list[dict]:
    """Read any supported classification source into records.

    ``format``: ``"olid"`` | ``"jigsaw"`` | ``"civil_comments"`` | ``"table"`` | ``"records"`` |
    ``"auto"``. Extra keyword arguments go to the reader (e.g. ``multilabel=True`` for Jigsaw,
    ``threshold=0.7`` for Civil Comments, ``text_column=``/``label_column=`` for tables).

    ``"auto"`` sniffs by columns: ``tweet``+``subtask_a`` -> olid; ``comment_text`` + the six
    Jigsaw columns -> jigsaw; text + ``toxicity``/``target`` -> civil_comments; JSON(L) with
    ``text`` + ``label``/``labels`` -> records; ``text``+``label`` -> table. If
    ``text_column``/``label_column`` are given, "auto" means "table".
    """
    if format not in _FORMATS:
        raise ValueError(f"unknown format {format!r}; expected one of {list(_FORMATS)}")
    if format == "auto":
        format = "table" if ("text_column" in kw or "label_column" in kw) else sniff_format(path)
    if format == "olid":
        return read_olid(path, **kw)
    if format == "jigsaw":
        return read_jigsaw(path, **kw)
    if format == "civil_comments":
        return read_civil_comments(path, **kw)
    if format == "records":
        return read_records(path, **kw)
    kw.setdefault("text_column", "text")
    kw.setdefault("label_column", "label")
    return read_table(path, **kw)
