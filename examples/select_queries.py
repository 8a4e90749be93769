"""Spend a teacher's labelling budget where it teaches most: each round, ``select_queries``
picks the pool rows to send to an expensive teacher from the student's current uncertainty,
allowing for the teacher's own error rate (robust active distillation, Baykal et al. 2023).

Run: ``python examples/select_queries.py``. The "teacher" is a random forest that answers one
row at a time, standing in for a costly model or a human.
"""

import numpy as np
from sklearn.datasets import load_digits
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import train_test_split

from nnkd import KernelKNNClassifier
from nnkd.distill import select_queries

X, y = load_digits(return_X_y=True)
X_pool, X_test, y_pool, y_test = train_test_split(X, y, test_size=0.3, stratify=y, random_state=0)
rng = np.random.default_rng(0)
labelled = rng.choice(len(X_pool), 200, replace=False)
teacher = RandomForestClassifier(random_state=0).fit(X_pool[labelled], y_pool[labelled])
teacher_error = 1 - teacher.score(X_test[:100], y_test[:100])       # measured on a few labelled rows

asked = list(rng.choice(len(X_pool), 50, replace=False))           # a random start
answers = list(teacher.predict(X_pool[asked]))
for round_ in range(4):
    student = KernelKNNClassifier(n_neighbors=5, kernel="triangular").fit(X_pool[asked], answers)
    print(f"round {round_}: {len(asked)} teacher queries, student test accuracy "
          f"{student.score(X_test, y_test):.3f}")
    rest = np.setdiff1d(np.arange(len(X_pool)), asked)
    picked = rest[select_queries(student.predict_proba(X_pool[rest]), 50, teacher_error=teacher_error,
                                 random_state=round_)]
    asked += picked.tolist()
    answers += teacher.predict(X_pool[picked]).tolist()
