/*
 * The fused loss kernel behind cecheck.fast: multiclass logits with index labels, the naive
 * and stable paths in float32 and float64 and the reference, one pass over each row.
 *
 * cecheck/losses.py is the specification; cecheck/fast.py documents how this kernel stays an
 * honest emulation of each path and dtype and what bound it keeps. In short:
 *
 *  - exp is a polynomial in float64 (Cody-Waite reduction, degree 11, about 1 ulp), written
 *    with explicit fma() so that a vector lane and a scalar call give the same bits. A
 *    float32 exp is that float64 exp rounded to float32.
 *  - "Tame" rows (every logit in [TAME_MIN, TAME_MAX]) take one exp per logit:
 *    exp(z - m) = exp(z) * exp(-m), and the float32 terms come from the float64 ones with
 *    the argument's float32 rounding error to first order. Other rows take a direct exp of
 *    every argument.
 *  - Sums are in the path's dtype: 16 lanes within a block of 128 terms, then the block
 *    results merged pairwise (a binary counter), as accurate as numpy's pairwise sum.
 *  - A row with a NaN or infinite logit, or a logit beyond the float32 range, is marked
 *    SPECIAL: the numpy specification recomputes it.
 *
 * Rows are independent: the caller splits them over threads (the GIL is released here).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define ISA_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define ISA_CLONES
#endif
#define INLINE static inline __attribute__((always_inline))

/* Bits of the per-row status byte (cecheck/fast.py reads them). */
enum { OVER32 = 1, UNDER32 = 2, OVER64 = 4, UNDER64 = 8, NONFINITE = 16, SPECIAL = 32 };

#define LANES 16      /* accumulators of a sum: one vector of float32 */
#define BLOCK 256     /* terms of a block, LANES at a time */
#define SMALL 16      /* the block of a row of at most this many classes */
#define BATCH 8       /* rows of at most SMALL classes computed together */
#define MAX_BLOCK 256 /* logits per block of the row max */
#define LEVELS 40     /* levels of the pairwise merge of block results */
#define TAME_MIN (-300.0) /* exp(z) * exp(-m) stays normal; */
#define TAME_MAX 80.0     /* ... and no float32 exp overflows */

/* ------------------------------------------------------------------ exp */

static const double LOG2E = 1.4426950408889634;
static const double SHIFTER = 6755399441055744.0; /* 1.5 * 2**52: x + SHIFTER rounds x */
static const double LN2_HI = 6.93147180369123816490e-01; /* 32 significant bits */
static const double LN2_LO = 1.90821492927058770002e-10;
static const double X_MAX = 709.782712893384; /* the largest float64 whose exp is finite */
/* (exp(r) - 1) / r on |r| <= ln(2)/2: least-squares fit on Chebyshev nodes in mpmath
 * (50 digits); truncation error 0.08 ulp of exp(r). */
static const double Q[11] = {
    1.0, 0.5000000000000006, 0.1666666666666668, 0.04166666666657306, 0.008333333333319589,
    0.0013888888932517304, 0.00019841269890078585, 2.4801504310983356e-05,
    2.75572408851544e-06, 2.762637210237089e-07, 2.5110049895858716e-08,
};

INLINE double from_bits(int64_t b)
{
    double d;
    memcpy(&d, &b, sizeof d);
    return d;
}

INLINE int64_t to_bits(double d)
{
    int64_t b;
    memcpy(&b, &d, sizeof b);
    return b;
}

/* exp(x) = 2**k * p for |x| <= 746: k = round(x / ln 2), p = exp(x - k ln 2) in [0.7, 1.42].
 * k comes as the bits of k + SHIFTER, whose low bits hold k in two's complement. */
