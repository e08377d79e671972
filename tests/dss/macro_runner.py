"""Run a plugin macro the way DSS does, against the `dataiku` shim and the DSS stand-in.

DSS reads `python-runnables/<id>/runnable.json`, fills the form with each param's `defaultValue`,
loads `runnable.py`, instantiates its single `Runnable` subclass with `(project_key, config,
plugin_config)` and calls `run(progress_callback)`. `run_macro` does the same, loading the file
fresh each time, and checks the result against the declared `resultType`.

Use with the `dataiku_shim` fixture, which points `dataiku.api_client()` at the stand-in.
"""
from __future__ import annotations

import importlib.util
import itertools
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, NamedTuple

ROOT = Path(__file__).resolve().parents[2]
RUNNABLES = ROOT / "python-runnables"
PYTHON_LIB = ROOT / "python-lib"
SHIM = ROOT / "tests" / "dataiku_shim"
PROGRESS_UNITS = ("SIZE", "FILES", "RECORDS", "NONE")
_counter = itertools.count()


class MacroRun(NamedTuple):
    """What the macro returned, and every value it reported through progress_callback."""

    result: Any
    progress: list[Any]


def load_descriptor(macro_id: str, runnables: Path = RUNNABLES) -> dict:
    """runnable.json as a dict; AssertionError naming the file if it is not a valid JSON object."""
    path = runnables / macro_id / "runnable.json"
    assert path.is_file(), f"{path} is missing"
    try:
        descriptor = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise AssertionError(f"{path} is not valid JSON: {exc}") from None
    assert isinstance(descriptor, dict), f"{path} must hold a JSON object"
    return descriptor


def form_defaults(descriptor: dict) -> dict:
    """The config DSS's macro form starts from: each param's defaultValue, when it has one."""
    return {p["name"]: p["defaultValue"] for p in descriptor.get("params", []) if "defaultValue" in p}


def _load_runnable_class(path: Path, module_name: str) -> type:
    from dataiku.runnables import Runnable

    assert path.is_file(), f"{path} is missing"
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    found = [
        obj for obj in vars(module).values()
        if isinstance(obj, type) and issubclass(obj, Runnable) and obj is not Runnable
        and obj.__module__ == module_name
    ]
    assert len(found) == 1, f"{path} must define exactly one Runnable subclass, found {[c.__name__ for c in found]}"
    return found[0]


def _check_result(descriptor: dict, result: Any) -> None:
    from dataiku.runnables import ResultTable

    kind = descriptor.get("resultType")
    if kind == "RESULT_TABLE":
        assert isinstance(result, ResultTable), f"resultType RESULT_TABLE but run() returned {type(result).__name__}"
    elif kind in ("HTML", "URL"):
        assert isinstance(result, str), f"resultType {kind} but run() returned {type(result).__name__}"


def run_macro(
    macro_id: str,
    config: dict,
    plugin_config: dict | None = None,
    project_key: str = "PROJ",
    progress: Callable[[Any], None] | None = None,
    runnables: Path = RUNNABLES,
) -> MacroRun:
    """Run python-runnables/<macro_id> with `config` over the form defaults; `progress` also sees each value.

    `runnables` is the folder holding the macros (the plugin's python-runnables by default).
    """
    descriptor = load_descriptor(macro_id, runnables)
    full_config = {**form_defaults(descriptor), **config}
    added = [str(p) for p in (SHIM, PYTHON_LIB) if str(p) not in sys.path]
    sys.path[:0] = added
    old_project = os.environ.get("DKU_CURRENT_PROJECT_KEY")
    os.environ["DKU_CURRENT_PROJECT_KEY"] = project_key
    module_name = f"_macro_{macro_id.replace('-', '_')}_{next(_counter)}"
    try:
        cls = _load_runnable_class(runnables / macro_id / "runnable.py", module_name)
        runnable = cls(project_key, full_config, dict(plugin_config or {}))
        target = runnable.get_progress_target()
        if target is not None:
            assert isinstance(target, tuple) and len(target) == 2 and target[1] in PROGRESS_UNITS, (
                f"get_progress_target() must return None or (target, unit in {PROGRESS_UNITS}), got {target!r}"
            )
        seen: list[Any] = []

        def progress_callback(value: Any) -> None:
            seen.append(value)
            if progress is not None:
                progress(value)

        result = runnable.run(progress_callback)
        _check_result(descriptor, result)
        return MacroRun(result, seen)
    finally:
        sys.modules.pop(module_name, None)
        for path in added:
            if path in sys.path:
                sys.path.remove(path)
        if old_project is None:
            os.environ.pop("DKU_CURRENT_PROJECT_KEY", None)
        else:
            os.environ["DKU_CURRENT_PROJECT_KEY"] = old_project
