"""Staging of request rows for the drift monitor (runtime/monitor/drift.py).

A kernel call costs about as much for one row as for sixty, so the monitor copies
a request's few rows into a preallocated buffer and counts the buffer when it is
full, or when someone reads the counts.  `Stager.add` is the whole per-request
path of the usual model: take the monitor's lock, check that the sub-window is
not over, find the input and output tensors, copy their rows.  Counting, rotating
windows and everything else happen in Python, under the same lock (`Lock`).

Instructions to get at a (1, 8) float32 tensor, counted under callgrind as
bench/monitor_cost.py counts them: numpy's slice assignment into the buffer
~2,600; a typed memoryview argument ~1,500; the buffer protocol ~650 (numpy
builds and caches a format string per array); the ndarray's own fields ~20, on a
~64,000-instruction predict.  So an exact ndarray of float32 or float64 is read
from its fields (mlrt_ndarray below), anything else through the buffer protocol.
"""


import numpy as np

from cpython.buffer cimport (
    PyBUF_RECORDS_RO,
    PyBUF_WRITABLE,
    PyBuffer_Release,
    PyObject_GetBuffer,
)
from cpython.dict cimport PyDict_GetItemWithError
from cpython.exc cimport PyErr_Clear
from cpython.object cimport PyObject, PyTypeObject
from cpython.pythread cimport (
    NOWAIT_LOCK,
    WAIT_LOCK,
    PyThread_acquire_lock,
    PyThread_allocate_lock,
    PyThread_free_lock,
    PyThread_release_lock,
    PyThread_type_lock,
)
from libc.string cimport memcpy

from common cimport FLOAT32, FLOAT64, NOT_FLOAT, buffer_float_kind


cdef extern from "Python.h":
    # PyObject_GetBuffer that leaves a failure to the caller (cpython.buffer's
    # declaration raises it): what is not a buffer is declined, not an error.
    int _get_buffer_or_fail "PyObject_GetBuffer" (object obj, Py_buffer* view,
                                                  int flags) noexcept
    PyTypeObject* Py_TYPE(PyObject* o) noexcept


cdef extern from *:
    """
    /* The leading fields of a numpy array: PyArrayObject_fields in numpy's
       ndarraytypes.h, the same from numpy 1.7 through 2.x (every compiled
       extension reads them through numpy's PyArray_DATA & co.).  numpy's headers
       are not a build dependency, so they are declared here and checked against
       the buffer protocol on a real array before use (_ndarray_layout_ok). */
    typedef struct {
        PyObject_HEAD
        char *data;
        int nd;
        Py_ssize_t *dimensions;
        Py_ssize_t *strides;
        PyObject *base;
        PyObject *descr;
    } mlrt_ndarray;
    """
    ctypedef struct mlrt_ndarray:
        char* data
        int nd
        Py_ssize_t* dimensions
        Py_ssize_t* strides
        PyObject* descr


# What Stager.add answers (RowBuffer.add answers the rows it holds, or DECLINED).
cdef enum:
    DECLINED = -1  # nothing staged: the caller takes its general path
    STAGED = 0
    FULL = 1       # staged, and a buffer is full: count it

# numpy's float32 and float64 dtypes: an exact ndarray whose descr is one of these
# holds native-order floats of that width.
cdef object _F32 = np.dtype(np.float32)
cdef object _F64 = np.dtype(np.float64)
cdef PyTypeObject* _NDARRAY = <PyTypeObject*>np.ndarray
# Set below, once _ndarray_layout_ok has looked.
cdef bint _LAYOUT_OK = False


ctypedef struct _Rows:
    # One tensor as add() reads it: n rows of `cols` values, byte strides s0, s1.
    const char* data
    Py_ssize_t n
    Py_ssize_t cols
    Py_ssize_t s0
    Py_ssize_t s1
    int kind


cdef bint _shape(_Rows* r, Py_ssize_t ndim, const Py_ssize_t* shape,
                 const Py_ssize_t* strides, Py_ssize_t itemsize) noexcept:
    """Fill r's shape from a 1-D (one column) or 2-D array; False for other ranks."""
    if ndim == 2:
        r.n = shape[0]
        r.cols = shape[1]
        r.s0 = strides[0]
        r.s1 = strides[1]
        return True
    if ndim == 1:
        r.n = shape[0]
        r.cols = 1
        r.s0 = strides[0]
        r.s1 = itemsize
        return True
    return False


