"""Students: the small, NumPy-only inference artifacts every fitted nnkd estimator exports.

One protocol (:class:`Student`: ``predict``, ``predict_proba``, ``explain``, ``describe``,
``size_bytes``, ``save``) and one class per kind:

- :class:`PrototypeStudent` (``"knn"``): labelled prototypes + an Index, kernel-weighted votes;
- :class:`PrototypeRegressor` (``"knn_regressor"``): prototypes with targets;
- :class:`ProjectionStudent` (``"rbf"``): learned projection + RBF prototypes (ProtoNN);
- :class:`TreeStudent` (``"tree"``): a soft decision tree.

:func:`load_student` reads any of them back. This package never imports torch.
"""

from nnkd.student._base import DTYPES, Student, load_student, read_student_metadata, register_kind, student_kinds
from nnkd.student._projection import ProjectionStudent, projection_size_bytes
from nnkd.student._prototypes import PrototypeRegressor, PrototypeStudent, cell_layout
from nnkd.student._tree import TREE_INFERENCE, TreeStudent

__all__ = ["DTYPES", "TREE_INFERENCE", "ProjectionStudent", "PrototypeRegressor", "PrototypeStudent", "Student",
           "TreeStudent", "cell_layout", "load_student", "projection_size_bytes", "read_student_metadata",
           "register_kind", "student_kinds"]