INLINE double exp_reduced(double x, uint64_t *k_bits)
{
    double t = fma(x, LOG2E, SHIFTER);
    double kf = t - SHIFTER;
    *k_bits = (uint64_t)to_bits(t);
    double r = fma(-kf, LN2_HI, x);
    r = fma(-kf, LN2_LO, r);
    double q = fma(fma(fma(fma(fma(Q[10], r, Q[9]), r, Q[8]), r, Q[7]), r, Q[6]), r, Q[5]);
    q = fma(fma(fma(fma(fma(q, r, Q[4]), r, Q[3]), r, Q[2]), r, Q[1]), r, Q[0]);
    return fma(r, q, 1.0);
}

/* exp for |x| <= 300 (the result is normal): the scaling by 2**k is an exponent add, and
 * (k + SHIFTER's bits) << 52 is k << 52, SHIFTER's bits having 52 trailing zeros. */
INLINE double exp_tame(double x)
{
    uint64_t k_bits;
    double p = exp_reduced(x, &k_bits);
    return from_bits((int64_t)((uint64_t)to_bits(p) + (k_bits << 52)));
}

/* exp for every float64, with IEEE overflow, gradual underflow and NaN; equal to exp_tame
 * bit for bit where both apply (two exact scalings there, only the second may round). */
INLINE double exp_full(double x)
{
    double xc = x > -746.0 ? x : -746.0; /* NaN becomes -746 here; restored below */
    xc = xc < 710.0 ? xc : 710.0;
    uint64_t k_bits;
    double p = exp_reduced(xc, &k_bits);
    int64_t k = (int64_t)(k_bits - (uint64_t)to_bits(SHIFTER));
    int64_t k1 = k >> 1, k2 = k - k1;
    double y = (p * from_bits((k1 + 1023) << 52)) * from_bits((k2 + 1023) << 52); /* > 0 */
    y = y < DBL_MAX ? y : DBL_MAX;
    y = x > X_MAX ? INFINITY : y;
    return x != x ? x : y;
}

/* ------------------------------------------------------------------ sums */

typedef struct {
    double n64[LANES];  /* exp(z): naive float64 (direct rows only) */
    double s64[LANES];  /* exp(z - m): stable float64 (direct rows only) */
    double rest[LANES]; /* the reference's terms, j != argmax: exp(z - m), tame rows exp(z) */
    float n32[LANES];   /* float32 exp(z): naive float32 */
    float s32[LANES];   /* float32 exp(float32(z - m)): stable float32 */
} Lanes;

typedef struct {
    Lanes level[LEVELS];
    uint64_t count;
} Pairwise;

typedef struct {
    double n64, s64, rest;
    float n32, s32;
} Sums;

INLINE void lanes_zero(Lanes *a) { memset(a, 0, sizeof *a); }

INLINE void lanes_add(Lanes *a, const Lanes *b)
{
    for (int l = 0; l < LANES; l++) {
        a->n64[l] += b->n64[l];
        a->s64[l] += b->s64[l];
        a->rest[l] += b->rest[l];
        a->n32[l] += b->n32[l];
        a->s32[l] += b->s32[l];
    }
}

/* Merge one block's lanes as a binary counter merges: equal-sized partial sums are added,
 * so a term passes through log2(blocks) additions after its block. */
INLINE void pairwise_push(Pairwise *pw, Lanes *b)
{
    int lvl = 0;
    for (; (pw->count >> lvl) & 1; lvl++)
        lanes_add(b, &pw->level[lvl]);
    pw->level[lvl] = *b;
    pw->count++;
}

INLINE double tree64(double *v)
{
    for (int h = LANES / 2; h >= 1; h /= 2)
        for (int l = 0; l < h; l++)
            v[l] += v[l + h];
    return v[0];
}

INLINE float tree32(float *v)
{
    for (int h = LANES / 2; h >= 1; h /= 2)
        for (int l = 0; l < h; l++)
            v[l] += v[l + h];
    return v[0];
}

INLINE Sums lanes_total(Lanes *a)
{
    Sums s = {tree64(a->n64), tree64(a->s64), tree64(a->rest), tree32(a->n32), tree32(a->s32)};
    return s;
}

