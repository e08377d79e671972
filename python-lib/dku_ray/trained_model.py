"""A trained model read back from its run directory: the booster plus its model card.

The card says which columns to feed, in which order, the category lists of string features and
how class labels were encoded, so scoring needs nothing from the training job.
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from dku_ray.locations import Location, read_bytes

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import xgboost

MODEL_FILE = "model.ubj"
CARD_FILE = "model_card.json"


class TrainedModel:
    """Score pandas DataFrames with a model trained by `dku_ray.submit()`."""

    def __init__(self, booster: "xgboost.Booster", card: dict[str, Any]) -> None:
        self.booster = booster
        self.card = card

    @classmethod
    def load(cls, run_dir: Location) -> "TrainedModel":
        import xgboost

        card = json.loads(read_bytes(run_dir, CARD_FILE))
        booster = xgboost.Booster()
        booster.load_model(bytearray(read_bytes(run_dir, card.get("model_file") or MODEL_FILE)))
        return cls(booster, card)

    @property
    def features(self) -> list[str]:
        return [f["name"] for f in self.card["features"]]

    @property
    def classes(self) -> list[Any] | None:
        return self.card["label"].get("classes")

    def prepare(self, frame: "pd.DataFrame") -> "pd.DataFrame":
        """The card's columns in training order; strings as categoricals with the training categories."""
        import pandas as pd

        missing = [c for c in self.features if c not in frame.columns]
        if missing:
            raise KeyError(f"columns {missing} are missing; the model needs {self.features}")
        out = pd.DataFrame(index=frame.index)
        for feature in self.card["features"]:
            name = feature["name"]
            if feature["kind"] == "categorical":
                out[name] = pd.Categorical(frame[name].astype("object"), categories=feature["categories"])
            else:
                out[name] = pd.to_numeric(frame[name], errors="coerce").astype("float64")
        return out

    def _raw(self, frame: "pd.DataFrame") -> "np.ndarray":
        import xgboost

        return self.booster.predict(xgboost.DMatrix(self.prepare(frame), enable_categorical=True))

    def predict_proba(self, frame: "pd.DataFrame") -> "np.ndarray":
        """Class probabilities, one column per entry of `classes`."""
        import numpy as np

        task = self.card["label"]["task"]
        raw = self._raw(frame)
        if task == "binary":
            return np.column_stack([1.0 - raw, raw])
        if task == "multiclass":
            return raw.reshape(len(frame), -1)
        raise ValueError("predict_proba() is for classifiers; this model is a regression, use predict()")

    def predict(self, frame: "pd.DataFrame") -> "np.ndarray":
        """Predicted labels in their original values (classes), or the predicted quantity."""
        import numpy as np

        if self.card["label"]["task"] == "regression":
            return self._raw(frame)
        index = self.predict_proba(frame).argmax(axis=1)
        return np.asarray(self.classes, dtype=object)[index]
