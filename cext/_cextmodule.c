/* Python glue for the C core: argument parsing and status mapping only.
 * User-facing validation and output allocation live in nnkd/_core/cext.py. */
#define PY_SSIZE_T_CLEAN
#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#include <Python.h>
#include <numpy/arrayobject.h>

#include "greedy.h"

/* Optional arrays arrive as None; anything else must be a C-contiguous array of
 * the given dtype and length (0 = any 1-d/2-d array checked elsewhere). */
static int check_array(PyObject *obj, const char *name, int type, int ndim, npy_intp len,
                       int optional, PyArrayObject **out) {
    PyArrayObject *arr;
    *out = NULL;
    if (obj == Py_None && optional) return 0;
    if (!PyArray_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be a numpy array", name);
        return -1;
    }
    arr = (PyArrayObject *)obj;
    if (PyArray_TYPE(arr) != type || PyArray_NDIM(arr) != ndim ||
        !PyArray_IS_C_CONTIGUOUS(arr) || (len >= 0 && PyArray_DIM(arr, 0) != len)) {
        PyErr_Format(PyExc_ValueError, "%s has the wrong dtype, shape or layout", name);
        return -1;
    }
    *out = arr;
    return 0;
}

static PyObject *greedy_permutation(PyObject *self, PyObject *args) {
    PyObject *oX, *olabels, *oactive, *oorder, *oradius, *oowner, *odist, *otrain, *ovalid;
    PyArrayObject *X, *labels, *active, *order, *radius, *owner, *dist, *train, *valid;
    int metric, status;
    Py_ssize_t start, max_centres, n_classes;
    double stop_radius;
    int64_t n, n_centres = 0;
    (void)self;

    if (!PyArg_ParseTuple(args, "OinndOnOOOOOOO", &oX, &metric, &start, &max_centres,
                          &stop_radius, &olabels, &n_classes, &oactive, &oorder, &oradius,
                          &oowner, &odist, &otrain, &ovalid))
        return NULL;
    if (check_array(oX, "X", NPY_FLOAT32, 2, -1, 0, &X)) return NULL;
    n = PyArray_DIM(X, 0);
    if (check_array(olabels, "labels", NPY_INT64, 1, n, 1, &labels) ||
        check_array(oactive, "active", NPY_UINT8, 1, n, 1, &active) ||
        check_array(oorder, "order", NPY_INT64, 1, max_centres, 0, &order) ||
        check_array(oradius, "radius", NPY_FLOAT64, 1, max_centres, 0, &radius) ||
        check_array(oowner, "owner", NPY_INT64, 1, n, 0, &owner) ||
        check_array(odist, "dist", NPY_FLOAT64, 1, n, 0, &dist) ||
        check_array(otrain, "train_err", NPY_INT64, 1, max_centres, 1, &train) ||
        check_array(ovalid, "valid_err", NPY_INT64, 1, max_centres, 1, &valid))
        return NULL;

    Py_BEGIN_ALLOW_THREADS /* the core touches no Python object */
    status = nnkd_greedy_permutation(
        PyArray_DATA(X), n, PyArray_DIM(X, 1), metric, start, max_centres, stop_radius,
        labels ? PyArray_DATA(labels) : NULL, n_classes, active ? PyArray_DATA(active) : NULL,
        PyArray_DATA(order), PyArray_DATA(radius), PyArray_DATA(owner), PyArray_DATA(dist),
        train ? PyArray_DATA(train) : NULL, valid ? PyArray_DATA(valid) : NULL, &n_centres);
    Py_END_ALLOW_THREADS

    if (status == NNKD_ENOMEM) return PyErr_NoMemory();
    if (status != NNKD_OK)
        return PyErr_Format(PyExc_ValueError, "greedy_permutation: invalid arguments (status %d)",
                            status);
    return PyLong_FromLongLong((long long)n_centres);
}

static PyMethodDef methods[] = {
    {"greedy_permutation", greedy_permutation, METH_VARARGS,
     "Farthest-first traversal with cell bookkeeping; see nnkd._core.cext."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "nnkd._cext",
                                    "C core of nnkd (greedy permutation).", -1, methods};

PyMODINIT_FUNC PyInit__cext(void) {
    import_array();
    return PyModule_Create(&module);
}