static Sums pairwise_total(Pairwise *pw)
{
    Lanes total;
    int first = 1;
    for (int lvl = 0; lvl < LEVELS; lvl++) {
        if (!((pw->count >> lvl) & 1))
            continue;
        if (first)
            total = pw->level[lvl];
        else
            lanes_add(&total, &pw->level[lvl]);
        first = 0;
    }
    return lanes_total(&total);
}

/* ------------------------------------------------------------------ one block */

INLINE double load(const void *z, int narrow, int j)
{
    return narrow ? (double)((const float *)z)[j] : ((const double *)z)[j];
}

/* The float32 term of the naive path from the float64 one: exp(v32) = exp(v) exp(v32 - v),
 * to first order (|v32 - v| <= 2**-24 |v|; the second-order term is below 2**-30 ulp). */
INLINE float naive32_tame(double v, double e, int narrow)
{
    return narrow ? (float)e : (float)fma(e, (double)(float)v - v, e);
}

/* A tame logit's terms: exp(v) (naive float64, and the reference's after scaling by
 * exp(-m)), its float32 rounding (naive float32) and the stable float32 term
 * exp(float32(v32 - m32)) = exp(v - m) exp(ds), ds being the float32 rounding error of the
 * shift, to first order. */
INLINE void tame_terms(double v, int narrow, double m64, float m32, double em, double *e,
                       float *e32, float *es32)
{
    float v32 = (float)v;
    *e = exp_tame(v);
    *e32 = naive32_tame(v, *e, narrow);
    double s = *e * em;
    double ds = (double)(float)(v32 - m32) - (v - m64);
    *es32 = (float)fma(s, ds, s);
}

/*
 * The terms of `width` logits at z (width is a constant at each call, so the loops have
 * fixed trip counts and vectorise whole). `masked`: count only the first `size` terms, and
 * leave index `kk` out of the reference's sum (the argmax: its term is added separately).
 * Without `masked` every term counts and none is the argmax.
 */
INLINE void block_tame(const void *z, int narrow, int width, int masked, int size, int kk,
                       double m64, float m32, double em, Lanes *b)
{
    double rest[LANES] = {0};
    float n32[LANES] = {0}, s32[LANES] = {0};
    for (int j0 = 0; j0 < width; j0 += LANES) {
        for (int l = 0; l < LANES; l++) {
            int j = j0 + l;
            double e;
            float e32, es32;
            tame_terms(load(z, narrow, j), narrow, m64, m32, em, &e, &e32, &es32);
            if (masked) {
                int in = j < size;
                n32[l] += in ? e32 : 0.0f;
                s32[l] += in ? es32 : 0.0f;
                rest[l] += (in & (j != kk)) ? e : 0.0;
            } else {
                n32[l] += e32;
                s32[l] += es32;
                rest[l] += e;
            }
        }
    }
    lanes_zero(b);
    memcpy(b->rest, rest, sizeof rest);
    memcpy(b->n32, n32, sizeof n32);
    memcpy(b->s32, s32, sizeof s32);
}

/* As block_tame for any finite logits: a direct exp of each of the four arguments. */
INLINE void block_direct(const void *z, int narrow, int width, int masked, int size, int kk,
                         double m64, float m32, int *over32, int *over64, Lanes *b)
{
    int o32 = 0, o64 = 0;
    lanes_zero(b);
    for (int j0 = 0; j0 < width; j0 += LANES) {
        for (int l = 0; l < LANES; l++) {
            int j = j0 + l;
            double v = load(z, narrow, j);
            float v32 = (float)v;
            double e = exp_full(v);
            float e32 = narrow ? (float)e : (float)exp_full((double)v32);
            double es = exp_full(v - m64);
            float es32 = (float)exp_full((double)(float)(v32 - m32));
            int in = masked ? j < size : 1;
            o64 |= in && e == INFINITY;
            o32 |= in && e32 == INFINITY;
            b->n64[l] += in ? e : 0.0;
            b->n32[l] += in ? e32 : 0.0f;
            b->s64[l] += in ? es : 0.0;
            b->s32[l] += in ? es32 : 0.0f;
            b->rest[l] += (in && (!masked || j != kk)) ? es : 0.0;
        }
    }
    *over32 |= o32;
    *over64 |= o64;
}

