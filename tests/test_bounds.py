import math

import numpy as np
import pytest

from nnkd.condense import compression_bound


def test_bound_by_hand():
    n, alpha, m, delta = 100, 0.1, 10, 0.05
    c = 11 * math.log(100) + math.log(20)
    expected = 100 / 90 * 0.1 + 2 / 3 * c / 90 + 3 / math.sqrt(2) * math.sqrt(100 / 90 * 0.1 * c / 90)
    assert compression_bound(n, alpha, m, delta) == pytest.approx(expected, rel=1e-12)


def test_bound_is_infinite_when_compression_reaches_n():
    assert compression_bound(10, 0.0, 10, 0.05) == np.inf
    assert np.array_equal(compression_bound(10, [0.0, 0.0], [4, 12], 0.05) == np.inf, [False, True])


def test_bound_grows_with_error_and_size():
    assert compression_bound(1000, 0.1, 20, 0.05) > compression_bound(1000, 0.05, 20, 0.05)
    assert compression_bound(1000, 0.05, 40, 0.05) > compression_bound(1000, 0.05, 20, 0.05)
    assert compression_bound(1000, 0.05, 20, 0.01) > compression_bound(1000, 0.05, 20, 0.05)


@pytest.mark.parametrize("kwargs, match", [
    ({"delta": 0.0}, "delta"), ({"delta": 1.5}, "delta"), ({"alpha": 1.2}, "alpha"), ({"m": -1}, "m must"),
])
def test_bound_rejects_bad_arguments(kwargs, match):
    args = {"n": 100, "alpha": 0.1, "m": 4, "delta": 0.05, **kwargs}
    with pytest.raises(ValueError, match=match):
        compression_bound(**args)
