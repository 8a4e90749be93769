"""A student distilled without the training data: data impressions (inputs synthesised from the
teacher alone, Nayak et al. 2019) become the transfer set of a projection student.

Run: ``python examples/data_free_student.py`` (needs torch).
"""

from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from nnkd import DataImpressions, NNDistiller
from nnkd.distill import DirichletMixup
from nnkd.teachers import train_mlp_teacher

X, y = load_digits(return_X_y=True)
X = (X / 16.0).astype("float32")
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, stratify=y, random_state=0)
teacher = train_mlp_teacher(X_train, y_train, hidden=(64,), epochs=30, random_state=0)
print(f"teacher test accuracy {(teacher.logits(X_test).argmax(1) == y_test).mean():.3f}")

# From here on only the teacher is used: no training row, no label. Inputs stay in [0, 1],
# the range the teacher's inputs take.
impressions = DataImpressions(teacher, n_per_class=100, steps=300, lr=0.05, input_range=(0.0, 1.0), random_state=0)
X_free, T_free = impressions.generate()                   # inputs and their Dirichlet soft targets
print(f"{len(X_free)} impressions; the teacher agrees with {impressions.target_agreement_:.0%} of their targets")

# Mixtures of several impressions look more like real rows than single ones (DirichletMixup).
student = NNDistiller(teacher, space="projection", size_budget_kb=16, temperature=1.0,
                      augment=DirichletMixup(n_rows=8), max_epochs=20, random_state=0).fit(X_free)
print(f"data-free student: {student.size_bytes_ / 1000:.1f} kB, test accuracy {student.score(X_test, y_test):.3f}, "
      f"fidelity to the teacher {student.fidelity(X_test):.3f}")
