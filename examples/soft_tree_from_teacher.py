"""Distil a teacher into a soft decision tree, plot it, and save it as a NumPy-only student.

``TreeDistiller`` chooses the temperature and the label mixing on held-out rows and keeps the
hard-label tree when the teacher does not help there (``fell_back_to_labels_``).

Run: ``python examples/soft_tree_from_teacher.py`` (needs torch and matplotlib). Writes
``tree.png`` and ``digits-tree/`` in the current directory.
"""

from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from nnkd import SoftDecisionTreeClassifier, TreeDistiller, load_student
from nnkd.teachers import train_mlp_teacher

X, y = load_digits(return_X_y=True)
X = X.astype("float32")
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, stratify=y, random_state=0)

teacher = train_mlp_teacher(X_train, y_train, hidden=(64,), epochs=20, random_state=0)
print(f"teacher test accuracy {(teacher.logits(X_test).argmax(1) == y_test).mean():.3f}")

tree = SoftDecisionTreeClassifier(depth=4, max_epochs=15, random_state=0)
distilled = TreeDistiller(teacher, tree=tree).fit(X_train, y_train)
print(f"depth-4 soft tree: test accuracy {distilled.score(X_test, y_test):.3f}; recipe {distilled.recipe_}; "
      f"fell back to the labels: {distilled.fell_back_to_labels_}")

distilled.plot_tree("tree.png")                           # each inner node's filter as an 8x8 image
why = distilled.explain(X_test[:1], k=1)[0]
print("prediction", why["prediction"], "along the path", [(step["node"], step["branch"])
                                                            for step in why["paths"][0]["path"]])

student_dir = distilled.to_student().save("digits-tree")
assert (load_student(student_dir).predict(X_test) == distilled.predict(X_test)).all()
