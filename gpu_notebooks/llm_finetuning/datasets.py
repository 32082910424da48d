"""Training data: the built-in set, an uploaded file or a hub dataset, validated and split."""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import re
from pathlib import Path

import pandas as pd

from gpu_notebooks.llm_finetuning.formatting import code_list
from gpu_notebooks.llm_finetuning.loading import hub_status
from gpu_notebooks.llm_finetuning.settings import DATA_CHOICES, SERVER_PATHS_OFF
from gpu_notebooks.llm_finetuning.tasks import builtin_examples
from gpu_notebooks.text import count_of

UPLOAD_MAX_BYTES = 5_000_000
UPLOAD_MAX_CHARS = 2_000
UPLOAD_MIN_ROWS = 10
HUB_MAX_ROWS = 50_000  # the most rows a hub dataset gives a run (the page's box says so; the server clamps)


def split_by_hash(prompts, eval_share=0.2):
    """Deterministic train/eval labels: the rows whose prompt hashes lowest are held out (any row order)."""
    digests = [hashlib.sha256(p.encode("utf-8")).hexdigest() for p in prompts]
    n_eval = min(max(1, round(eval_share * len(prompts))), len(prompts) - 1) if len(prompts) > 1 else 0
    held_out = set(sorted(range(len(prompts)), key=lambda i: (digests[i], prompts[i]))[:n_eval])
    return ["eval" if i in held_out else "train" for i in range(len(prompts))]


# The columns a row's prompt and response are read from, first match wins (case-insensitive): our own names,
# then the common instruction-tuning layouts (Alpaca's instruction/input/output, question/answer, completion).
PROMPT_NAMES = ("prompt", "instruction", "question")
RESPONSE_NAMES = ("response", "output", "answer", "completion")


def validate_upload(filename, contents, max_bytes=UPLOAD_MAX_BYTES, max_chars=UPLOAD_MAX_CHARS):
    """Parse an uploaded CSV, JSONL or JSON of prompt/response rows → (frame or None, errors, warnings); never raises."""
    warnings = []
    suffix = Path(filename or "").suffix.lower()
    if suffix not in (".csv", ".jsonl", ".json"):
        return None, [f"`{filename}`: expected a .csv, .jsonl or .json file."], warnings
    if len(contents) > max_bytes:
        return (
            None,
            [f"`{filename}` is {len(contents) / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.0f} MB."],
            warnings,
        )
    try:
        text = contents.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        return (
            None,
            [f"`{filename}` is not UTF-8 text (byte {err.start}); save it as UTF-8 and upload again."],
            warnings,
        )
    if not text.strip():
        return None, [f"`{filename}` is empty."], warnings
    if suffix == ".csv":
        try:
            raw = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
        except (pd.errors.ParserError, pd.errors.EmptyDataError) as err:
            return None, [f"`{filename}` is not valid CSV: {str(err).splitlines()[0]}"], warnings
        records, columns = raw.to_dict("records"), list(raw.columns)
    else:
        records, error = json_records(filename, text, whole=suffix == ".json")
        if error:
            return None, [error], warnings
        columns = list(dict.fromkeys(key for record in records for key in record))  # every record's keys
    return validate_records(f"`{filename}`", records, max_chars, warnings, columns)


def json_records(filename, text, whole=False):
    """JSON lines (one object a line), or in a .json file one array of objects (Alpaca's) → (records, error)."""
    if whole and text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as err:
            return [], f"`{filename}` is not valid JSON: {err.msg} (line {err.lineno})."
        except RecursionError:  # Python's parser recurses once per level of nesting
            return [], f"`{filename}` is nested too deeply to be rows of prompts and responses."
        bad = next((i for i, item in enumerate(items, start=1) if not isinstance(item, dict)), None)
        if bad is not None:
            return [], f"`{filename}`: item {bad} of the JSON array is not an object with named fields."
        return items, None
    records = []
    for line_number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            return [], f"`{filename}` line {line_number} is not valid JSON: {err.msg}."
        except RecursionError:
            return [], f"`{filename}` line {line_number} is nested too deeply to be a row."
        if not isinstance(record, dict):
            return [], f"`{filename}` line {line_number} is not a JSON object."
        records.append(record)
    return records, None


def as_text(value):
    """A field as text: missing is empty, a number (0 included) is its digits."""
    return "" if value is None else str(value).strip()


