"""Datasets of prompts for `routelens analyze`: a text file (one prompt a line), JSONL (a text field
and an optional label field) or a Hugging Face `datasets` folder saved with `save_to_disk`.

Read lazily and in index ranges (shards), so memory stays bounded whatever the dataset's size: a
text or JSONL file is scanned once for its line offsets (8 bytes a prompt), a `datasets` folder is
memory-mapped Arrow. The shipped sample (`SAMPLE`) is short original prose, code and French,
labelled, written for routelens and placed in the public domain (CC0).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from ..errors import InvalidArgumentError

SAMPLE = Path(__file__).with_name("sample.jsonl")
MAX_PROMPT_CHARS = 100_000


@dataclass
class Prompt:
    index: int
    text: str
    label: str


class Dataset:
    """The prompts of `path`; `text_field` / `label_field` name the JSONL or `datasets` columns."""

    def __init__(self, path: str | Path, *, text_field: str = "text", label_field: str = "label") -> None:
        self.path = Path(path).expanduser()
        self.text_field, self.label_field = text_field, label_field
        if not self.path.exists():
            raise InvalidArgumentError(f"no dataset at {str(self.path)!r}: give a text file (one prompt a line), a "
                                       "JSONL file or a folder saved by datasets' save_to_disk")
        self._hf: Any = None
        self._offsets: list[int] = []
        if self.path.is_dir():
            self.kind = "datasets"
            try:
                from datasets import load_from_disk
            except ImportError:
                raise InvalidArgumentError("reading a datasets folder needs the `datasets` package: "
                                           "pip install datasets") from None
            try:
                self._hf = load_from_disk(str(self.path))
            except Exception as err:  # not a saved dataset
                raise InvalidArgumentError(f"{str(self.path)!r} is not a folder saved by datasets' save_to_disk "
                                           f"({type(err).__name__}); give that, a text file or a JSONL file") from None
            if hasattr(self._hf, "keys") and not hasattr(self._hf, "column_names"):  # a DatasetDict: its first split
                self._hf = self._hf[sorted(self._hf.keys())[0]]
            if text_field not in self._hf.column_names:
                raise InvalidArgumentError(f"the dataset has no {text_field!r} column (it has "
                                           f"{', '.join(self._hf.column_names)}); name the text column with --text-field")
        else:
            self.kind = "jsonl" if self.path.suffix.lower() in (".jsonl", ".ndjson") else "text"
            offset = 0
            with self.path.open("rb") as f:
                for line in f:
                    if line.strip():
                        self._offsets.append(offset)
                    offset += len(line)

    def __len__(self) -> int:
        return len(self._hf) if self._hf is not None else len(self._offsets)

    def fingerprint(self) -> str:
        """What identifies the dataset's content for a resumed run: size and a hash of its start and end."""
        h = hashlib.sha256(f"{self.kind}|{len(self)}|{self.text_field}|{self.label_field}".encode())
        for p in list(self.prompts(0, min(3, len(self)))) + list(self.prompts(max(0, len(self) - 3), len(self))):
            h.update(f"{p.index}|{p.label}|{p.text}".encode())
        return h.hexdigest()[:16]

    def prompts(self, start: int, stop: int) -> Iterator[Prompt]:
        """Prompts start..stop-1, read now."""
        stop = min(stop, len(self))
        if self._hf is not None:
            rows = self._hf[start:stop]
            labels = rows.get(self.label_field, [None] * (stop - start))
            for k, text in enumerate(rows[self.text_field]):
                yield self._prompt(start + k, text, labels[k])
            return
        with self.path.open("rb") as f:
            for i in range(start, stop):
                f.seek(self._offsets[i])
                line = f.readline().decode("utf-8", errors="replace").rstrip("\r\n")
                if self.kind == "text":
                    yield self._prompt(i, line, None)
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as err:
                    raise InvalidArgumentError(f"line {i + 1} of {self.path.name} is not JSON ({err.msg}); fix it or "
                                               "give a text file with one prompt a line") from None
                if not isinstance(row, dict) or self.text_field not in row:
                    raise InvalidArgumentError(f"line {i + 1} of {self.path.name} has no {self.text_field!r} field; "
                                               "name the text field with --text-field")
                yield self._prompt(i, row[self.text_field], row.get(self.label_field))

    def _prompt(self, index: int, text: Any, label: Any) -> Prompt:
        if not isinstance(text, str) or not text.strip():
            raise InvalidArgumentError(f"prompt {index} of {self.path.name} is empty or not text; remove it")
        if len(text) > MAX_PROMPT_CHARS:
            raise InvalidArgumentError(f"prompt {index} has {len(text)} characters (at most {MAX_PROMPT_CHARS}); "
                                       "split or shorten it")
        return Prompt(index, text, "" if label is None else str(label))