INLINE void block(const void *z, int narrow, int tame, int width, int masked, int size, int kk,
                  double m64, float m32, double em, int *over32, int *over64, Lanes *b)
{
    if (tame)
        block_tame(z, narrow, width, masked, size, kk, m64, m32, em, b);
    else
        block_direct(z, narrow, width, masked, size, kk, m64, m32, over32, over64, b);
}

/* A block of fewer than `width` logits, or the argmax's block: copied into a full block of
 * float64 (padding with the max, whose terms `masked` leaves out). float32 logits are exact
 * in float64, and their float32 terms come out the same bits from either (narrow32 with a
 * zero rounding error). */
INLINE void block_masked(const void *z, int narrow, int tame, int width, int size, int kk,
                         double m64, float m32, double em, int *over32, int *over64, Lanes *b)
{
    double pad[BLOCK];
    for (int j = 0; j < width; j++)
        pad[j] = j < size ? load(z, narrow, j) : m64;
    block(pad, 0, tame, width, 1, size, kk, m64, m32, em, over32, over64, b);
}

/* ------------------------------------------------------------------ one row */

/* Per lane of a block of MAX_BLOCK logits: the max, the min, and whether any is NaN, inf
 * or beyond the float32 range; in the logits' own type (twice the lanes for float32). */
#define LANE_SCAN(T, ABS)                                                                   \
    T top[LANES], bottom[LANES];                                                            \
    int odd[LANES];                                                                         \
    for (int l = 0; l < LANES; l++) {                                                      \
        top[l] = (T)best;                                                                   \
        bottom[l] = (T)low;                                                                 \
        odd[l] = 0;                                                                         \
    }                                                                                       \
    int whole = size - size % LANES;                                                        \
    for (int j = 0; j < whole; j += LANES) {                                                \
        for (int l = 0; l < LANES; l++) {                                                   \
            T v = ((const T *)z)[lo + j + l];                                               \
            top[l] = v > top[l] ? v : top[l];                                               \
            bottom[l] = v < bottom[l] ? v : bottom[l];                                      \
            odd[l] |= !(ABS(v) <= (T)FLT_MAX);                                              \
        }                                                                                   \
    }                                                                                       \
    for (int j = whole; j < size; j++) {                                                    \
        T v = ((const T *)z)[lo + j];                                                       \
        top[0] = v > top[0] ? v : top[0];                                                   \
        bottom[0] = v < bottom[0] ? v : bottom[0];                                          \
        odd[0] |= !(ABS(v) <= (T)FLT_MAX);                                                  \
    }                                                                                       \
    for (int l = 0; l < LANES; l++) {                                                      \
        block_top = top[l] > block_top ? top[l] : block_top;                               \
        low = bottom[l] < low ? bottom[l] : low;                                            \
        bad |= odd[l];                                                                      \
    }

/* The max, its first index and the row's status: SPECIAL (with NONFINITE) or tame or not. */
INLINE int row_max(const void *z, int narrow, int c, double *m, int *k, int *tame)
{
    double best = load(z, narrow, 0), low = best;
    int bad = 0, kb = 0;
    for (int lo = 0; lo < c; lo += MAX_BLOCK) {
        int size = c - lo < MAX_BLOCK ? c - lo : MAX_BLOCK;
        double block_top = best;
        if (narrow) {
            LANE_SCAN(float, fabsf)
        } else {
            LANE_SCAN(double, fabs)
        }
        if (block_top > best) {
            best = block_top;
            kb = lo;
        }
    }
    if (bad) {
        int nonfinite = 0;
        for (int j = 0; j < c; j++)
            nonfinite |= !isfinite(load(z, narrow, j));
        return SPECIAL | (nonfinite ? NONFINITE : 0);
    }
    int j = kb;
    while (load(z, narrow, j) != best)
        j++;
    *k = j;
    *m = best;
    *tame = low >= TAME_MIN && best <= TAME_MAX;
    return 0;
}