cdef inline bint _is_ndarray(PyObject* x) noexcept:
    """Whether x is read from its fields: an exact numpy array, on a numpy whose
    layout was checked."""
    return _LAYOUT_OK and Py_TYPE(x) == _NDARRAY


cdef bint _ndarray_rows(PyObject* x, _Rows* r) noexcept:
    """Read an exact numpy array (_is_ndarray) of float32 or float64 from its
    fields; False for other dtypes."""
    cdef mlrt_ndarray* a
    a = <mlrt_ndarray*>x
    if a.descr == <PyObject*>_F32:
        r.kind = FLOAT32
    elif a.descr == <PyObject*>_F64:
        r.kind = FLOAT64
    else:
        return False
    r.data = a.data
    return _shape(r, a.nd, a.dimensions, a.strides, sizeof(float) if r.kind == FLOAT32 else sizeof(double))


cdef bint _buffer_rows(Py_buffer* view, _Rows* r) noexcept:
    r.kind = buffer_float_kind(view)
    r.data = <const char*>view.buf
    return r.kind != NOT_FLOAT and _shape(r, view.ndim, view.shape, view.strides, view.itemsize)


cdef bint _ndarray_layout_ok():
    """Whether numpy arrays here have the fields mlrt_ndarray declares: read a strided
    2-D view both ways, through the fields and through the buffer protocol."""
    cdef Py_buffer view
    cdef mlrt_ndarray* a
    cdef object probe = np.zeros((5, 7), dtype=_F32)[1::2, 2:]
    cdef bint ok
    PyObject_GetBuffer(probe, &view, PyBUF_RECORDS_RO)
    a = <mlrt_ndarray*><PyObject*>probe
    ok = (type(probe) is np.ndarray and a.data == <char*>view.buf and a.nd == 2
          and a.dimensions[0] == view.shape[0] == 2 and a.dimensions[1] == view.shape[1] == 5
          and a.strides[0] == view.strides[0] and a.strides[1] == view.strides[1]
          and a.descr == <PyObject*>probe.dtype)
    PyBuffer_Release(&view)
    return ok


_LAYOUT_OK = _ndarray_layout_ok()


def reads_ndarray_fields():
    """Whether exact numpy arrays are read from their fields here (True on every numpy
    this was tested with); False: through the buffer protocol, same results, slower."""
    return _LAYOUT_OK


cdef class Lock:
    """A mutex like threading.Lock (`with lock:`), that Stager.add also takes from C
    without a Python call.  Not reentrant."""
    cdef PyThread_type_lock lock

    def __cinit__(self):
        self.lock = PyThread_allocate_lock()
        if self.lock == NULL:
            raise MemoryError("cannot allocate a lock")

    def __dealloc__(self):
        if self.lock != NULL:
            PyThread_free_lock(self.lock)

    cdef inline void acquire(self) noexcept:
        # Called with the GIL held.  The holder may be waiting for the GIL (a kernel
        # that released it), so a contended wait must release it too.
        if not PyThread_acquire_lock(self.lock, NOWAIT_LOCK):
            with nogil:
                PyThread_acquire_lock(self.lock, WAIT_LOCK)

    cdef inline void release(self) noexcept:
        PyThread_release_lock(self.lock)

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()
        return False


