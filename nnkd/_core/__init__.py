"""Low-level kernels: the C extension wrapper and Numba kernels. Private API."""