/* A tame row's sums leave the argmax's terms out: exp(m) for naive, 1 for stable. */
INLINE void tame_sums(Sums *s, double ek, double em)
{
    s->n64 = s->rest + ek;
    s->rest *= em;
    s->s64 = 1.0 + s->rest;
}

/* A row's five losses and status bits from its max, target logit, target terms and sums. */
INLINE void finish(double m64, double zt, double et, float et32, Sums s, int over32, int over64,
                   double *loss, Py_ssize_t stride, uint8_t *bits)
{
    float m32 = (float)m64, zt32 = (float)zt;
    /* naive: -log(e[t] / sum e) */
    float p32 = et32 / s.n32;
    double p64 = et / s.n64;
    loss[0] = 0.0 - (double)(float)log((double)p32);
    loss[stride] = 0.0 - log(p64);
    /* stable: log(sum exp(z - m)) - (z[t] - m) */
    float lse32 = (float)log((double)s.s32);
    loss[2 * stride] = (double)(float)(lse32 - (float)(zt32 - m32));
    loss[3 * stride] = log(s.s64) - (zt - m64);
    /* reference: (m - z[t]) + log1p(sum over j != argmax of exp(z_j - m)) */
    loss[4 * stride] = (m64 - zt) + log1p(s.rest);
    *bits = (uint8_t)((over32 ? OVER32 : 0) | (p32 == 0.0f ? UNDER32 : 0) |
                      (over64 ? OVER64 : 0) | (p64 == 0.0 ? UNDER64 : 0));
}

INLINE void row(const void *z, int narrow, int c, int64_t t, double *loss, Py_ssize_t stride,
                uint8_t *bits)
{
    double m64 = 0.0;
    int k = 0, tame = 0;
    int status = row_max(z, narrow, c, &m64, &k, &tame);
    if (status) {
        *bits = (uint8_t)status;
        for (int q = 0; q < 5; q++)
            loss[q * stride] = NAN;
        return;
    }
    float m32 = (float)m64;
    double em = tame ? exp_tame(-m64) : 0.0;
    int over32 = 0, over64 = 0;
    const size_t item = narrow ? 4 : 8;
    Sums s;
    Lanes b;
    if (c <= SMALL) {
        block_masked(z, narrow, tame, SMALL, c, k, m64, m32, em, &over32, &over64, &b);
        s = lanes_total(&b);
    } else {
        Pairwise pw;
        pw.count = 0;
        for (int lo = 0; lo < c; lo += BLOCK) {
            const void *zb = (const char *)z + (size_t)lo * item;
            int size = c - lo < BLOCK ? c - lo : BLOCK;
            if (size == BLOCK && (k < lo || k >= lo + BLOCK))
                block(zb, narrow, tame, BLOCK, 0, BLOCK, -1, m64, m32, em, &over32, &over64, &b);
            else
                block_masked(zb, narrow, tame, BLOCK, size, k - lo, m64, m32, em, &over32,
                             &over64, &b);
            pairwise_push(&pw, &b);
        }
        s = pairwise_total(&pw);
    }
    double zt = load(z, narrow, (int)t);
    double et;
    float et32;
    if (tame) {
        tame_sums(&s, exp_tame(m64), em);
        et = exp_tame(zt);
        et32 = naive32_tame(zt, et, narrow);
    } else {
        et = exp_full(zt);
        et32 = narrow ? (float)et : (float)exp_full((double)(float)zt);
    }
    finish(m64, zt, et, et32, s, over32, over64, loss, stride, bits);
}

/* Rows of at most SMALL classes, BATCH at a time with one row per vector lane (a row's own
 * vector would be mostly empty): the same steps as row() on tame rows, each row's terms
 * summed in order. Computes nothing and returns 0 unless every row of the batch is tame. */