cdef class RowBuffer:
    """Rows waiting to be counted: a preallocated C-order (capacity x n_cols)
    float32 or float64 array, filled from the top.  Not locked: its users hold the
    monitor's Lock.

    >>> import numpy as np
    >>> b = RowBuffer(np.empty((64, 3), dtype=np.float32), max_rows=15)
    >>> b.add(np.array([[1.0, 2.0, 3.0]]))   # float64 in: rounded to float32
    1
    >>> b.rows[:b.n].tolist()
    [[1.0, 2.0, 3.0]]
    """
    cdef readonly object rows
    cdef readonly Py_ssize_t n
    cdef readonly Py_ssize_t capacity
    cdef readonly Py_ssize_t n_cols
    cdef readonly Py_ssize_t max_rows
    cdef Py_buffer view  # held while this object lives: the data cannot move
    cdef bint has_view
    cdef char* data
    cdef int kind

    def __cinit__(self):
        self.has_view = False

    def __init__(self, rows, Py_ssize_t max_rows):
        """rows: IN and OUT, a C-contiguous 2-D float32 or float64 array the buffer
        fills (owned by the buffer from now on).  max_rows: the most rows one add()
        stages; larger requests are declined (the caller counts them at once)."""
        cdef Py_buffer view
        cdef int kind
        if self.has_view:
            raise RuntimeError("a RowBuffer is initialized once")
        PyObject_GetBuffer(rows, &view, PyBUF_RECORDS_RO | PyBUF_WRITABLE)
        kind = buffer_float_kind(&view)
        if view.ndim != 2 or kind == NOT_FLOAT or (
                view.shape[1] > 1 and view.strides[1] != view.itemsize) or (
                view.shape[0] > 1 and view.strides[0] != view.shape[1] * view.itemsize):
            PyBuffer_Release(&view)
            raise ValueError("rows must be a writable C-contiguous 2-D float32 or float64 array")
        if max_rows < 1 or max_rows > view.shape[0]:
            PyBuffer_Release(&view)
            raise ValueError(f"max_rows must be in 1..{view.shape[0]}, got {max_rows}")
        self.view = view
        self.has_view = True
        self.rows = rows
        self.data = <char*>view.buf
        self.kind = kind
        self.capacity = view.shape[0]
        self.n_cols = view.shape[1]
        self.max_rows = max_rows
        self.n = 0

    def __dealloc__(self):
        if self.has_view:
            PyBuffer_Release(&self.view)

    cdef inline bint _fits(self, const _Rows* x) noexcept:
        return (x.cols == self.n_cols and x.n <= self.max_rows
                and x.n <= self.capacity - self.n)

    cdef void _copy(self, const _Rows* x) noexcept:
        """Append x's rows (checked by _fits), converted to the buffer's type as
        numpy's astype converts them: a C cast (float64 to float32 rounds to nearest,
        float32 to float64 is exact)."""
        cdef Py_ssize_t m = self.n_cols, k = x.n, r, j
        cdef Py_ssize_t size = sizeof(float) if x.kind == FLOAT32 else sizeof(double)
        cdef const char* src = x.data
        cdef float* d32
        cdef double* d64
        if x.kind == self.kind and (x.s1 == size or m == 1) and (x.s0 == m * size or k == 1):
            memcpy(self.data + self.n * m * size, src, k * m * size)
        elif self.kind == FLOAT32:
            d32 = (<float*>self.data) + self.n * m
            for r in range(k):
                for j in range(m):
                    if x.kind == FLOAT32:
                        d32[r * m + j] = (<const float*>(src + r * x.s0 + j * x.s1))[0]
                    else:
                        d32[r * m + j] = <float>(<const double*>(src + r * x.s0 + j * x.s1))[0]
        else:
            d64 = (<double*>self.data) + self.n * m
            for r in range(k):
                for j in range(m):
                    if x.kind == FLOAT32:
                        d64[r * m + j] = <double>(<const float*>(src + r * x.s0 + j * x.s1))[0]
                    else:
                        d64[r * m + j] = (<const double*>(src + r * x.s0 + j * x.s1))[0]
        self.n += k

    def add(self, x):
        """Stage the rows of x (IN: float32 or float64, any strides; a 1-D array is
        one column's values) and return how many rows the buffer now holds; or -1,
        staging nothing, when x has another dtype or shape, more than max_rows rows,
        or more rows than there is room for.  `n == capacity`: time to count."""
        cdef Py_buffer view
        cdef _Rows r
        cdef bint ok
        if _is_ndarray(<PyObject*>x):
            ok = _ndarray_rows(<PyObject*>x, &r) and self._fits(&r)
            if ok:
                self._copy(&r)
            return self.n if ok else DECLINED
        if _get_buffer_or_fail(x, &view, PyBUF_RECORDS_RO) != 0:
            PyErr_Clear()
            return DECLINED
        ok = _buffer_rows(&view, &r) and self._fits(&r)
        if ok:
            self._copy(&r)
        PyBuffer_Release(&view)
        return self.n if ok else DECLINED

    def clear(self):
        """Forget the staged rows (after counting rows[:n])."""
        self.n = 0


