"""Edit a saved artifact as an attacker without the key would: change a file, then make the
unsigned manifest agree with it (what a SHA-256 beside the data cannot stop)."""

from __future__ import annotations

import json
from pathlib import Path

from nnkd._core.artifacts import MANIFEST_FILE, sha256_file


def rewrite_manifest(directory) -> None:
    """Recompute the checksums of every listed file and drop the signature."""
    directory = Path(directory)
    manifest = json.loads((directory / MANIFEST_FILE).read_text())
    manifest["files"] = {name: sha256_file(directory / name) for name in manifest["files"]}
    manifest.pop("signature", None)
    (directory / MANIFEST_FILE).write_text(json.dumps(manifest))


def edit_json(directory, name: str, change) -> None:
    """Apply ``change(dict) -> dict`` to ``directory/name`` and fix the manifest."""
    path = Path(directory) / name
    path.write_text(json.dumps(change(json.loads(path.read_text()))))
    rewrite_manifest(directory)