INLINE int small_batch(const void *z, int narrow, int c, const int64_t *y, double *loss,
                       Py_ssize_t stride, uint8_t *bits)
{
    double tile[SMALL][BATCH]; /* logit j of row b at [j][b] */
    for (int b = 0; b < BATCH; b++)
        for (int j = 0; j < c; j++)
            tile[j][b] = load(z, narrow, b * c + j);
    double m[BATCH], low[BATCH], total[BATCH];
    int k[BATCH];
    for (int b = 0; b < BATCH; b++) {
        m[b] = low[b] = total[b] = tile[0][b];
        k[b] = 0;
    }
    for (int j = 1; j < c; j++) {
        for (int b = 0; b < BATCH; b++) {
            double v = tile[j][b];
            k[b] = v > m[b] ? j : k[b];
            m[b] = v > m[b] ? v : m[b];
            low[b] = v < low[b] ? v : low[b];
            total[b] += v; /* NaN if a logit is */
        }
    }
    int tame = 1;
    for (int b = 0; b < BATCH; b++)
        tame &= isfinite(total[b]) && low[b] >= TAME_MIN && m[b] <= TAME_MAX;
    if (!tame)
        return 0;
    double em[BATCH], rest[BATCH], et[BATCH], ek[BATCH];
    float m32[BATCH], n32[BATCH], s32[BATCH], et32[BATCH];
    for (int b = 0; b < BATCH; b++) {
        em[b] = exp_tame(-m[b]);
        m32[b] = (float)m[b];
        rest[b] = et[b] = ek[b] = 0.0;
        n32[b] = s32[b] = et32[b] = 0.0f;
    }
    for (int j = 0; j < c; j++) {
        for (int b = 0; b < BATCH; b++) {
            double e;
            float e32, es32;
            tame_terms(tile[j][b], narrow, m[b], m32[b], em[b], &e, &e32, &es32);
            n32[b] += e32;
            s32[b] += es32;
            rest[b] += j != k[b] ? e : 0.0;
            ek[b] = j == k[b] ? e : ek[b];
            et[b] = j == y[b] ? e : et[b];
            et32[b] = j == y[b] ? e32 : et32[b];
        }
    }
    for (int b = 0; b < BATCH; b++) {
        Sums s = {0.0, 0.0, rest[b], n32[b], s32[b]};
        tame_sums(&s, ek[b], em[b]);
        finish(m[b], tile[y[b]][b], et[b], et32[b], s, 0, 0, loss + b, stride, bits + b);
    }
    return 1;
}

INLINE void rows(const void *z, int narrow, Py_ssize_t c, const int64_t *y, double *loss,
                 Py_ssize_t n, uint8_t *bits, Py_ssize_t lo, Py_ssize_t hi)
{
    const size_t row_bytes = (size_t)c * (narrow ? 4 : 8);
    for (Py_ssize_t i = lo; i < hi;) {
        if (c <= SMALL && hi - i >= BATCH) {
            const void *zi = (const char *)z + (size_t)i * row_bytes;
            if (!small_batch(zi, narrow, (int)c, y + i, loss + i, n, bits + i))
                for (Py_ssize_t b = i; b < i + BATCH; b++)
                    row((const char *)z + (size_t)b * row_bytes, narrow, (int)c, y[b], loss + b,
                        n, bits + b);
            i += BATCH;
        } else {
            row((const char *)z + (size_t)i * row_bytes, narrow, (int)c, y[i], loss + i, n,
                bits + i);
            i++;
        }
    }
}

ISA_CLONES static void rows32(const float *z, Py_ssize_t c, const int64_t *y, double *loss,
                              Py_ssize_t n, uint8_t *bits, Py_ssize_t lo, Py_ssize_t hi)
{
    rows(z, 1, c, y, loss, n, bits, lo, hi);
}

ISA_CLONES static void rows64(const double *z, Py_ssize_t c, const int64_t *y, double *loss,
                              Py_ssize_t n, uint8_t *bits, Py_ssize_t lo, Py_ssize_t hi)
{
    rows(z, 0, c, y, loss, n, bits, lo, hi);
}