def with_input(instruction, extra):
    """An instruction as text, with its `input` below it when there is one (Alpaca's prompt layout)."""
    prompt, below = as_text(instruction), as_text(extra)
    return f"{prompt}\n\n{below}" if prompt and below else prompt


def validate_records(source, records, max_chars=UPLOAD_MAX_CHARS, warnings=None, columns=None):
    """The rules every data source passes (upload or hub dataset): prompt/response columns, no empty or
    overlong rows, no duplicates, enough rows → (frame with a split column or None, errors, warnings)."""
    errors, warnings = [], list(warnings or [])
    found = {
        str(key).strip().lower(): key
        for key in (columns if columns is not None else (records[0] if records else {}))
    }
    prompt = next((found[n] for n in PROMPT_NAMES if n in found), None)
    response = next((found[n] for n in RESPONSE_NAMES if n in found), None)
    if prompt is None or response is None:
        missing = [
            f"a {role} column ({code_list(names, 'or')})"
            for role, names, got in (("prompt", PROMPT_NAMES, prompt), ("response", RESPONSE_NAMES, response))
            if got is None
        ]
        one = list(found.values())
        separated = (
            " The header reads as one column: the file seems separated by ';', tab or '|'; save it comma-separated."
            if len(one) == 1 and any(sep in str(one[0]) for sep in (";", "\t", "|"))
            else ""
        )
        return (
            None,
            [f"{source} needs {' and '.join(missing)}; found: {code_list(one)}.{separated}"],
            warnings,
        )
    extra = found.get("input") if str(prompt).strip().lower() == "instruction" else None
    if (str(prompt).strip().lower(), str(response).strip().lower()) != ("prompt", "response"):
        warnings.append(
            f"Used `{prompt}`"
            + (f" (with `{extra}` below it where filled)" if extra is not None else "")
            + f" as the prompt and `{response}` as the response."
        )
    pairs = [
        (with_input(r.get(prompt), r.get(extra) if extra is not None else None), as_text(r.get(response)))
        for r in records
    ]
    if not pairs:
        errors.append(f"{source} has a header but no rows.")
        return None, errors, warnings
    empty = sum(1 for p, r in pairs if not p or not r)
    overlong = sum(1 for p, r in pairs if p and r and max(len(p), len(r)) > max_chars)
    kept = [(p, r) for p, r in pairs if p and r and max(len(p), len(r)) <= max_chars]
    unique = list(dict.fromkeys(kept))
    if empty:
        warnings.append(f"Skipped {count_of(empty, 'row')} with an empty prompt or response.")
    if overlong:
        warnings.append(f"Skipped {count_of(overlong, 'row')} longer than {max_chars} characters.")
    if len(unique) < len(kept):
        warnings.append(f"Dropped {count_of(len(kept) - len(unique), 'duplicate row')}.")
    if len(unique) < UPLOAD_MIN_ROWS:
        errors.append(
            f"{source} has {count_of(len(unique), 'usable row')}; at least {UPLOAD_MIN_ROWS} are needed."
        )
        return None, errors, warnings
    frame = pd.DataFrame(unique, columns=["prompt", "response"])
    frame.insert(0, "task", "upload" if source.startswith("`") else "dataset")
    frame["split"] = split_by_hash(frame["prompt"].tolist())
    return frame, errors, warnings


