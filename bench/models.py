"""The model under test: the shipped one when the store has it, else a stand-in of the same shape.

Speed does not depend on the weights, only on the architecture, so a stand-in with the digits
preset's backbone and untrained (seeded) weights measures the same thing; the results say
which one was used.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from jem import JEM, create_backbone
from jem.ood import ood_scores
from model_store import ModelNotFound, ModelStore, ScoreCalibration
from model_store.store import default_root
from training.data import Dataset
from training.presets import PRESETS

__all__ = ["ModelSource", "digit_images", "locate_model"]

STANDIN_SEED = 0


@dataclass(frozen=True)
class ModelSource:
    store: Path
    name: str
    ref: str  # "name:version", pinned for the whole run
    origin: str  # "store" or "stand-in"
    backbone: dict[str, object]
    trained: dict[str, object]  # from the manifest: steps, duration, test accuracy

    def to_dict(self) -> dict[str, object]:
        return {
            "store": str(self.store),
            "ref": self.ref,
            "origin": self.origin,
            "backbone": self.backbone,
            "trained": self.trained,
        }


def _standin(root: Path, name: str, data: Dataset) -> None:
    kwargs = dict(PRESETS["digits-jem"]["backbone_kwargs"])
    torch.manual_seed(STANDIN_SEED)
    model = JEM(create_backbone("digits_cnn", **kwargs)).eval()
    # Calibration from the validation split, so the service does the same per-image verdict
    # work (thresholds, percentiles) as for a calibrated shipped model.
    scores = ood_scores(model, data.val.inputs())
    calibration = {
        "temperature": 1.0,
        "fitted_on": {"split": "val", "n": len(data.val), "seed": STANDIN_SEED},
        "scores": {
            k: ScoreCalibration.from_scores(v.tolist()).model_dump() for k, v in scores.items()
        },
    }
    ModelStore(root).save(
        name,
        model,
        {
            "backbone": {"name": "digits_cnn", "kwargs": kwargs},
            "input_spec": data.spec.to_dict(),
            "class_names": data.class_names,
            "training": {"note": "benchmark stand-in: untrained weights", "seed": STANDIN_SEED},
            "metrics": {},
            "calibration": calibration,
            "sampling": {"steps": 20, "step_size": 1.0, "noise_std": 0.01},
        },
    )


def locate_model(
    store: Path | None, name: str, scratch: Path, data: Dataset, *, standin: bool = False
) -> ModelSource:
    """`name` from `store`; without `store`, from the shipped store, or a stand-in built in
    `scratch` if the shipped store lacks it. With `standin`, always the stand-in."""
    root, origin = (store if store is not None else default_root()), "store"
    try:
        if standin:
            raise ModelNotFound(name, scratch, [])
        ref = ModelStore(root).resolve(name)
    except ModelNotFound:
        if store is not None and not standin:
            raise
        root, origin = scratch / "store", "stand-in"
        _standin(root, name, data)
        ref = ModelStore(root).resolve(name)
    manifest = ModelStore(root).verify(str(ref))
    backbone = manifest.backbone.model_dump(mode="json")
    trained: dict[str, object] = {
        "step": manifest.training.get("step"),
        "duration_s": manifest.training.get("duration_s"),
        "test_accuracy": manifest.metrics.get("test_accuracy"),
    }
    return ModelSource(root, name, str(ref), origin, backbone, trained)


def digit_images(data: Dataset, n: int) -> list[np.ndarray]:
    """`n` test-split digits as uint8 (8, 8) arrays, the way an upload carries them."""
    images = data.test.images.numpy()[..., 0]
    return [images[i % len(images)] for i in range(n)]
