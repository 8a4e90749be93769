from pathlib import Path

import numpy as np
import pytest

DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def shared_data():
    """Loader for ../shared/data/<name>.npz; skips when the folder is absent (a user's machine)."""
    if not DATA_DIR.is_dir():
        pytest.skip(f"real datasets not available: {DATA_DIR} does not exist")

    def load(name):
        path = DATA_DIR / f"{name}.npz"
        if not path.exists():
            pytest.skip(f"{path} not present")
        return dict(np.load(path))

    return load
