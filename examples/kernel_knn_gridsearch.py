"""A FAISS-backed kernel k-NN classifier inside a scikit-learn Pipeline, tuned by GridSearchCV,
next to the exact backend it approximates.

Run: ``python examples/kernel_knn_gridsearch.py`` (needs ``nnkd[ann]``).
"""

from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from nnkd import KernelKNNClassifier

X, y = load_digits(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, stratify=y, random_state=0)

pipe = make_pipeline(StandardScaler(), KernelKNNClassifier(index="faiss:HNSW32", index_params={"efSearch": 64}))
grid = GridSearchCV(pipe, {"kernelknnclassifier__n_neighbors": [3, 7, 15],
                           "kernelknnclassifier__kernel": ["uniform", "triangular", "epanechnikov"]}, cv=3)
grid.fit(X_train, y_train)
print("best parameters:", grid.best_params_)
print(f"HNSW32 test accuracy {grid.score(X_test, y_test):.3f}")

# The same model with exact search, to see what the approximate index costs in accuracy.
exact = grid.best_estimator_.set_params(kernelknnclassifier__index="exact", kernelknnclassifier__index_params=None)
print(f"exact  test accuracy {exact.fit(X_train, y_train).score(X_test, y_test):.3f}")
