/* Python glue for the C core: argument parsing and status mapping only.
 * User-facing validation and output allocation live in nnkd/_core/cext.py. */
#define PY_SSIZE_T_CLEAN
#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#include <Python.h>
#include <math.h>
#include <numpy/arrayobject.h>

#include "greedy.h"

#define INPUT 0
#define OUTPUT 1

/* Optional arrays arrive as None; anything else must be an aligned, native-byte-order,
 * C-contiguous array of the given dtype and length (-1 = any), and writeable when it is an
 * output: the core writes through raw pointers, so a read-only or misaligned buffer would
 * be corrupted or fault. */
static int check_array(PyObject *obj, const char *name, int type, int ndim, npy_intp len,
                       int optional, int output, PyArrayObject **out) {
    PyArrayObject *arr;
    *out = NULL;
    if (obj == Py_None && optional) return 0;
    if (!PyArray_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be a numpy array", name);
        return -1;
    }
    arr = (PyArrayObject *)obj;
    if (PyArray_TYPE(arr) != type || PyArray_NDIM(arr) != ndim || !PyArray_IS_C_CONTIGUOUS(arr) ||
        !PyArray_ISALIGNED(arr) || !PyArray_ISNOTSWAPPED(arr) || (len >= 0 && PyArray_DIM(arr, 0) != len)) {
        PyErr_Format(PyExc_ValueError, "%s has the wrong dtype, shape, alignment, byte order or layout", name);
        return -1;
    }
    if (output && !PyArray_ISWRITEABLE(arr)) {
        PyErr_Format(PyExc_ValueError, "%s is read-only; outputs must be writeable arrays", name);
        return -1;
    }
    *out = arr;
    return 0;
}

/* The core's interrupt check: take the GIL for a moment and run Python's pending signal
 * handlers (Ctrl-C raises KeyboardInterrupt there); nonzero stops the run. */
static int check_signals(void *ctx) {
    int raised;
    PyGILState_STATE state = PyGILState_Ensure();
    (void)ctx;
    raised = PyErr_CheckSignals() != 0;
    PyGILState_Release(state);
    return raised;
}

static PyObject *greedy_permutation(PyObject *self, PyObject *args) {
    PyObject *oX, *olabels, *oactive, *oorder, *oradius, *oowner, *odist, *otrain, *ovalid;
    PyArrayObject *X, *labels, *active, *order, *radius, *owner, *dist, *train, *valid;
    int metric, status, n_threads = 1;
    Py_ssize_t start, max_centres, n_classes, min_parallel = NNKD_PAR_MIN;
    double stop_radius;
    int64_t n, n_centres = 0;
    (void)self;

    if (!PyArg_ParseTuple(args, "OinndOnOOOOOOO|in", &oX, &metric, &start, &max_centres,
                          &stop_radius, &olabels, &n_classes, &oactive, &oorder, &oradius,
                          &oowner, &odist, &otrain, &ovalid, &n_threads, &min_parallel))
        return NULL;
    if (n_threads < 1 || n_threads > NNKD_MAX_THREADS)
        return PyErr_Format(PyExc_ValueError, "greedy_permutation: n_threads=%d must lie in [1, %d]", n_threads,
                            NNKD_MAX_THREADS);
    if (check_array(oX, "X", NPY_FLOAT32, 2, -1, 0, INPUT, &X)) return NULL;
    n = PyArray_DIM(X, 0);
    if (check_array(olabels, "labels", NPY_INT64, 1, n, 1, INPUT, &labels) ||
        check_array(oactive, "active", NPY_UINT8, 1, n, 1, INPUT, &active) ||
        check_array(oorder, "order", NPY_INT64, 1, max_centres, 0, OUTPUT, &order) ||
        check_array(oradius, "radius", NPY_FLOAT64, 1, max_centres, 0, OUTPUT, &radius) ||
        check_array(oowner, "owner", NPY_INT64, 1, n, 0, OUTPUT, &owner) ||
        check_array(odist, "dist", NPY_FLOAT64, 1, n, 0, OUTPUT, &dist) ||
        check_array(otrain, "train_err", NPY_INT64, 1, max_centres, 1, OUTPUT, &train) ||
        check_array(ovalid, "valid_err", NPY_INT64, 1, max_centres, 1, OUTPUT, &valid))
        return NULL;

    Py_BEGIN_ALLOW_THREADS /* the core touches no Python object */
    status = nnkd_greedy_permutation(
        PyArray_DATA(X), n, PyArray_DIM(X, 1), metric, start, max_centres, stop_radius,
        labels ? PyArray_DATA(labels) : NULL, n_classes, active ? PyArray_DATA(active) : NULL,
        PyArray_DATA(order), PyArray_DATA(radius), PyArray_DATA(owner), PyArray_DATA(dist),
        train ? PyArray_DATA(train) : NULL, valid ? PyArray_DATA(valid) : NULL, &n_centres,
        n_threads, min_parallel, check_signals, NULL);
    Py_END_ALLOW_THREADS

    if (status == NNKD_EINTR) return NULL; /* check_signals left the exception (KeyboardInterrupt) set */
    if (status == NNKD_ENOMEM) return PyErr_NoMemory();
    if (status == NNKD_EOVERFLOW)
        return PyErr_Format(PyExc_MemoryError, "greedy_permutation: the requested sizes (%zd centres, %zd classes) "
                            "overflow the address space", max_centres, n_classes);
    if (status != NNKD_OK)
        return PyErr_Format(PyExc_ValueError, "greedy_permutation: invalid arguments (status %d)",
                            status);
    return PyLong_FromLongLong((long long)n_centres);
}

