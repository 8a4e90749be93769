"""Condense scikit-learn's digits to a few hundred prototypes, save the student, serve it over
HTTP on loopback and ask it for a prediction and the prototypes behind it.

Run: ``python examples/condense_and_serve.py`` (needs ``nnkd[serve]``). Writes ``digits-student/``
in the current directory; the server runs for the length of the script only.
"""

import json
import socket
import subprocess
import sys
import time
import urllib.request

from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from nnkd import MarginCondensedNN, load_student

X, y = load_digits(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, stratify=y, random_state=0)

clf = MarginCondensedNN(random_state=0).fit(X_train, y_train)
print(f"kept {len(clf.support_)} of {len(X_train)} rows ({clf.selection_} chose the size), "
      f"test accuracy {clf.score(X_test, y_test):.3f}")

student_dir = clf.to_student().save("digits-student")   # student.json + arrays.npz, checksummed
student = load_student(student_dir)                       # NumPy only: what the server loads
assert (student.predict(X_test) == clf.predict(X_test)).all()

# A free loopback port, then `nnkd serve` in a child process.
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
server = subprocess.Popen([sys.executable, "-m", "nnkd", "serve", str(student_dir), "--port", str(port),
                           "--log-level", "warning"])
url = f"http://127.0.0.1:{port}"
try:
    for _ in range(300):                                  # wait (at most 30 s) until it is ready
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=1) as response:
                if response.status == 200:
                    break
        except OSError:
            time.sleep(0.1)
    else:
        raise SystemExit("the server did not become ready in 30 s")
    body = json.dumps({"instances": X_test[:2].tolist(), "return": ["label", "neighbors"], "k": 2}).encode()
    request = urllib.request.Request(f"{url}/v1/predict", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        answer = json.load(response)
    print("served labels:", answer["label"], "true labels:", y_test[:2].tolist())
    nearest = answer["neighbors"][0]
    print("first row's nearest prototypes:", json.dumps(nearest)[:200], "...")
    assert [int(v) for v in answer["label"]] == student.predict(X_test[:2]).tolist()
finally:
    server.terminate()                                    # SIGTERM: drains the queue, exits 0
    server.wait(timeout=30)
