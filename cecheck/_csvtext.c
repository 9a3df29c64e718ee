/*
 * The CSV report's lines (cecheck/output/csvtext.py) from a chunk's columns: float64 values
 * spelled as Python's "%.17g" % value spells them (17 significant digits, correctly rounded,
 * trailing zeros dropped; nan, inf, -inf; -0), integers in decimal, texts as given, the
 * cells of a row joined by commas.
 *
 * The fast path computes the 17 digits exactly in 128-bit integers: x = m * 2^e with m an
 * integer below 2^53, and x * 10^s = m * 5^s * 2^(s + e) for s = 16 - floor(log10 x), which
 * fits in 128 bits for 1e-16 <= x < 1e17; the exponent is chosen on the digits before
 * rounding, and the shift rounds half to even on the exact value,
 * as Python's dtoa and the C library's printf do. Other values (subnormal, tiny or huge)
 * take snprintf("%.17g"), which is correctly rounded too; NaN is "nan" whatever its sign.
 *
 * And the line ends of a plain CSV/TSV text (cecheck/inputs/csv_arrow.py), counted in one
 * pass over its bytes, 16 at once (SSE2): a byte classifier, not a parser.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

typedef unsigned __int128 u128;

#define MAX_CELL 32 /* "-1.2345678901234567e-308" is 24 characters */
#define MAX_POW5 32

static u128 POW5[MAX_POW5 + 1];
static const uint64_t E16 = 10000000000000000ULL, E17 = 100000000000000000ULL;

/* The 17 significant digits of x > 0, correctly rounded, as an integer in [1e16, 1e17), and
 * the decimal exponent of the first; 0 when x is outside the fast path's range. */
static int digits17(double x, uint64_t *digits, int *exponent)
{
    int e2;
    double fraction = frexp(x, &e2);
    uint64_t m = (uint64_t)ldexp(fraction, 53);
    int e = e2 - 53, k = (int)floor(log10(x));
    for (int attempt = 0; attempt < 3; attempt++) {
        int s = 16 - k;
        if (s < 0 || s > MAX_POW5)
            return 0;
        u128 p = (u128)m * (uint64_t)POW5[s]; /* POW5[s] < 2^75: multiply in two halves */
        p += ((u128)m * (uint64_t)(POW5[s] >> 64)) << 64;
        int shift = -(s + e); /* x * 10^s = p / 2^shift */
        u128 q, rest = 0, half = 0;
        if (shift <= 0) {
            if (shift < -8)
                return 0;
            q = p << -shift;
        } else {
            if (shift > 120)
                return 0;
            q = p >> shift;
            rest = p - (q << shift);
            half = (u128)1 << (shift - 1);
        }
        if (q >= E17) { /* the exponent is decided on the digits before rounding */
            k++;
            continue;
        }
        if (q < E16) {
            k--;
            continue;
        }
        if (rest > half || (rest == half && rest && (q & 1)))
            q++;
        if (q == E17) { /* 99999999999999999.5 rounds to 1e17: the next power of ten */
            q = E16;
            k++;
        }
        *digits = (uint64_t)q;
        *exponent = k;
        return 1;
    }
    return 0;
}

/* x as "%.17g" spells it, at out; returns the length. */
static int g17(double x, char *out)
{
    char *p = out;
    if (isnan(x)) {
        memcpy(p, "nan", 3);
        return 3;
    }
    if (signbit(x)) {
        *p++ = '-';
        x = -x;
    }
    if (isinf(x)) {
        memcpy(p, "inf", 3);
        return (int)(p - out) + 3;
    }
    if (x == 0) {
        *p++ = '0';
        return (int)(p - out);
    }
    uint64_t q;
    int exponent;
    if (!digits17(x, &q, &exponent))
        return (int)(p - out) + snprintf(p, MAX_CELL, "%.17g", x);
    char d[17];
    for (int i = 16; i >= 0; i--) {
        d[i] = (char)('0' + q % 10);
        q /= 10;
    }
    int n = 17; /* the digits kept: trailing zeros go */
    while (n > 1 && d[n - 1] == '0')
        n--;
    if (exponent < -4 || exponent >= 17) { /* d.ddde-XX */
        *p++ = d[0];
        if (n > 1) {
            *p++ = '.';
            memcpy(p, d + 1, n - 1);
            p += n - 1;
        }
        *p++ = 'e';
        *p++ = exponent < 0 ? '-' : '+';
        int a = exponent < 0 ? -exponent : exponent;
        if (a >= 100)
            *p++ = (char)('0' + a / 100);
        *p++ = (char)('0' + a / 10 % 10);
        *p++ = (char)('0' + a % 10);
    } else if (exponent >= 0) { /* ddd.ddd */
        memcpy(p, d, exponent + 1);
        p += exponent + 1;
        if (n > exponent + 1) {
            *p++ = '.';
            memcpy(p, d + exponent + 1, n - exponent - 1);
            p += n - exponent - 1;
        }
    } else { /* 0.000ddd */
        *p++ = '0';
        *p++ = '.';
        for (int i = -1; i > exponent; i--)
            *p++ = '0';
        memcpy(p, d, n);
        p += n;
    }
    return (int)(p - out);
}

