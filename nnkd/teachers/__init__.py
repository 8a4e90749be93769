"""Teacher adapters: embeddings and tempered soft labels from a model, in batches.

``TorchTeacher`` loads torch on import of this package's attribute only, so
``from nnkd.teachers import CallableTeacher`` works without torch.
"""

from __future__ import annotations

import importlib

from nnkd.teachers._base import Teacher, softmax
from nnkd.teachers._callable import CallableTeacher
from nnkd.teachers._sklearn import SklearnTeacher

__all__ = ["CallableTeacher", "SklearnTeacher", "Teacher", "TorchTeacher", "softmax", "train_mlp_teacher"]


def __getattr__(name):
    if name == "TorchTeacher":
        return importlib.import_module("nnkd.teachers._torch").TorchTeacher
    if name == "train_mlp_teacher":
        return importlib.import_module("nnkd.teachers._mlp").train_mlp_teacher
    raise AttributeError(f"module 'nnkd.teachers' has no attribute {name!r}")