cdef class Stager:
    """The per-request path of a model whose profile sections each read one numeric
    tensor whole: stage the rows of the input tensor `x_name` and of the output
    tensor `y_name` (None: no outputs section), both or neither, holding `lock`.

    `add(inputs, outputs, now)` answers 0 (staged), 1 (staged, and a buffer is now
    full: count it) or -1 (nothing staged: `now` is at or past `due_at`, the end of
    the current sub-window; a tensor is missing or not a float array the buffers
    take; the request has more than max_rows rows; or a buffer has no room).

    `observe(inputs, outputs)` is ModelMonitor.observe for such a model: it reads
    `clock()` and adds; then, on 1, calls `on_full()`; on -1, `fallback(inputs,
    outputs)`, the monitor's general path (which rotates windows and counts batches).
    """
    cdef readonly Lock lock
    cdef readonly RowBuffer x
    cdef readonly RowBuffer y
    cdef object x_name
    cdef object y_name
    cdef object clock
    cdef object on_full
    cdef object fallback
    #: Monotonic seconds at which the current sub-window ends; set with the lock held.
    cdef public double due_at

    def __init__(self, Lock lock not None, str x_name not None, RowBuffer x not None,
                 str y_name=None, RowBuffer y=None, *, clock=None, on_full=None, fallback=None):
        if (y_name is None) != (y is None):
            raise ValueError("y_name and y go together")
        # Typed attributes, one per argument (the same shape as NumericCounter's; no logic).
        self.lock = lock
        self.x_name = x_name
        self.x = x
        self.y_name = y_name
        self.y = y
        self.clock = clock
        self.on_full = on_full
        self.fallback = fallback
        self.due_at = float("-inf")

    def observe(self, inputs, outputs):
        """Stage one request's rows, or hand it to the fallback (see the class)."""
        cdef int staged = self._add(inputs, outputs, self.clock())
        if staged == STAGED:
            return None
        if staged == FULL:
            return self.on_full()
        return self.fallback(inputs, outputs)

    def add(self, inputs, outputs, double now):
        """Stage one request's rows at monotonic time `now` (see the class)."""
        return self._add(inputs, outputs, now)

    cdef int _add(self, inputs, outputs, double now) except -2:
        cdef PyObject* xo
        cdef PyObject* yo = NULL
        cdef Py_buffer xv, yv
        cdef bint x_view = False, y_view = False, ok
        cdef _Rows xr, yr
        cdef int out = DECLINED
        if type(inputs) is not dict:
            return DECLINED
        xo = PyDict_GetItemWithError(inputs, self.x_name)
        if xo == NULL:
            return DECLINED
        if self.y is not None:
            if type(outputs) is not dict:
                return DECLINED
            yo = PyDict_GetItemWithError(outputs, self.y_name)
            if yo == NULL:
                return DECLINED
        # What is not an exact ndarray is read through the buffer protocol, before
        # the lock: an export may run Python code.  An ndarray is read after it: from
        # then on the GIL is held without a break, so nothing can change the array
        # between reading its fields and copying its rows.
        if not _is_ndarray(xo):
            if _get_buffer_or_fail(<object>xo, &xv, PyBUF_RECORDS_RO) != 0:
                PyErr_Clear()
                return DECLINED
            x_view = True
        if yo != NULL and not _is_ndarray(yo):
            if _get_buffer_or_fail(<object>yo, &yv, PyBUF_RECORDS_RO) != 0:
                PyErr_Clear()
                if x_view:
                    PyBuffer_Release(&xv)
                return DECLINED
            y_view = True
        self.lock.acquire()
        ok = (now < self.due_at
              and (_buffer_rows(&xv, &xr) if x_view else _ndarray_rows(xo, &xr))
              and self.x._fits(&xr))
        if ok and yo != NULL:
            ok = (_buffer_rows(&yv, &yr) if y_view else _ndarray_rows(yo, &yr)) and self.y._fits(&yr)
        if ok:
            self.x._copy(&xr)
            out = self.x.n == self.x.capacity
            if yo != NULL:
                self.y._copy(&yr)
                out = out or self.y.n == self.y.capacity
        self.lock.release()
        if x_view:
            PyBuffer_Release(&xv)
        if y_view:
            PyBuffer_Release(&yv)
        return out