/* The digits of v at out; returns the length. */
static int decimal(long long v, char *out)
{
    char d[24];
    int n = 0, len = 0;
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    do {
        d[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        out[len++] = '-';
    while (n)
        out[len++] = d[--n];
    return len;
}

/* One column of lines(): float64 or int64 numbers, an index (a tuple of int64 buffers, one per
 * axis), or texts (a list of str, written as they are). */
enum { FLOATS, INTEGERS, INDEX, TEXTS };
typedef struct {
    int kind;
    int axes;            /* the buffers of an index; 1 otherwise (0 for texts) */
    Py_buffer views[8];  /* an index has at most 8 axes; a number column uses views[0] */
    const char **texts;  /* TEXTS: each row's UTF-8, and its length */
    Py_ssize_t *lengths;
} Column;

static int open_buffer(PyObject *obj, Py_buffer *v, Py_ssize_t *n, int *kind)
{
    if (PyObject_GetBuffer(obj, v, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0)
        return -1;
    const char *f = v->format;
    if (f[0] == '<' || f[0] == '=' || f[0] == '@')
        f++;
    int is_float = strcmp(f, "d") == 0;
    int is_int = v->itemsize == 8 && (strcmp(f, "q") == 0 || strcmp(f, "l") == 0);
    if (v->ndim != 1 || !(is_float || is_int) || (*n >= 0 && v->shape[0] != *n)) {
        PyBuffer_Release(v);
        PyErr_SetString(PyExc_TypeError,
                        "lines() takes 1-d float64 or int64 buffers of one length");
        return -1;
    }
    *n = v->shape[0];
    *kind = is_float ? FLOATS : INTEGERS;
    return 0;
}

static void close_column(Column *c)
{
    for (int a = 0; a < c->axes; a++)
        PyBuffer_Release(&c->views[a]);
    PyMem_Free(c->texts);
    PyMem_Free(c->lengths);
}

/* Opens column obj of n rows (n < 0: not known yet); adds its widest line part to *width and
 * its texts' lengths to *texts_size. */
static int open_column(PyObject *obj, Column *c, Py_ssize_t *n, size_t *width, size_t *texts_size)
{
    memset(c, 0, sizeof(*c));
    if (PyList_Check(obj)) {
        Py_ssize_t rows = PyList_GET_SIZE(obj);
        if (*n >= 0 && rows != *n) {
            PyErr_SetString(PyExc_ValueError, "lines() takes columns of one length");
            return -1;
        }
        *n = rows;
        c->kind = TEXTS;
        c->texts = PyMem_Malloc((rows > 0 ? rows : 1) * sizeof(char *));
        c->lengths = PyMem_Malloc((rows > 0 ? rows : 1) * sizeof(Py_ssize_t));
        if (c->texts == NULL || c->lengths == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        for (Py_ssize_t i = 0; i < rows; i++) {
            PyObject *t = PyList_GET_ITEM(obj, i);
            if (!PyUnicode_Check(t)) {
                PyErr_SetString(PyExc_TypeError, "lines() takes lists of str");
                return -1;
            }
            c->texts[i] = PyUnicode_AsUTF8AndSize(t, &c->lengths[i]);
            if (c->texts[i] == NULL)
                return -1;
            *texts_size += (size_t)c->lengths[i];
        }
        *width += 1;
        return 0;
    }
    if (PyTuple_Check(obj)) {
        Py_ssize_t axes = PyTuple_GET_SIZE(obj);
        if (axes < 1 || axes > 8) {
            PyErr_SetString(PyExc_ValueError, "lines() takes an index of 1 to 8 axes");
            return -1;
        }
        for (; c->axes < axes; c->axes++) {
            int kind;
            if (open_buffer(PyTuple_GET_ITEM(obj, c->axes), &c->views[c->axes], n, &kind) < 0)
                return -1;
            if (kind != INTEGERS) {
                c->axes++;
                PyErr_SetString(PyExc_TypeError, "lines() takes an index of int64 buffers");
                return -1;
            }
        }
        c->kind = INDEX;
        *width += (size_t)axes * 21 + 3;
        return 0;
    }
    if (open_buffer(obj, &c->views[0], n, &c->kind) < 0)
        return -1;
    c->axes = 1;
    *width += MAX_CELL + 1;
    return 0;
}

static char *write_cell(const Column *c, Py_ssize_t i, char *p)
{
    switch (c->kind) {
    case FLOATS:
        return p + g17(((const double *)c->views[0].buf)[i], p);
    case INTEGERS:
        return p + decimal(((const long long *)c->views[0].buf)[i], p);
    case INDEX:
        if (c->axes > 1)
            *p++ = '"';
        for (int a = 0; a < c->axes; a++) {
            if (a)
                *p++ = ',';
            p += decimal(((const long long *)c->views[a].buf)[i], p);
        }
        if (c->axes > 1)
            *p++ = '"';
        return p;
    default:
        memcpy(p, c->texts[i], (size_t)c->lengths[i]);
        return p + c->lengths[i];
    }
}

PyDoc_STRVAR(lines_doc,
             "lines(columns) -> str\n\n"
             "The rows of ``columns`` as lines of comma-separated cells, each line ended by a\n"
             "newline. A column is a C-contiguous 1-d buffer of float64 (each value spelled as\n"
             "\"%.17g\" % value) or int64 (in decimal), a tuple of int64 buffers (an index: the\n"
             "numbers joined by commas, in quotes if more than one), or a list of str (written\n"
             "as they are: quote them first). Every column has the same length.");

static PyObject *py_lines(PyObject *self, PyObject *arg)
{
    PyObject *seq = PySequence_Fast(arg, "lines() takes a sequence of columns");
    if (seq == NULL)
        return NULL;
    Py_ssize_t k = PySequence_Fast_GET_SIZE(seq), n = -1, ready = 0;
    Column *columns = PyMem_Calloc(k > 0 ? k : 1, sizeof(Column));
    PyObject *result = NULL;
    char *text = NULL;
    size_t width = 0, texts_size = 0;
    if (columns == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (; ready < k; ready++) {
        if (open_column(PySequence_Fast_GET_ITEM(seq, ready), &columns[ready], &n, &width,
                        &texts_size) < 0) {
            ready++;
            goto done;
        }
    }
    if (k == 0 || n <= 0) {
        result = PyUnicode_New(0, 127);
        goto done;
    }
    text = PyMem_RawMalloc((size_t)n * width + texts_size);
    if (text == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    char *p = text;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        for (Py_ssize_t j = 0; j < k; j++) {
            p = write_cell(&columns[j], i, p);
            *p++ = j + 1 < k ? ',' : '\n';
        }
    }
    Py_END_ALLOW_THREADS
    result = PyUnicode_DecodeUTF8(text, p - text, "strict");
done:
    for (Py_ssize_t j = 0; j < ready; j++)
        close_column(&columns[j]);
    PyMem_Free(columns);
    PyMem_RawFree(text);
    Py_DECREF(seq);
    return result;
}

/* Whether the byte c, after the byte p, keeps a text plain (see plain_lines_doc): 0 if it is
 * below '#' and not a line end or separator (tab, a TSV text's), or starts a line blank. */
static inline int plain_byte(unsigned char p, unsigned char c, unsigned char tab)
{
    return !(((c < '#') & (c != '\n') & (c != tab)) | ((p == '\n') & ((c == '\n') | (c == tab))));
}

#ifdef __SSE2__
#include <emmintrin.h>

#define VECTORS 255 /* 16-byte vectors counted at once: their line ends fit in a byte a lane */

/* The line ends in a[from:to] (to - from a multiple of 16, from >= 1), or -1 if a byte of it
 * is not plain; 16 bytes at once, each against the byte before it (an unaligned load one
 * byte back): the same tests as plain_byte, on all 16 lanes. SSE2 is in every x86-64 CPU. */
static long long plain_lines_sse2(const unsigned char *a, Py_ssize_t from, Py_ssize_t to,
                                  unsigned char tab)
{
    const __m128i nl = _mm_set1_epi8('\n'), sep = _mm_set1_epi8((char)tab);
    const __m128i below = _mm_set1_epi8('#' - 1), zero = _mm_setzero_si128();
    long long lines = 0;
    for (Py_ssize_t at = from; at < to;) {
        Py_ssize_t stop = to - at < 16 * VECTORS ? to : at + 16 * VECTORS;
        __m128i ends = zero, bad = zero;
        for (; at < stop; at += 16) {
            __m128i c = _mm_loadu_si128((const __m128i *)(a + at));
            __m128i p = _mm_loadu_si128((const __m128i *)(a + at - 1));
            __m128i is_nl = _mm_cmpeq_epi8(c, nl);
            __m128i is_end = _mm_or_si128(is_nl, _mm_cmpeq_epi8(c, sep));
            /* unsigned c <= '"': min(c, '"') == c */
            __m128i low = _mm_cmpeq_epi8(_mm_min_epu8(c, below), c);
            __m128i blank = _mm_and_si128(_mm_cmpeq_epi8(p, nl), is_end);
            bad = _mm_or_si128(bad, _mm_or_si128(_mm_andnot_si128(is_end, low), blank));
            ends = _mm_sub_epi8(ends, is_nl); /* -1 where a line end: one more */
        }
        if (_mm_movemask_epi8(bad))
            return -1;
        __m128i sums = _mm_sad_epu8(ends, zero); /* two 64-bit sums of 8 lanes each */
        lines += _mm_cvtsi128_si32(sums) + _mm_cvtsi128_si32(_mm_srli_si128(sums, 8));
    }
    return lines;
}
#endif

/* The line ends in a[0:n], or -1 if the text is not plain (see plain_lines_doc); *last: the
 * byte before a[0] ('\n' at a line start), then the last byte of a. The bytes are looked at
 * 16 at once where SSE2 is, the others (and the first, and the last few) one by one: the
 * tests are the same, and so is the count. */
static long long plain_lines(const unsigned char *a, Py_ssize_t n, int tsv, unsigned char *last)
{
    if (n == 0)
        return 0;
    unsigned char tab = tsv ? '\t' : '\n'; /* a tab is a separator in a TSV text */
    long long lines = a[0] == '\n';
    if (!plain_byte(*last, a[0], tab))
        return -1;
    Py_ssize_t at = 1;
#ifdef __SSE2__
    Py_ssize_t vectors = (n - 1) / 16 * 16;
    long long counted = plain_lines_sse2(a, 1, 1 + vectors, tab);
    if (counted < 0)
        return -1;
    lines += counted;
    at += vectors;
#endif
    int good = 1;
    for (; at < n; at++) {
        lines += a[at] == '\n';
        good &= plain_byte(a[at - 1], a[at], tab);
    }
    if (!good)
        return -1;
    *last = a[n - 1];
    return lines;
}

PyDoc_STRVAR(plain_lines_doc,
             "plain_lines(text, tsv, last) -> (lines, last)\n\n"
             "The line ends (\"\\n\") in the bytes ``text``, and its last byte, if the text is\n"
             "plain; lines -1 if not. Plain: no byte below '#' (a quote, a space, a control\n"
             "character, \"\\r\") but \"\\n\" and, where ``tsv``, a tab; and no line that\n"
             "starts with \"\\n\" (or, where ``tsv``, a tab). ``last``: the byte before the\n"
             "text (10, \"\\n\", at the start of a line). The GIL is released while counting.");

static PyObject *py_plain_lines(PyObject *self, PyObject *args)
{
    Py_buffer v;
    int tsv;
    unsigned char last;
    if (!PyArg_ParseTuple(args, "y*pb", &v, &tsv, &last))
        return NULL;
    long long lines;
    Py_BEGIN_ALLOW_THREADS
    lines = plain_lines((const unsigned char *)v.buf, v.len, tsv, &last);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&v);
    return Py_BuildValue("(Li)", lines, (int)last);
}

static PyMethodDef methods[] = {
    {"lines", py_lines, METH_O, lines_doc},
    {"plain_lines", py_plain_lines, METH_VARARGS, plain_lines_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "cecheck._csvtext", "The CSV report's numbers as text; the line ends of a plain CSV.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__csvtext(void)
{
    POW5[0] = 1;
    for (int s = 1; s <= MAX_POW5; s++)
        POW5[s] = POW5[s - 1] * 5;
    return PyModule_Create(&module);
}
