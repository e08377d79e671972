"""The options of a distributed XGBoost training run, typed and checked before anything runs.

Pure: no I/O. `problems()` lists every bad field at once (Problem(field, message)), and
`validated()` raises them as one PreflightError, so a user fixes all of them in one go.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field, fields
from typing import Any, Mapping, Sequence

from dku_ray.errors import PreflightError, Problem

# Params that have a dedicated option, or that the job sets itself.
_PARAMS_WITH_OPTIONS = {
    "num_boost_round": "num_rounds", "n_estimators": "num_rounds", "num_round": "num_rounds",
    "early_stopping_rounds": "early_stopping_rounds",
}
_RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_RAY_REQUIREMENT = re.compile(r"^\s*ray(\s*$|[\[=<>!~ ;@])", re.IGNORECASE)


@dataclass(frozen=True)
class TrainingOptions:
    """What to train and with which resources. Defaults suit a first run on a small cluster."""

    params: Mapping[str, Any] = field(default_factory=dict)
    num_rounds: int = 100
    early_stopping_rounds: int | None = None
    validation_fraction: float = 0.1  # ignored when a separate validation dataset is given
    num_workers: int = 2
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    checkpoint_every: int = 10  # rounds between checkpoints; 0: only the final one
    keep_checkpoints: int = 2
    features: tuple[str, ...] | None = None  # None: every column but the label
    drop_features: tuple[str, ...] = ()
    seed: int = 0
    max_categories: int = 1000
    credentials_margin_s: float = 300.0  # stop training this long before the S3 credentials expire
    assumed_sts_lifetime_s: float | None = 3600.0  # STS credentials whose expiry DSS does not tell
    timeout_s: float | None = None  # stop the job after this long (None: no limit)
    start_timeout_s: float = 600.0  # the job fails if its workers cannot all start within this time
    pip: tuple[str, ...] | None = None  # extra pinned packages for the job; None: use the image as is
    run_name: str | None = None
    progress_interval_s: float = 0.5

    def __post_init__(self) -> None:
        for name in ("features", "drop_features", "pip"):
            value = getattr(self, name)
            if isinstance(value, str):
                object.__setattr__(self, name, (value,))
            elif value is not None and not isinstance(value, tuple):
                object.__setattr__(self, name, tuple(value))
        object.__setattr__(self, "params", dict(self.params or {}))

    @classmethod
    def names(cls) -> set[str]:
        return {f.name for f in fields(cls)}

    def problems(self) -> list[Problem]:
        out: list[Problem] = []

        def bad(name: str, message: str) -> None:
            out.append(Problem(name, message))

        def integer(name: str, minimum: int, optional: bool = False) -> None:
            value = getattr(self, name)
            if value is None and optional:
                return
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                bad(name, f"must be an integer >= {minimum}, got {value!r}")

        def number(name: str, low: float, high: float = math.inf, optional: bool = False, open_low: bool = False) -> None:
            value = getattr(self, name)
            if value is None and optional:
                return
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or value < low or (open_low and value == low) or value > high:
                span = f"{'>' if open_low else '>='} {low}" + (f" and <= {high}" if high != math.inf else "")
                bad(name, f"must be a number {span}, got {value!r}")

        integer("num_rounds", 1)
        integer("early_stopping_rounds", 1, optional=True)
        number("validation_fraction", 0.0, 0.5)
        integer("num_workers", 1)
        number("cpus_per_worker", 0.0, open_low=True)
        number("gpus_per_worker", 0.0)
        integer("checkpoint_every", 0)
        integer("keep_checkpoints", 1)
        integer("seed", 0)
        integer("max_categories", 2)
        number("credentials_margin_s", 0.0)
        number("assumed_sts_lifetime_s", 60.0, optional=True)
        number("timeout_s", 0.0, optional=True, open_low=True)
        number("progress_interval_s", 0.0)
        number("start_timeout_s", 1.0)
        out += self._param_problems()
        out += self._column_problems()
        if self.pip is not None:
            for req in self.pip:
                if _RAY_REQUIREMENT.match(req):
                    bad("pip", f"{req!r}: never install Ray in the job; it must be the cluster's own Ray")
                elif "==" not in req and "@" not in req:
                    bad("pip", f"{req!r} is not pinned; pin it (e.g. 'xgboost-cpu==3.2.0') so every run gets the same")
        if self.run_name is not None and not _RUN_NAME.match(self.run_name):
            bad("run_name", "use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
        return out

    def _param_problems(self) -> list[Problem]:
        out = []
        for key in self.params:
            if not isinstance(key, str):
                out.append(Problem("params", f"keys must be strings, got {key!r}"))
            elif key in _PARAMS_WITH_OPTIONS:
                out.append(Problem(f"params.{key}", f"use the option {_PARAMS_WITH_OPTIONS[key]}= instead"))
        objective = self.params.get("objective")
        if objective is not None and not isinstance(objective, str):
            out.append(Problem("params.objective", f"must be a string such as 'binary:logistic', got {objective!r}"))
        try:
            json.dumps(self.params)
        except (TypeError, ValueError) as exc:
            out.append(Problem("params", f"must be JSON values (numbers, strings, lists): {exc}"))
        return out

    def _column_problems(self) -> list[Problem]:
        out = []
        if self.features is not None:
            if not self.features:
                out.append(Problem("features", "is empty; leave it None to use every column but the label"))
            both = sorted(set(self.features) & set(self.drop_features))
            if both:
                out.append(Problem("drop_features", f"{both} are also in features; list each column in one only"))
        for name in ("features", "drop_features"):
            for col in getattr(self, name) or ():
                if not isinstance(col, str) or not col:
                    out.append(Problem(name, f"column names must be non-empty strings, got {col!r}"))
        return out

    def validated(self) -> "TrainingOptions":
        problems = self.problems()
        if problems:
            raise PreflightError(problems)
        return self


def options_from_kwargs(base: TrainingOptions | None = None, **kwargs: Any) -> TrainingOptions:
    """TrainingOptions from keyword arguments, unknown names reported as problems (not a TypeError)."""
    unknown = sorted(set(kwargs) - TrainingOptions.names())
    if unknown:
        raise PreflightError([Problem(name, f"unknown option; known options are {sorted(TrainingOptions.names())}")
                              for name in unknown])
    values = {f.name: getattr(base, f.name) for f in fields(TrainingOptions)} if base is not None else {}
    values.update({k: v for k, v in kwargs.items()})
    return TrainingOptions(**values)


def requires_validation(options: TrainingOptions, has_validation_dataset: bool) -> list[Problem]:
    """Early stopping needs validation rows, from the fraction or a separate dataset."""
    if options.early_stopping_rounds and not has_validation_dataset and options.validation_fraction <= 0:
        return [Problem("early_stopping_rounds", "needs validation data: set validation_fraction > 0 or pass "
                                                 "validation_dataset=")]
    return []


def column_names(value: Sequence[str] | str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    return (value,) if isinstance(value, str) else tuple(value)
