"""`dataiku.runnables` for tests: the macro base class and the RESULT_TABLE result object.

Same contract as in DSS: DSS instantiates the `Runnable` subclass of runnable.py with
`(project_key, config, plugin_config)`, may call `get_progress_target()`, then calls
`run(progress_callback)` and shows what it returns. `ResultTable` is stricter than DSS on
purpose: a row whose length differs from the column count is rejected (the upstream plugin
shipped that bug, and DSS renders it silently wrong).
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

COLUMN_TYPES = ("STRING", "STRING_LIST")
PROGRESS_UNITS = ("SIZE", "FILES", "RECORDS", "NONE")


class Runnable:
    """Base class of a macro."""

    def __init__(self, project_key: str, config: dict, plugin_config: dict) -> None:
        self.project_key = project_key
        self.config = config
        self.plugin_config = plugin_config

    def get_progress_target(self) -> tuple[int, str] | None:
        """None, or (target, unit) with unit in SIZE, FILES, RECORDS, NONE."""
        return None

    def run(self, progress_callback: Callable[[int], None]) -> Any:
        raise NotImplementedError("a macro must implement run(progress_callback)")


class ResultTable:
    """A table result: typed columns, then rows in column order."""

    def __init__(self) -> None:
        self.name: str | None = None
        self.columns: list[dict[str, str]] = []
        self.records: list[list[Any]] = []

    def set_name(self, name: str) -> None:
        self.name = name

    def add_column(self, column_id: str, label: str, column_type: str) -> None:
        if column_type not in COLUMN_TYPES:
            raise ValueError(f"column {column_id!r}: type {column_type!r} is not one of {', '.join(COLUMN_TYPES)}")
        if any(c["id"] == column_id for c in self.columns):
            raise ValueError(f"column {column_id!r} is defined twice")
        if self.records:
            raise ValueError(f"column {column_id!r} added after rows: earlier rows would be too short")
        self.columns.append({"id": column_id, "label": label, "type": column_type})

    def add_record(self, record: Sequence[Any]) -> None:
        if isinstance(record, (str, bytes, dict)) or not isinstance(record, Sequence):
            raise TypeError(f"a record is a list of cells in column order, got {type(record).__name__}")
        if len(record) != len(self.columns):
            raise ValueError(
                f"record has {len(record)} cell(s) but the table has {len(self.columns)} column(s) "
                f"({', '.join(c['id'] for c in self.columns)}): {list(record)!r}"
            )
        for column, cell in zip(self.columns, record):
            if column["type"] == "STRING_LIST" and cell is not None and not isinstance(cell, (list, tuple)):
                raise TypeError(f"column {column['id']!r} is STRING_LIST but got {type(cell).__name__}")
        self.records.append(list(record))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "columns": [dict(c) for c in self.columns],
                "records": [list(r) for r in self.records]}

    def rows_as_dicts(self) -> list[dict[str, Any]]:
        """Each row keyed by column id, for readable test assertions."""
        ids = [c["id"] for c in self.columns]
        return [dict(zip(ids, r)) for r in self.records]
