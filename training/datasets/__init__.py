"""Builders that write real data sets to disk as image folders (``python -m training data``).

Each builder writes ``OUT/train/<class>/<image>.png`` (read by the ``folder`` data set, which makes
the seeded train/validation/test split), held-out groups as ``OUT/ood/{val,test}/<group>/`` for
``screen`` and ``evaluate --ood``, and ``OUT/train/dataset.json``: where the images came from
(package versions, file hashes), what was left out and why. The folder loader copies that record
into every model manifest trained on the folder (``training.split.source``).
"""

from training.datasets.emoji import EmojiBuildError, build_emoji_dataset, parse_emoji_test

__all__ = ["EmojiBuildError", "build_emoji_dataset", "parse_emoji_test"]
