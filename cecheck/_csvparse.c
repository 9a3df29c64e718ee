/*
 * The fast path of cecheck's CSV reader (cecheck/inputs.py): a piece of a plain CSV file
 * (decimal numbers, one separator byte, LF line ends) parsed straight into a float64 array
 * without the GIL, so the pieces parse on every core. pandas' parser holds the GIL in parts
 * and scales poorly over threads.
 *
 * Only a narrow grammar, where the value is certain to be the correctly rounded one, as
 * Python's float() and pandas give it:
 *
 *     cell = [+-]? (digits ('.' digits?)? | '.' digits) ([eE] [+-]? digits)?
 *
 * and Clinger's fast path: a significand w of at most 19 significant digits with
 * w <= 2^53, and a decimal exponent e (the fraction's digits folded in) with |e| <= 22, so
 * that w and 10^|e| are exact doubles and w * 10^e or w / 10^-e is one correctly rounded
 * operation. No strtod (it depends on the locale). Anything else (spaces, '\r', an empty
 * cell, nan, more digits, a larger exponent, a row with more or fewer cells) makes parse()
 * answer -1 at once, and the caller parses that piece with pandas. "-0" reads as -0.0.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>

#define MAX_DIGITS 19                 /* significant digits that fit a uint64 */
#define MAX_EXACT (UINT64_C(1) << 53) /* every integer up to here is an exact double */
#define MAX_POW 22                    /* 10^22 is the largest exact power of 10 */

static const double POW10[MAX_POW + 1] = {
    1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
    1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
};

#define IS_DIGIT(c) ((unsigned)((c) - '0') < 10u)

/* The cell starting at p (before end): its value into *out and the byte after it, or NULL
 * if it is outside the grammar or Clinger's fast path. */
static inline const char *cell(const char *p, const char *end, double *out)
{
    int negative = 0;
    if (p < end && (*p == '-' || *p == '+'))
        negative = *p++ == '-';
    uint64_t w = 0;
    int significant = 0;
    int64_t e = 0;
    const char *start = p;
    for (; p < end && IS_DIGIT(*p); p++) {
        if (w != 0 || *p != '0') {
            if (++significant > MAX_DIGITS)
                return NULL;
            w = w * 10 + (uint64_t)(*p - '0');
        }
    }
    int digits = p > start;
    if (p < end && *p == '.') {
        for (start = ++p; p < end && IS_DIGIT(*p); p++, e--) {
            if (w != 0 || *p != '0') {
                if (++significant > MAX_DIGITS)
                    return NULL;
                w = w * 10 + (uint64_t)(*p - '0');
            }
        }
        digits |= p > start;
    }
    if (!digits) /* "", ".", "+", "-.", ... */
        return NULL;
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        int negative_exp = 0;
        if (p < end && (*p == '-' || *p == '+'))
            negative_exp = *p++ == '-';
        if (!(p < end && IS_DIGIT(*p)))
            return NULL;
        int64_t x = 0;
        for (; p < end && IS_DIGIT(*p); p++) {
            x = x * 10 + (*p - '0');
            if (x > 1000000) /* for pandas; and e cannot overflow */
                return NULL;
        }
        e += negative_exp ? -x : x;
    }
    if (w > MAX_EXACT || e < -MAX_POW || e > MAX_POW)
        return NULL;
    double v = e < 0 ? (double)w / POW10[-e] : (double)w * POW10[e];
    *out = negative ? -v : v;
    return p;
}

/* rows lines of cols cells each, the whole text, into out (rows x cols); rows, or -1. */
static Py_ssize_t parse_rows(const char *p, const char *end, char sep, double *out,
                             Py_ssize_t rows, Py_ssize_t cols)
{
    for (Py_ssize_t i = 0; i < rows; i++) {
        for (Py_ssize_t j = 0; j < cols; j++) {
            p = cell(p, end, out++);
            if (p == NULL)
                return -1;
            if (p < end && *p == (j + 1 < cols ? sep : '\n'))
                p++;
            else if (!(p == end && j + 1 == cols && i + 1 == rows))
                return -1; /* the last line of the text may lack its line end */
        }
    }
    return p == end ? rows : -1;
}

PyDoc_STRVAR(parse_doc,
             "parse(text, sep, out)\n\n"
             "Parse the bytes-like text, exactly rows lines of exactly cols cells separated\n"
             "by the byte sep, into out, a C-contiguous float64 (rows, cols) array; the GIL\n"
             "is released meanwhile. Returns rows, or -1 when anything in the text is outside\n"
             "the fast grammar (out then holds partial results). Never raises on the text.");

static PyObject *py_parse(PyObject *self, PyObject *args)
{
    Py_buffer text, out;
    int sep;
    PyObject *array;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*iO", &text, &sep, &array))
        return NULL;
    if (PyObject_GetBuffer(array, &out, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
        PyBuffer_Release(&text);
        return NULL;
    }
    PyObject *result = NULL;
    if (out.ndim != 2 || out.itemsize != 8 || strcmp(out.format, "d") != 0 || out.shape[1] < 1)
        PyErr_SetString(PyExc_ValueError, "out is not a C-contiguous float64 (rows, cols) array");
    else if (sep < 1 || sep > 127 || strchr("0123456789+-.eE\n", sep) != NULL)
        PyErr_SetString(PyExc_ValueError, "sep is not a separator byte");
    else {
        Py_ssize_t rows;
        const char *p = text.buf;
        Py_BEGIN_ALLOW_THREADS
        rows = parse_rows(p, p + text.len, (char)sep, out.buf, out.shape[0], out.shape[1]);
        Py_END_ALLOW_THREADS
        result = PyLong_FromSsize_t(rows);
    }
    PyBuffer_Release(&text);
    PyBuffer_Release(&out);
    return result;
}

static PyMethodDef methods[] = {
    {"parse", py_parse, METH_VARARGS, parse_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "cecheck._csvparse", "The C parser of plain CSV pieces.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__csvparse(void) { return PyModule_Create(&module); }
