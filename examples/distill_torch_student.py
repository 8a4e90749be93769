"""Distil a PyTorch MLP into a 16 kB nearest-prototype student, explain one prediction, save it,
and predict with NumPy only.

Run: ``python examples/distill_torch_student.py`` (needs torch, the CPU build: ``pip install
torch==2.13.0``). Writes ``digits-16kb/`` in the current directory.
"""

import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from nnkd import NNDistiller, load_student
from nnkd.teachers import TorchTeacher

X, y = load_digits(return_X_y=True)
X = (X / 16.0).astype("float32")
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, stratify=y, random_state=0)

# Any torch.nn.Module is a teacher; here a small MLP trained for a few seconds.
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
inputs, targets = torch.from_numpy(X_train), torch.from_numpy(y_train)
for epoch in range(150):
    optimizer.zero_grad()
    torch.nn.functional.cross_entropy(model(inputs), targets).backward()
    optimizer.step()
model.eval()
teacher = TorchTeacher(model)
print(f"teacher test accuracy {(teacher.logits(X_test).argmax(1) == y_test).mean():.3f}")

# The recipe (storage type, projection width, temperature, noise, epochs) is chosen inside fit
# on a held-out 10 % of the rows; max_epochs caps training to keep this example short.
dist = NNDistiller(teacher, space="projection", size_budget_kb=16, max_epochs=30, random_state=0)
dist.fit(X_train, y_train)
print(f"student: {dist.size_bytes_ / 1000:.1f} kB, test accuracy {dist.score(X_test, y_test):.3f}, "
      f"fidelity to the teacher {dist.fidelity(X_test):.3f}")
print("recipe chosen in fit:", {k: v for k, v in dist.recipe_.items() if k != "candidates"})
print(f"({len(dist.recipe_['candidates'])} candidate recipes scored on {dist.recipe_['validation_rows']} held-out rows)")
print(f"held-out bound on its error: {dist.bound_:.3f} ({dist.bound_kind_})")

why = dist.explain(X_test[:1], k=3)[0]
for evidence in why["prototypes"]:                       # nearest first
    print(f"  prototype {evidence['prototype']} at distance {evidence['distance']:.2f}, label {evidence['label']}, "
          f"stands for {len(evidence['training_rows'])} training rows")
print("prediction", why["prediction"], "true label", y_test[0])

student_dir = dist.to_student().save("digits-16kb")
student = load_student(student_dir)                       # no torch, no teacher
assert (student.predict(X_test) == dist.predict(X_test)).all()
print("saved", student_dir, student.describe()["kind"])