/* NMSLIB's knnQueryBatch returns a list of (int32 ids, float32 distances) pairs, one
 * per query, possibly shorter than k. Copy them into preallocated (n, k) int64/float32
 * arrays in one C pass, padding short rows with -1 / +inf; returns the number of short
 * rows. In Python this conversion cost 5-7% of a fast batch query. */
static PyObject *pairs_to_arrays(PyObject *self, PyObject *args) {
    PyObject *rows, *ind_obj, *dist_obj;
    PyArrayObject *ind, *dist;
    Py_ssize_t n, i, j, len, k, n_short = 0;
    if (!PyArg_ParseTuple(args, "O!OO", &PyList_Type, &rows, &ind_obj, &dist_obj) ||
        check_array(ind_obj, "ind", NPY_INT64, 2, -1, 0, OUTPUT, &ind) ||
        check_array(dist_obj, "dist", NPY_FLOAT32, 2, -1, 0, OUTPUT, &dist))
        return NULL;
    n = PyList_GET_SIZE(rows);
    k = (Py_ssize_t)PyArray_DIM(ind, 1);
    if (PyArray_DIM(ind, 0) != n || PyArray_DIM(dist, 0) != n || PyArray_DIM(dist, 1) != k)
        return PyErr_Format(PyExc_ValueError, "ind and dist must both have shape (%zd, k)", n);
    for (i = 0; i < n; i++) {
        PyObject *pair = PyList_GET_ITEM(rows, i);
        PyArrayObject *a, *b;
        const npy_int32 *ids;
        const float *ds;
        npy_int64 *out_i = (npy_int64 *)PyArray_GETPTR2(ind, i, 0);
        float *out_d = (float *)PyArray_GETPTR2(dist, i, 0);
        if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2 ||
            check_array(PyTuple_GET_ITEM(pair, 0), "ids", NPY_INT32, 1, -1, 0, INPUT, &a) ||
            check_array(PyTuple_GET_ITEM(pair, 1), "distances", NPY_FLOAT32, 1, -1, 0, INPUT, &b)) {
            if (!PyErr_Occurred())
                PyErr_Format(PyExc_TypeError, "row %zd is not an (ids, distances) pair", i);
            return NULL;
        }
        len = (Py_ssize_t)PyArray_DIM(a, 0);
        if (PyArray_DIM(b, 0) != len || len > k)
            return PyErr_Format(PyExc_ValueError, "row %zd has %zd ids and %zd distances for k=%zd", i,
                                len, (Py_ssize_t)PyArray_DIM(b, 0), k);
        ids = (const npy_int32 *)PyArray_DATA(a);
        ds = (const float *)PyArray_DATA(b);
        for (j = 0; j < len; j++) {
            out_i[j] = ids[j];
            out_d[j] = ds[j];
        }
        for (; j < k; j++) {
            out_i[j] = -1;
            out_d[j] = HUGE_VALF;
        }
        n_short += len < k;
    }
    return PyLong_FromSsize_t(n_short);
}

static PyMethodDef methods[] = {
    {"greedy_permutation", greedy_permutation, METH_VARARGS,
     "Farthest-first traversal with cell bookkeeping; see nnkd._core.cext."},
    {"pairs_to_arrays", pairs_to_arrays, METH_VARARGS,
     "Copy a list of (int32 ids, float32 distances) rows into (n, k) arrays; see nnkd._core.cext."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "nnkd._cext",
                                    "C core of nnkd (greedy permutation, result-row conversion).", -1, methods};

PyMODINIT_FUNC PyInit__cext(void) {
    import_array();
    return PyModule_Create(&module);
}