def looks_like_a_path(dataset_id):
    """True for what `datasets` could read from the server's disk rather than the hub: anything but `owner/name`
    (letters, digits, '-', '_' and '.'), and a name that exists here. One word is refused too: `datasets`
    takes `text`, `csv`, `json`… as its own loaders, which read the files of the server's working folder."""
    hub_id = re.fullmatch(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*", dataset_id) and ".." not in dataset_id
    return not hub_id or Path(dataset_id).exists()


def load_hub_dataset(
    dataset_id, prompt_column, response_column, split="train", max_rows=2000, allow_local=True
):
    """Rows of a Hugging Face dataset (hub id or local folder) through `datasets`, columns mapped to
    prompt/response and checked by validate_records → (frame or None, errors, warnings); never raises for
    a missing dataset, a bad split or column, or no network. Without `allow_local` only a hub id is read."""
    dataset_id = (dataset_id or "").strip()
    if not dataset_id:
        return None, ["Data is set to **hub dataset** but no dataset id was given."], []
    if not allow_local and looks_like_a_path(dataset_id):
        return None, [f"Give a hub dataset id (`owner/name`). {SERVER_PATHS_OFF}"], []
    if dataset_id.endswith(".py"):
        return None, [f"`{dataset_id}`: dataset scripts are not supported (`datasets` 4 and later)."], []
    local = Path(dataset_id).expanduser().is_dir()
    if not local and not hub_status():
        return None, [f"`{dataset_id}`: huggingface.co cannot be reached; the built-in set still works."], []
    import datasets

    try:
        # Streamed: only the first max_rows rows are read, never the whole dataset (a hub dataset can be
        # terabytes, and any viewer may type its id).
        # A viewer's request never carries the server owner's Hugging Face token (private or gated datasets).
        token = {} if allow_local else {"token": False}
        stream = datasets.load_dataset(dataset_id, split=split, streaming=True, **token)
        rows = list(itertools.islice(stream, max(1, min(int(max_rows), HUB_MAX_ROWS))))
    except (OSError, ValueError, ConnectionError) as error:  # not found, gated, bad split, offline
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        return None, [f"`{dataset_id}` could not be loaded with `datasets`: {first}"], []
    columns = stream.column_names or (list(rows[0]) if rows else [])
    missing = [c for c in (prompt_column, response_column) if c not in columns]
    if missing:
        noun = "column" if len(missing) == 1 else "columns"
        found = code_list(columns)
        return None, [f"`{dataset_id}` has no {noun} {code_list(missing)}; its columns are {found}."], []
    # Alpaca's layout: the `input` beside an `instruction` belongs to the prompt, as in an upload
    extra = "input" if prompt_column.lower() == "instruction" and "input" in columns else None
    records = [
        {
            "prompt": with_input(row.get(prompt_column), row.get(extra) if extra else None),
            "response": row.get(response_column),
        }
        for row in rows
    ]
    warnings = [f"Added `input` below `{prompt_column}` where filled."] if extra else []
    frame, errors, more = validate_records(
        f"dataset `{dataset_id}` ({split}, first {len(records)} rows)", records
    )
    return frame, errors, warnings + more


def choose_dataset(settings, form_value):
    """(frame with a split column, errors, warnings) for the chosen data source; uploads are validated.

    A file uploaded while another source is chosen is not used, and a warning says so.
    """
    value = form_value or {}
    files = value.get("upload") or ()
    unused = (
        [
            f"`{files[0].name}` is uploaded but **not used**: the data choice is **{data_source_label(settings)}**. "
            "Choose **upload** to train on it."
        ]
        if files and settings.data_source != "upload"
        else []
    )
    if settings.data_source == "hub":
        frame, errors, warnings = load_hub_dataset(
            value.get("hub_dataset"),
            (value.get("prompt_column") or "instruction").strip(),
            (value.get("response_column") or "output").strip(),
            (value.get("hub_split") or "train").strip(),
            int(value.get("max_rows") or 2000),
            allow_local=settings.server_paths,
        )
        return frame, errors, [*unused, *warnings]
    if settings.data_source != "upload":
        return builtin_examples(), [], unused
    if not files:
        return (
            None,
            [
                "Data is set to **upload** but no file was chosen: upload a CSV, JSONL or JSON file or pick the built-in set."
            ],
            [],
        )
    return validate_upload(files[0].name, files[0].contents)


def data_source_label(settings):
    """The data choice as the form shows it ("built-in (200 examples)", "upload", "hub dataset")."""
    return next(label for label, key in DATA_CHOICES.items() if key == settings.data_source)


def data_source_summary(settings, form_value, dataset):
    """What Train will train on, for the settings line: the source, its file or id, and its rows."""
    value = form_value or {}
    rows = f"{len(dataset):,} rows" if dataset is not None else "not usable: see below"
    if settings.data_source == "upload":
        files = value.get("upload") or ()
        return f"uploaded `{files[0].name}` ({rows})" if files else "upload (no file chosen yet)"
    if settings.data_source == "hub":
        dataset_id = (value.get("hub_dataset") or "").strip()
        split = (value.get("hub_split") or "train").strip()
        return (
            f"hub dataset `{dataset_id}` ({split}, {rows})" if dataset_id else "hub dataset (no id given yet)"
        )
    return f"the built-in set ({rows})"
