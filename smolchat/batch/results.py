"""A batch job's results file: JSON Lines or CSV, one record per file, appended whole.

Each record is written with one ``write`` on a file opened for appending, then flushed to
the disk: a job killed at any moment leaves only whole records (a power cut may leave a
half-written last one, which is dropped when the job starts again). On a restart the
records already there say which files are done, by path and content hash.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

from smolchat.errors import SmolChatError
from smolchat.files import write_atomically

CSV_STATS = ("prompt_tokens", "generated_tokens", "seconds")


class ResultsFile:
    """The results of one job. ``columns``: for CSV, the answer's fields to give a column
    each (a schema's top-level properties); without them the answer is one ``result`` column."""

    def __init__(self, path: Path | None, *, columns: tuple[str, ...] = ()) -> None:
        self.path = path
        self.kind = "csv" if path is not None and path.suffix.lower() == ".csv" else "jsonl"
        self.columns = columns
        self._header = ("file", "sha256", *(columns or ("result",)), "error", *CSV_STATS) if self.kind == "csv" else ()
        self._fd: int | None = None

    def open(self) -> dict[str, str]:
        """Open for appending; the files already answered, as path -> content hash."""
        if self.path is None:
            return {}
        done = self._read_done() if self.path.exists() else {}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as e:
            raise SmolChatError(f"{self.path}: cannot be written ({e.strerror or e}).") from None
        if self.kind == "csv" and os.fstat(self._fd).st_size == 0:
            self._append(self._csv_row(self._header))
        return done

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def write(self, record: dict) -> None:
        """Append one file's record: ``file``, ``sha256`` and ``result`` with ``stats``, or ``error``."""
        if self.kind == "jsonl":
            data = json.dumps(record, ensure_ascii=False) + "\n"
        else:
            data = self._csv_row(self._csv_values(record))
        if self._fd is None:  # no file: the records go to standard output
            print(data, end="", flush=True)
            return
        self._append(data)

    def _append(self, data: str) -> None:
        assert self._fd is not None
        raw = data.encode("utf-8")
        try:
            written = os.write(self._fd, raw)
            while written < len(raw):  # only ever short on a full disk, which then raises
                written += os.write(self._fd, raw[written:])
            os.fsync(self._fd)
        except OSError as e:
            raise SmolChatError(
                f"{self.path}: cannot be written ({e.strerror or e}). Free some space, then run the same "
                "command again: the files already answered are kept."
            ) from None

    # -- CSV -------------------------------------------------------------------------------

    @staticmethod
    def _csv_row(values) -> str:
        out = io.StringIO()
        # CSV's own line ends (RFC 4180): the writer then quotes any answer holding a lone \r
        # too, which with \n line ends would end the row early in every reader.
        csv.writer(out, lineterminator="\r\n").writerow(values)
        return out.getvalue()

    def _csv_values(self, record: dict) -> list:
        result = record.get("result")
        if self.columns:
            fields = result if isinstance(result, dict) else {}
            answer = [_cell(fields.get(c)) for c in self.columns]
        else:
            answer = [_cell(result)]
        stats = record.get("stats") or {}
        return [
            record["file"],
            record["sha256"],
            *answer,
            record.get("error", ""),
            stats.get("prompt_tokens", ""),
            stats.get("generated_tokens", ""),
            stats.get("seconds", ""),
        ]

    # -- resuming --------------------------------------------------------------------------

    def _read_done(self) -> dict[str, str]:
        assert self.path is not None
        try:
            data = self.path.read_bytes()
        except OSError as e:
            raise SmolChatError(f"{self.path}: cannot be read ({e.strerror or e}).") from None
        text = data.decode("utf-8", errors="replace")
        whole = text if text.endswith("\n") or not text else text[: text.rfind("\n") + 1]
        done: dict[str, str] = {}
        if self.kind == "jsonl":
            for line in whole.splitlines():
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict) and isinstance(record.get("file"), str):
                    done[record["file"]] = str(record.get("sha256", ""))
        else:
            try:
                rows = list(csv.reader(io.StringIO(whole, newline="")))
            except csv.Error as e:
                raise SmolChatError(
                    f"{self.path} is damaged ({e}); give another --out, or move it away to start over."
                ) from None
            if rows and tuple(rows[0]) != self._header:
                raise SmolChatError(
                    f"{self.path} holds other columns ({', '.join(rows[0][:6])}…) than this job writes: "
                    "give another --out, or the same prompt and schema as the job that wrote it."
                )
            for row in rows[1:]:
                if len(row) >= 2:
                    done[row[0]] = row[1]
        if whole != text:  # a record cut off by a crash: dropped, to be answered again
            write_atomically(self.path, whole.encode("utf-8"))
        return done


def schema_columns(answer_format) -> tuple[str, ...]:
    """The CSV columns a schema's answers get: its top-level properties (none: one ``result``)."""
    schema = answer_format.schema if answer_format is not None else None
    properties = schema.get("properties") if isinstance(schema, dict) else None
    return tuple(str(k) for k in properties) if isinstance(properties, dict) else ()


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)