ISA_CLONES static void exp_each(const double *x, double *out, Py_ssize_t n, int tame)
{
    for (Py_ssize_t i = 0; i < n; i++)
        out[i] = tame ? exp_tame(x[i]) : exp_full(x[i]);
}

/* ------------------------------------------------------------------ Python */

static int check_size(Py_buffer *b, Py_ssize_t want, const char *name)
{
    if (b->len != want) {
        PyErr_Format(PyExc_ValueError, "%s holds %zd bytes, expected %zd", name, b->len, want);
        return 0;
    }
    return 1;
}

PyDoc_STRVAR(multiclass_index_doc,
             "multiclass_index(z, itemsize, n, c, y, loss, bits, lo, hi)\n\n"
             "Rows lo..hi of C-contiguous (n, c) logits z (float32 if itemsize is 4, else\n"
             "float64) with int64 targets y in [0, c): losses into the float64 (5, n) buffer\n"
             "loss (naive32, naive64, stable32, stable64, reference) and status bits into the\n"
             "uint8 (n,) buffer bits. Releases the GIL.");

static PyObject *py_multiclass_index(PyObject *self, PyObject *args)
{
    Py_buffer z, y, loss, bits;
    Py_ssize_t itemsize, n, c, lo, hi;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*nnny*w*w*nn", &z, &itemsize, &n, &c, &y, &loss, &bits, &lo,
                          &hi))
        return NULL;
    PyObject *result = NULL;
    if ((itemsize != 4 && itemsize != 8) || n < 0 || c < 1 || c > INT32_MAX || lo < 0 ||
        hi > n || lo > hi) {
        PyErr_SetString(PyExc_ValueError, "bad itemsize, shape or row range");
        goto done;
    }
    if (!check_size(&z, n * c * itemsize, "z") || !check_size(&y, n * 8, "y") ||
        !check_size(&loss, 5 * n * 8, "loss") || !check_size(&bits, n, "bits"))
        goto done;
    const int64_t *yy = y.buf;
    for (Py_ssize_t i = lo; i < hi; i++) {
        if (yy[i] < 0 || yy[i] >= c) {
            PyErr_Format(PyExc_ValueError, "target %lld of row %zd is not in [0, %zd)",
                         (long long)yy[i], i, c);
            goto done;
        }
    }
    Py_BEGIN_ALLOW_THREADS
    if (itemsize == 4)
        rows32(z.buf, c, yy, loss.buf, n, bits.buf, lo, hi);
    else
        rows64(z.buf, c, yy, loss.buf, n, bits.buf, lo, hi);
    Py_END_ALLOW_THREADS
    result = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&z);
    PyBuffer_Release(&y);
    PyBuffer_Release(&loss);
    PyBuffer_Release(&bits);
    return result;
}

PyDoc_STRVAR(exp_doc, "exp(x, out, tame)\n\n"
                      "The kernel's exp of each float64 in x into out: exp_tame (for |x| <= 300)\n"
                      "if tame, else exp_full. For tests.");

static PyObject *py_exp(PyObject *self, PyObject *args)
{
    Py_buffer x, out;
    int tame;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*w*p", &x, &out, &tame))
        return NULL;
    PyObject *result = NULL;
    if (x.len % 8 == 0 && check_size(&out, x.len, "out")) {
        exp_each(x.buf, out.buf, x.len / 8, tame);
        result = Py_NewRef(Py_None);
    } else if (!PyErr_Occurred()) {
        PyErr_SetString(PyExc_ValueError, "x is not a float64 buffer");
    }
    PyBuffer_Release(&x);
    PyBuffer_Release(&out);
    return result;
}

static PyMethodDef methods[] = {
    {"multiclass_index", py_multiclass_index, METH_VARARGS, multiclass_index_doc},
    {"exp", py_exp, METH_VARARGS, exp_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "cecheck._kernel", "The fused loss kernel of cecheck.fast.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__kernel(void) { return PyModule_Create(&module); }
