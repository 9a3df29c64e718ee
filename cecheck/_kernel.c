/*
 * The fused loss kernels behind cecheck.fast: multiclass logits with index labels or soft
 * targets, and binary or multilabel logits with their targets; the textbook path, PyTorch's
 * naive and stable paths in float32 and float64 and the reference, one pass over each row
 * (two for soft targets). In the code "naive" (n64, n32) is the textbook path, the
 * unshifted softmax; PyTorch's naive path is "f" (the framework's: f64, f32).
 *
 * cecheck/losses.py and cecheck/frameworks/torch_naive.py and torch_fused.py are the
 * specification; cecheck/fast.py documents how these kernels stay
 * an honest emulation of each path and dtype and what bound they keep. In short:
 *
 *  - exp is a polynomial in float64 (Cody-Waite reduction, degree 11, about 1 ulp), log is
 *    fdlibm's, both written without branches so that they vectorise, and with explicit
 *    fma() so that a vector lane and a scalar call give the same bits. A float32 exp or log
 *    is the float64 one rounded to float32.
 *  - Multiclass "tame" rows (every logit in [TAME_MIN, TAME_MAX]) take one exp per logit:
 *    exp(z - m) = exp(z) * exp(-m), and the float32 terms come from the float64 ones with
 *    the argument's float32 rounding error to first order. Other rows take a direct exp of
 *    every argument. Sigmoid terms take one exp per logit, exp(-|z|).
 *  - Sums are in the path's dtype: 16 lanes within a block of 256 terms, then the block
 *    results merged pairwise (a binary counter), as accurate as numpy's pairwise sum.
 *  - A row with a NaN or infinite logit (or target), or a logit beyond the float32 range,
 *    is marked SPECIAL: the numpy specification recomputes it.
 *
 * Rows are independent: the caller splits them over threads (the GIL is released here).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* The entry points are compiled once per instruction set, FOR_EACH_ISA(DEF) calling
 * DEF(suffix, name, attribute) for each, best first; the module picks the best one the CPU
 * runs (or the one CECHECK_KERNEL_ISA names) when it is imported. Every copy gives the same
 * bits: each step is an IEEE operation or an explicit fma(), lane by lane. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define X86_ISAS 1
#define FOR_EACH_ISA(DEF)                                                                  \
    DEF(v4, "x86-64-v4", __attribute__((target("arch=x86-64-v4"))))                        \
    DEF(v3, "x86-64-v3", __attribute__((target("arch=x86-64-v3"))))                        \
    DEF(base, "default", )
#else
#define FOR_EACH_ISA(DEF) DEF(base, "default", )
#endif
#define INLINE static inline __attribute__((always_inline))

/* Bits of the per-row status word (cecheck/fast.py reads them): the textbook path's
 * evidence, the row's input status, then the framework's naive path's evidence. */
enum {
    OVER32 = 1, UNDER32 = 2, OVER64 = 4, UNDER64 = 8, NONFINITE = 16, SPECIAL = 32,
    NUNDER32 = 64, NUNDER64 = 128,
};

/* The losses of a row, one output row each (cecheck/fast.py reads them in this order): the
 * textbook path in float32 and float64, the framework's stable path in float32 and float64,
 * the reference, the framework's naive path in float32 and float64. */
#define N_OUT 7

#define LANES 16      /* accumulators of a sum: one vector of float32 */
#define BLOCK 256     /* terms of a block, LANES at a time */
#define SMALL 16      /* the block of a row of at most this many classes */
#define BATCH 8       /* rows of at most SMALL classes computed together */
#define MAX_BLOCK 256 /* logits per block of the row max (as merged for a zero max or min) */
#define SCAN_BLOCK 4096 /* logits per block of the row max (as merged for the others) */
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

INLINE uint32_t f32_bits(float x)
{
    uint32_t b;
    memcpy(&b, &x, sizeof b);
    return b;
}

INLINE float f32_from(uint32_t b)
{
    float x;
    memcpy(&x, &b, sizeof x);
    return x;
}

/* (double)(float)x, the float64 value of x rounded to float32 (to nearest, ties to even;
 * +-inf beyond the float32 range, NaN stays NaN), without the two conversions: GCC 12 folds
 * a vectorised (vector(8) double)(vector(8) float)v into v (its value numbering pass after
 * the vectoriser, on 512-bit vectors, where eight doubles and eight floats convert
 * directly), so that (double)(float)v - v, the float32 rounding error the float32 terms are
 * corrected by, came out 0 in the x86-64-v4 build only. Here: v + c rounds v to the float32
 * grid of v's binade (c = 1.5 * 2**(e + 29), e being v's exponent, at least float32's
 * smallest normal's: its ulp is a float32 ulp at v) and - c is exact. */
INLINE double round32(double x)
{
    uint64_t e = ((uint64_t)to_bits(x) >> 52) & 0x7ff;
    e = e < 1023 - 126 ? 1023 - 126 : e;
    e = e > 1023 + 128 ? 1023 + 128 : e; /* inf stays inf, NaN NaN; beyond: inf below */
    double c = from_bits((int64_t)(((e + 29) << 52) | ((uint64_t)1 << 51)));
    double r = copysign((x + c) - c, x); /* -0.0, and a negative rounding to zero */
    return fabs(r) > FLT_MAX ? copysign(INFINITY, x) : r;
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

/* ------------------------------------------------------------------ log */

/* fdlibm's __ieee754_log (Sun Microsystems, 1993: "Permission to use, copy, modify, and
 * distribute this software is freely granted, provided that this notice is preserved"),
 * written without branches so that it vectorises: log(x) = k ln2 + log(1 + f) with
 * 1 + f in [sqrt(2)/2, sqrt(2)), log(1 + f) = f - s (f - R) from s = f / (2 + f) and a
 * degree-14 polynomial R in s (error below 1 ulp). For x >= 0, inf and NaN (log(0) = -inf):
 * the kernels take logs of probabilities, sums of exps and 1 + exp(-|z|) only. */
static const double LG1 = 6.666666666666735130e-01, LG2 = 3.999999999940941908e-01,
                    LG3 = 2.857142874366239149e-01, LG4 = 2.222219843214978396e-01,
                    LG5 = 1.818357216161805012e-01, LG6 = 1.531383769920937332e-01,
                    LG7 = 1.479819860511658591e-01;

/* c ? a : b, as a bitwise blend: a ?: would keep the vectoriser from computing the
 * dropped value (which could raise a floating-point exception) in every lane. */
INLINE double pick(int c, double a, double b)
{
    uint64_t m = 0 - (uint64_t)(c != 0);
    return from_bits((int64_t)(((uint64_t)to_bits(a) & m) | ((uint64_t)to_bits(b) & ~m)));
}

INLINE double log_pos(double x)
{
    int sub = x < DBL_MIN; /* zero or subnormal: scale into the normal range first */
    double xs = sub ? x * 0x1p54 : x;
    uint64_t bits = (uint64_t)to_bits(xs);
    /* Unsigned shifts, and k converted to double without an int64 conversion: AVX2 has
     * neither an arithmetic 64-bit shift nor that conversion, and without them the loops
     * that call this vectorise there too (3x faster). */
    uint64_t hx = bits >> 32;
    uint64_t i = ((hx & 0x000fffff) + 0x95f64) & 0x100000; /* mantissa >= sqrt(2): halve it */
    uint64_t m = (((hx & 0x000fffff) | (i ^ 0x3ff00000)) << 32) | (bits & 0xffffffffu);
    /* k = exponent - 1023 (- 54 if scaled, + 1 if halved), as 2**52 + 2**31 + k in a
     * double's bits less 2**52 + 2**31: exact */
    uint64_t k = (hx >> 20) + (i >> 20) + 0x80000000u - 1023 - (sub ? 54 : 0);
    double dk = from_bits((int64_t)(0x4330000000000000u | k)) - 0x1.00000800p52;
    double f = from_bits((int64_t)m) - 1.0;
    double s = f / (2.0 + f);
    double z = s * s, w = z * z;
    double t1 = w * (LG2 + w * (LG4 + w * LG6));
    double t2 = z * (LG1 + w * (LG3 + w * (LG5 + w * LG7)));
    double r = t2 + t1;
    double hfsq = 0.5 * f * f;
    double y = dk * LN2_HI - ((hfsq - (s * (hfsq + r) + dk * LN2_LO)) - f);
    y = pick(x == 0.0, -INFINITY, y);
    return pick((x != x) | (x == INFINITY), x, y); /* NaN and inf are their own logs */
}

/* log1p(x) for x >= 0: log(u) for u = 1 + x, corrected by the rounding error of u (exact
 * when u == 1: then log1p(x) = x to within x**2 / 2). */
INLINE double log1p_pos(double x)
{
    double u = 1.0 + x;
    double y = log_pos(u) - ((u - 1.0) - x) / u;
    return pick(u == 1.0, x, y);
}

/* log1p(-x) for x in [0, 1], as log1p_pos (log(1 - 1) = -inf): the log of 1 - p for a
 * probability p. */
INLINE double log1p_neg(double x)
{
    double u = 1.0 - x;
    double y = log_pos(u) - ((u - 1.0) + x) / u;
    y = pick(u == 1.0, -x, y);
    return pick(u == 0.0, -INFINITY, y);
}

/* ------------------------------------------------------------------ sums */

/* A row's seven sums, LANES partial sums each: of the multiclass terms (as below; the
 * textbook path is "naive" here), or of the soft and sigmoid kernels' per-class losses
 * (textbook64, stable64, reference, textbook32, stable32, the framework's naive64 and 32). */
typedef struct {
    double n64[LANES];  /* exp(z): naive float64 (direct rows only) */
    double s64[LANES];  /* exp(z - m): stable float64 (direct rows only) */
    double rest[LANES]; /* the reference's terms, j != argmax: exp(z - m), tame rows exp(z) */
    float n32[LANES];   /* float32 exp(z): naive float32 */
    float s32[LANES];   /* float32 exp(float32(z - m)): stable float32 */
    double f64[LANES];  /* the framework's naive float64 (soft and sigmoid rows only) */
    float f32[LANES];   /* the framework's naive float32 (soft and sigmoid rows only) */
} Lanes;

typedef struct {
    Lanes level[LEVELS];
    uint64_t count;
} Pairwise;

typedef struct {
    double n64, s64, rest;
    float n32, s32;
    double f64;
    float f32;
} Sums;

INLINE void lanes_zero(Lanes *a) { memset(a, 0, sizeof *a); }

/* A tame multiclass row's blocks fill three of the sums (block_tame): `tame` (a row's
 * constant) adds and copies only those, the others being unset there (this and the memset
 * block_tame no longer does were 4% of the multiclass kernel). */
INLINE void lanes_add(Lanes *a, const Lanes *b, int tame)
{
    for (int l = 0; l < LANES; l++) {
        a->rest[l] += b->rest[l];
        a->n32[l] += b->n32[l];
        a->s32[l] += b->s32[l];
    }
    if (tame)
        return;
    for (int l = 0; l < LANES; l++) {
        a->n64[l] += b->n64[l];
        a->s64[l] += b->s64[l];
        a->f64[l] += b->f64[l];
        a->f32[l] += b->f32[l];
    }
}

INLINE void lanes_copy(Lanes *a, const Lanes *b, int tame)
{
    if (!tame) {
        *a = *b;
        return;
    }
    memcpy(a->rest, b->rest, sizeof a->rest);
    memcpy(a->n32, b->n32, sizeof a->n32);
    memcpy(a->s32, b->s32, sizeof a->s32);
}

/* Merge one block's lanes as a binary counter merges: equal-sized partial sums are added,
 * so a term passes through log2(blocks) additions after its block. */
INLINE void pairwise_push(Pairwise *pw, Lanes *b, int tame)
{
    int lvl = 0;
    for (; (pw->count >> lvl) & 1; lvl++)
        lanes_add(b, &pw->level[lvl], tame);
    lanes_copy(&pw->level[lvl], b, tame);
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

INLINE Sums lanes_total(Lanes *a, int tame)
{
    if (tame) { /* the sums a tame row's blocks leave unset: zero, as a direct row's */
        memset(a->n64, 0, sizeof a->n64);
        memset(a->s64, 0, sizeof a->s64);
        memset(a->f64, 0, sizeof a->f64);
        memset(a->f32, 0, sizeof a->f32);
    }
    Sums s = {tree64(a->n64), tree64(a->s64), tree64(a->rest), tree32(a->n32), tree32(a->s32),
              tree64(a->f64), tree32(a->f32)};
    return s;
}

static Sums pairwise_total(Pairwise *pw, int tame)
{
    Lanes total;
    int first = 1;
    for (int lvl = 0; lvl < LEVELS; lvl++) {
        if (!((pw->count >> lvl) & 1))
            continue;
        if (first)
            lanes_copy(&total, &pw->level[lvl], tame);
        else
            lanes_add(&total, &pw->level[lvl], tame);
        first = 0;
    }
    return lanes_total(&total, tame);
}

/* ------------------------------------------------------------------ one block */

/* How the multiclass kernel's logits are stored: `narrow` is F64, F32 or BF16 (bfloat16 bits,
 * uint16). Both narrow kinds are exact in float32, which is all the arithmetic below asks of
 * `narrow` (as a truth value); only loads and strides tell them apart. */
enum { F64 = 0, F32 = 1, BF16 = 2 };

/* A bfloat16 value from its bits: the top half of a float32 (inf and NaN too). */
INLINE float bf16_float(uint16_t bits) { return f32_from((uint32_t)bits << 16); }

INLINE size_t item_size(int narrow) { return narrow == BF16 ? 2 : narrow ? 4 : 8; }

INLINE double load(const void *z, int narrow, Py_ssize_t j)
{
    if (narrow == BF16)
        return (double)bf16_float(((const uint16_t *)z)[j]);
    return narrow ? (double)((const float *)z)[j] : ((const double *)z)[j];
}

/* The float32 term of the naive path from the float64 one: exp(v32) = exp(v) exp(v32 - v),
 * to first order (|v32 - v| <= 2**-24 |v|; the second-order term is below 2**-30 ulp). */
INLINE float naive32_tame(double v, double e, int narrow)
{
    return narrow ? (float)e : (float)fma(e, round32(v) - v, e);
}

/* exp(v) and its float32 rounding exp(float32(v)), on a tame row (exp_tame, and the float32
 * one from the float64 one) or not (a direct exp of each). */
INLINE double row_exp(double v, int narrow, int tame, float *e32)
{
    double e = tame ? exp_tame(v) : exp_full(v);
    *e32 = tame ? naive32_tame(v, e, narrow)
                : (narrow ? (float)e : (float)exp_full(round32(v)));
    return e;
}

/* A tame logit's float32 terms from e = exp(v) (the naive float64 term, and the reference's
 * after scaling by exp(-m)): its float32 rounding (naive float32) and the stable float32 term
 * exp(float32(v32 - m32)) = exp(v - m) exp(ds), ds being the float32 rounding error of the
 * shift, to first order. */
INLINE void tame_terms32(double v, double e, int narrow, double m64, float m32, double em,
                         float *e32, float *es32)
{
    float v32 = (float)v;
    *e32 = naive32_tame(v, e, narrow);
    double s = e * em;
    double ds = (double)(float)(v32 - m32) - (v - m64);
    *es32 = (float)fma(s, ds, s);
}

/* The terms of logit v in the framework's softmax, exp(v - m) (exactly 1 at the max, as
 * exp(0)) and its float32 exp(float32(v32 - m32)); e = exp(v) and em = exp(-m) on a tame
 * row, as tame_terms32 takes them; a direct exp of each on another. */
INLINE double shifted_exp(double v, double e, int narrow, int tame, double m64, double em,
                          float *es32)
{
    float m32 = (float)m64, e32;
    if (tame) {
        tame_terms32(v, e, narrow, m64, m32, em, &e32, es32);
        return v == m64 ? 1.0 : e * em;
    }
    *es32 = (float)exp_full((double)(float)((float)v - m32));
    return exp_full(v - m64);
}

/*
 * The terms of `width` logits at z (width is a constant at each call, so the loops have
 * fixed trip counts and vectorise whole). `masked`: count only the first `size` terms, and
 * leave index `kk` out of the reference's sum (the argmax: its term is added separately).
 * Without `masked` every term counts and none is the argmax.
 */
INLINE void block_tame(const void *z, int narrow, int width, int masked, int size, int kk,
                       double m64, float m32, double em, const char *ahead, Lanes *b)
{
    /* The exps first, in a loop of their own: with the sums below in the same loop, AVX2's
     * 16 registers spill (10% slower on x86-64-v3). With them, a prefetch of the next row's
     * logits at the same place (`ahead`, or NULL), a cache line every LANES exps: spread
     * so, not in a burst per block, they leave the loads room (float64 10% faster). Without,
     * the loop whole: in pieces of LANES, bfloat16 logits' exps were 20% slower. */
    double exps[BLOCK];
    const size_t item = item_size(narrow);
    if (ahead) {
        for (int j0 = 0; j0 < width; j0 += LANES) {
            for (size_t o = 0; o < LANES * item; o += 64)
                __builtin_prefetch(ahead + (size_t)j0 * item + o);
            for (int j = j0; j < j0 + LANES; j++)
                exps[j] = exp_tame(load(z, narrow, j));
        }
    } else {
        for (int j = 0; j < width; j++)
            exps[j] = exp_tame(load(z, narrow, j));
    }
    double rest[LANES] = {0};
    float n32[LANES] = {0}, s32[LANES] = {0};
    for (int j0 = 0; j0 < width; j0 += LANES) {
        for (int l = 0; l < LANES; l++) {
            int j = j0 + l;
            double e = exps[j];
            float e32, es32;
            tame_terms32(load(z, narrow, j), e, narrow, m64, m32, em, &e32, &es32);
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
            float v32 = (float)v, e32;
            double e = row_exp(v, narrow, 0, &e32);
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
                  double m64, float m32, double em, int *over32, int *over64, const char *ahead,
                  Lanes *b)
{
    if (tame)
        block_tame(z, narrow, width, masked, size, kk, m64, m32, em, ahead, b);
    else
        block_direct(z, narrow, width, masked, size, kk, m64, m32, over32, over64, b);
}

/* A block of fewer than `width` logits, or the argmax's block: copied into a full block of
 * float64 (padding with the max, whose terms `masked` leaves out). float32 logits are exact
 * in float64, and their float32 terms come out the same bits from either (naive32_tame
 * with a zero rounding error). */
INLINE void block_masked(const void *z, int narrow, int tame, int width, int size, int kk,
                         double m64, float m32, double em, int *over32, int *over64, Lanes *b)
{
    double pad[BLOCK];
    for (int j = 0; j < width; j++)
        pad[j] = j < size ? load(z, narrow, j) : m64;
    block(pad, 0, tame, width, 1, size, kk, m64, m32, em, over32, over64, NULL, b);
}

/* ------------------------------------------------------------------ one row */

/* Per lane of a block of logits: the max, the min, and whether any is NaN, inf
 * or beyond the float32 range; in the logits' own type (twice the lanes for float32). */
#define LANE_SCAN(T, ABS, AT)                                                               \
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
            T v = AT(lo + j + l);                                                           \
            top[l] = v > top[l] ? v : top[l];                                               \
            bottom[l] = v < bottom[l] ? v : bottom[l];                                      \
            odd[l] |= !(ABS(v) <= (T)FLT_MAX);                                              \
        }                                                                                   \
    }                                                                                       \
    for (int j = whole; j < size; j++) {                                                    \
        T v = AT(lo + j);                                                                   \
        top[0] = v > top[0] ? v : top[0];                                                   \
        bottom[0] = v < bottom[0] ? v : bottom[0];                                          \
        odd[0] |= !(ABS(v) <= (T)FLT_MAX);                                                  \
    }                                                                                       \
    for (int l = 0; l < LANES; l++) {                                                      \
        block_top = top[l] > block_top ? top[l] : block_top;                               \
        low = bottom[l] < low ? bottom[l] : low;                                            \
        bad |= odd[l];                                                                      \
    }

/* The max, the min, the first block of `span` logits holding the max and whether any logit
 * is odd: blocks of LANE_SCAN, each lane's results merged after every block. */
INLINE void scan_blocks(const void *z, int narrow, int c, int span, double *m, int *kb_out,
                        double *lowest, int *bad_out)
{
    double best = load(z, narrow, 0), low = best;
    int bad = 0, kb = 0;
    for (int lo = 0; lo < c; lo += span) {
        int size = c - lo < span ? c - lo : span;
        double block_top = best;
#define AT_F32(i) (((const float *)z)[i])
#define AT_BF16(i) bf16_float(((const uint16_t *)z)[i])
#define AT_F64(i) (((const double *)z)[i])
        if (narrow == BF16) {
            LANE_SCAN(float, fabsf, AT_BF16)
        } else if (narrow) {
            LANE_SCAN(float, fabsf, AT_F32)
        } else {
            LANE_SCAN(double, fabs, AT_F64)
        }
        if (block_top > best) {
            best = block_top;
            kb = lo;
        }
    }
    *m = best;
    *kb_out = kb;
    *lowest = low;
    *bad_out = bad;
}

/* The max, its first index, the min and the row's status: SPECIAL (with NONFINITE for a NaN
 * or +inf logit, an input problem; a -inf is a masked class, SPECIAL alone) or tame or not.
 * The lanes are merged every SCAN_BLOCK logits (merging every MAX_BLOCK cost 5% of the
 * kernel), which finds the same max and min: equal values have the same bits, but for a
 * zero's sign, which depends on the order of the merges. A row whose max or min is zero is
 * scanned again with the blocks of MAX_BLOCK that row_max has always used. */
INLINE int row_max(const void *z, int narrow, int c, double *m, int *k, double *lowest,
                   int *tame)
{
    double best, low;
    int bad, kb;
    scan_blocks(z, narrow, c, SCAN_BLOCK, &best, &kb, &low, &bad);
    if (!bad && (best == 0.0 || low == 0.0))
        scan_blocks(z, narrow, c, MAX_BLOCK, &best, &kb, &low, &bad);
    if (bad) {
        int nonfinite = 0;
        for (int j = 0; j < c; j++) {
            double v = load(z, narrow, j);
            nonfinite |= isnan(v) | (v == INFINITY);
        }
        return SPECIAL | (nonfinite ? NONFINITE : 0);
    }
    /* the max's first index, from its block: LANES logits a time, then one by one */
    int j = kb;
    for (; j + LANES <= c; j += LANES) {
        int hit = 0;
        for (int l = 0; l < LANES; l++)
            hit |= load(z, narrow, j + l) == best;
        if (hit)
            break;
    }
    while (load(z, narrow, j) != best)
        j++;
    *k = j;
    *m = best;
    *lowest = low;
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

/* A row's losses and status bits from its max, target logit, target terms (exp(z[t]) and
 * exp(z[t] - m) in float64 and float32) and sums. */
INLINE void finish(double m64, double zt, double et, float et32, double es, float es32, Sums s,
                   int over32, int over64, double *loss, Py_ssize_t stride, uint16_t *bits)
{
    float m32 = (float)m64, zt32 = (float)zt;
    /* naive: -log(e[t] / sum e) */
    float p32 = et32 / s.n32;
    double p64 = et / s.n64;
    loss[0] = 0.0 - round32(log_pos((double)p32));
    loss[stride] = 0.0 - log_pos(p64);
    /* stable: log(sum exp(z - m)) - (z[t] - m) */
    float lse32 = (float)log_pos((double)s.s32);
    loss[2 * stride] = (double)(float)(lse32 - (float)(zt32 - m32));
    loss[3 * stride] = log_pos(s.s64) - (zt - m64);
    /* reference: (m - z[t]) + log1p(sum over j != argmax of exp(z_j - m)) */
    loss[4 * stride] = (m64 - zt) + log1p_pos(s.rest);
    /* the framework's naive: -log(exp(z[t] - m) * (1 / sum exp(z - m))), the sums the
     * stable path's */
    float q32 = es32 * (1.0f / s.s32);
    double q64 = es * (1.0 / s.s64);
    loss[5 * stride] = 0.0 - round32(log_pos((double)q32));
    loss[6 * stride] = 0.0 - log_pos(q64);
    *bits = (uint16_t)((over32 ? OVER32 : 0) | (p32 == 0.0f ? UNDER32 : 0) |
                       (over64 ? OVER64 : 0) | (p64 == 0.0 ? UNDER64 : 0) |
                       (q32 == 0.0f ? NUNDER32 : 0) | (q64 == 0.0 ? NUNDER64 : 0));
}

/* A multiclass row's first pass: its max and argmax, the path its exps take (tame or
 * direct) and its sums. */
typedef struct {
    double m64, em; /* the max, and exp(-max) on a tame row */
    double low;     /* the min */
    int k, tame, over32, over64;
    Sums s;
} RowPass;

/* The first pass over a row of c logits: 0, or its status (SPECIAL) if it holds a logit the
 * kernel leaves to the numpy specification. `ahead`: the next row's logits (or NULL), fetched
 * into the cache a block at a time while this row's exps are computed, so that the next
 * row's max scan reads the cache, not memory. */
INLINE int row_pass(const void *z, int narrow, int c, RowPass *r, const char *ahead)
{
    int status = row_max(z, narrow, c, &r->m64, &r->k, &r->low, &r->tame);
    if (status)
        return status;
    double m64 = r->m64, em = r->tame ? exp_tame(-m64) : 0.0;
    float m32 = (float)m64;
    int k = r->k, tame = r->tame;
    r->em = em;
    r->over32 = r->over64 = 0;
    const size_t item = item_size(narrow);
    Lanes b;
    if (c <= SMALL) {
        block_masked(z, narrow, tame, SMALL, c, k, m64, m32, em, &r->over32, &r->over64, &b);
        r->s = lanes_total(&b, tame);
    } else {
        Pairwise pw;
        pw.count = 0;
        for (int lo = 0; lo < c; lo += BLOCK) {
            const void *zb = (const char *)z + (size_t)lo * item;
            int size = c - lo < BLOCK ? c - lo : BLOCK;
            int whole = size == BLOCK && (k < lo || k >= lo + BLOCK);
            const char *next = ahead ? ahead + (size_t)lo * item : NULL;
            /* block_tame spreads its prefetches, but for bfloat16 (a block is 8 lines: in a
             * burst) */
            int spread = whole && tame && narrow != BF16;
            if (next && !spread)
                for (size_t o = 0; o < (size_t)size * item; o += 64)
                    __builtin_prefetch(next + o);
            if (whole)
                block(zb, narrow, tame, BLOCK, 0, BLOCK, -1, m64, m32, em, &r->over32,
                      &r->over64, spread ? next : NULL, &b);
            else
                block_masked(zb, narrow, tame, BLOCK, size, k - lo, m64, m32, em, &r->over32,
                             &r->over64, &b);
            pairwise_push(&pw, &b, tame);
        }
        r->s = pairwise_total(&pw, tame);
    }
    if (tame)
        tame_sums(&r->s, exp_tame(m64), em);
    return 0;
}

/* The largest of the c logits other than the target's (t), given the max m and the target's
 * logit zt: m where zt is below it, else a pass over the others (-inf with one class). */
INLINE double others_max(const void *z, int narrow, int c, int64_t t, double m, double zt)
{
    if (zt < m)
        return m;
    double top[LANES];
    for (int l = 0; l < LANES; l++)
        top[l] = -INFINITY;
    int whole = c - c % LANES;
    for (int j = 0; j < whole; j += LANES) {
        for (int l = 0; l < LANES; l++) {
            double v = j + l != t ? load(z, narrow, j + l) : -INFINITY;
            top[l] = v > top[l] ? v : top[l];
        }
    }
    for (int j = whole; j < c; j++) {
        double v = j != t ? load(z, narrow, j) : -INFINITY;
        top[0] = v > top[0] ? v : top[0];
    }
    double best = -INFINITY;
    for (int l = 0; l < LANES; l++)
        best = top[l] > best ? top[l] : best;
    return best;
}

/* A row's ends for the headroom and the casts (cecheck.rowends): its max, its min, the
 * other classes' max and the target's logit; NaN on a row left to numpy. */
INLINE void store_ends(double *ends, Py_ssize_t stride, double m, double low, double rest,
                       double zt)
{
    ends[0] = m;
    ends[stride] = low;
    ends[2 * stride] = rest;
    ends[3 * stride] = zt;
}

INLINE void row(const void *z, int narrow, int c, int64_t t, double *loss, double *ends,
                Py_ssize_t stride, uint16_t *bits, const char *ahead)
{
    RowPass r;
    int status = row_pass(z, narrow, c, &r, ahead);
    if (status) {
        *bits = (uint16_t)status;
        for (int q = 0; q < N_OUT; q++)
            loss[q * stride] = NAN;
        store_ends(ends, stride, NAN, NAN, NAN, NAN);
        return;
    }
    double zt = load(z, narrow, (int)t);
    store_ends(ends, stride, r.m64, r.low, others_max(z, narrow, c, t, r.m64, zt), zt);
    float et32;
    double et = row_exp(zt, narrow, r.tame, &et32);
    float es32;
    double es = shifted_exp(zt, et, narrow, r.tame, r.m64, r.em, &es32);
    finish(r.m64, zt, et, et32, es, es32, r.s, r.over32, r.over64, loss, stride, bits);
}

/* Rows of at most SMALL classes, BATCH at a time with one row per vector lane (a row's own
 * vector would be mostly empty): the same steps as row() on tame rows, in the same order,
 * so the same bits. Computes nothing and returns 0 unless every row of the batch is tame. */
INLINE int small_batch(const void *z, int narrow, int c, const int64_t *y, double *loss,
                       double *ends, Py_ssize_t stride, uint16_t *bits)
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
    /* In loops of one kind each, which vectorise on AVX2 too (a loop with all of them
     * stays scalar there, 40% slower): the exps, the float32 terms, the reference's. */
    double em[BATCH], et[BATCH], ek[BATCH], exps[SMALL][BATCH], rest[SMALL][BATCH];
    float m32[BATCH], et32[BATCH], n32[SMALL][BATCH], s32[SMALL][BATCH];
    for (int b = 0; b < BATCH; b++) {
        em[b] = exp_tame(-m[b]);
        m32[b] = (float)m[b];
    }
    for (int j = 0; j < c; j++)
        for (int b = 0; b < BATCH; b++)
            exps[j][b] = exp_tame(tile[j][b]);
    for (int j = 0; j < c; j++) {
        for (int b = 0; b < BATCH; b++) {
            tame_terms32(tile[j][b], exps[j][b], narrow, m[b], m32[b], em[b], &n32[j][b],
                         &s32[j][b]);
            rest[j][b] = j != k[b] ? exps[j][b] : 0.0;
        }
    }
    /* The target's shifted terms, as shifted_exp gives them (before the sums below
     * overwrite s32). */
    double es[BATCH];
    float es32[BATCH];
    for (int b = 0; b < BATCH; b++) {
        es32[b] = s32[y[b]][b];
        es[b] = tile[y[b]][b] == m[b] ? 1.0 : exps[y[b]][b] * em[b];
    }
    /* Each row's sums in row()'s order, term j in lane j of a block of SMALL (the zeros
     * past c added only where row() adds them, which leaves the sum unchanged): a row gets
     * the same bits in a batch or alone. */
    for (int j = c; j < SMALL; j++) {
        for (int b = 0; b < BATCH; b++) {
            n32[j][b] = s32[j][b] = 0.0f;
            rest[j][b] = 0.0;
        }
    }
    for (int h = SMALL / 2; h >= 1; h /= 2) {
        if (h >= c)
            continue; /* the upper half is zeros */
        for (int l = 0; l < h; l++) {
            for (int b = 0; b < BATCH; b++) {
                n32[l][b] += n32[l + h][b];
                s32[l][b] += s32[l + h][b];
                rest[l][b] += rest[l + h][b];
            }
        }
    }
    double zt[BATCH];
    for (int b = 0; b < BATCH; b++) {
        ek[b] = exps[k[b]][b];
        et[b] = exps[y[b]][b];
        zt[b] = tile[y[b]][b];
        et32[b] = naive32_tame(zt[b], et[b], narrow);
    }
    /* The rows' losses side by side first (finish's strided stores would keep this loop from
     * vectorising), then stored. */
    double out[N_OUT][BATCH];
    uint16_t status[BATCH];
    for (int b = 0; b < BATCH; b++) {
        Sums s = {0.0, 0.0, rest[0][b], n32[0][b], s32[0][b], 0.0, 0.0f};
        tame_sums(&s, ek[b], em[b]);
        finish(m[b], zt[b], et[b], et32[b], es[b], es32[b], s, 0, 0, &out[0][b], BATCH,
               &status[b]);
    }
    for (int b = 0; b < BATCH; b++) {
        for (int q = 0; q < N_OUT; q++)
            loss[q * stride + b] = out[q][b];
        bits[b] = status[b];
        double rest = -INFINITY; /* the other classes' max, as others_max */
        for (int j = 0; j < c; j++)
            rest = j != y[b] && tile[j][b] > rest ? tile[j][b] : rest;
        store_ends(ends + b, stride, m[b], low[b], zt[b] < m[b] ? m[b] : rest, zt[b]);
    }
    return 1;
}

INLINE void rows(const void *z, int narrow, Py_ssize_t c, const int64_t *y, double *loss,
                 double *ends, Py_ssize_t n, uint16_t *bits, Py_ssize_t lo, Py_ssize_t hi)
{
    const size_t row_bytes = (size_t)c * item_size(narrow);
    for (Py_ssize_t i = lo; i < hi;) {
        if (c <= SMALL && hi - i >= BATCH) {
            const void *zi = (const char *)z + (size_t)i * row_bytes;
            if (!small_batch(zi, narrow, (int)c, y + i, loss + i, ends + i, n, bits + i))
                for (Py_ssize_t b = i; b < i + BATCH; b++)
                    row((const char *)z + (size_t)b * row_bytes, narrow, (int)c, y[b], loss + b,
                        ends + b, n, bits + b, NULL);
            i += BATCH;
        } else {
            const char *zi = (const char *)z + (size_t)i * row_bytes;
            row(zi, narrow, (int)c, y[i], loss + i, ends + i, n, bits + i,
                i + 1 < hi ? zi + row_bytes : NULL);
            i++;
        }
    }
}

/* The entry points of each instruction set: float32, float64 and bfloat16 logits. */
#define DEF_ROWS(isa, name, ATTR)                                                            \
    ATTR static void rows32_##isa(const void *z, Py_ssize_t c, const void *labels, double *loss,  \
                        double *ends, Py_ssize_t n, uint16_t *bits, Py_ssize_t lo, Py_ssize_t hi)   \
    {                                                                                       \
        rows(z, F32, c, labels, loss, ends, n, bits, lo, hi);                               \
    }                                                                                       \
    ATTR static void rows64_##isa(const void *z, Py_ssize_t c, const void *labels, double *loss,  \
                        double *ends, Py_ssize_t n, uint16_t *bits, Py_ssize_t lo, Py_ssize_t hi)   \
    {                                                                                       \
        rows(z, F64, c, labels, loss, ends, n, bits, lo, hi);                               \
    }                                                                                       \
    ATTR static void rows16_##isa(const void *z, Py_ssize_t c, const void *labels, double *loss,  \
                        double *ends, Py_ssize_t n, uint16_t *bits, Py_ssize_t lo, Py_ssize_t hi)   \
    {                                                                                       \
        rows(z, BF16, c, labels, loss, ends, n, bits, lo, hi);                              \
    }
FOR_EACH_ISA(DEF_ROWS)

/* The sigmoid kernel's selects drop values computed in every lane (a division, a log): let
 * the vectoriser compute them unconditionally. No result changes: the kernel never reads the
 * floating-point exception flags. (Not for the whole file: it slows the row max above.) */
#pragma GCC push_options
#pragma GCC optimize("no-trapping-math")

/* ------------------------------------------------------------------ sigmoid rows */

/* Bits of the per-row status byte of the sigmoid kernel (cecheck/fast.py reads them): the
 * evidence of the naive path per dtype, then the row's input status. */
enum {
    S_OVER32 = 1, S_SAT32 = 2, S_ZTI32 = 4, S_OVER64 = 8, S_SAT64 = 16, S_ZTI64 = 32,
    S_NONFINITE = 64, S_SPECIAL = 128, S_CANCEL32 = 256, S_CANCEL64 = 512,
};
/* (The framework's naive path saturates where the textbook path does: the same sigmoid.
 * S_CANCEL: the framework's stable path cancelled.) */

/* A log clamped at -100, as binary_cross_entropy clamps it (-inf too). */
INLINE double clamp100(double x) { return x > -100.0 ? x : -100.0; }
INLINE float clamp100f(float x) { return x > -100.0f ? x : -100.0f; }

/* The per-class binary losses of one (logit v, target t) pair in every path and dtype, as
 * losses.py's textbook and reference functions and PyTorch's (torch_naive._bce_of_sigmoid,
 * torch_fused._bce_with_logits) compute them, and the evidence bits. One float64 exp serves
 * all: E = exp(-|v|) in (0, 1], exp(-v) is E or 1 / E (within 1.5 ulp; 1 / 0 = inf where
 * exp(-v) overflows), and each float32 exp is the float64 one rounded (corrected to first
 * order for the float32 rounding error of a float64 logit). */
INLINE int sigmoid_terms(double v, double t, int narrow, double *n64, float *n32, double *s64,
                         float *s32, double *ref, double *f64, float *f32)
{
    float v32 = (float)v, t32 = (float)t;
    double a = fabs(v);
    double big_e = exp_full(-a);
    double en = v >= 0.0 ? big_e : 1.0 / big_e;
    /* textbook float64: -(t log(p) + (1 - t) log(1 - p)), p = 1 / (1 + exp(-v)) */
    double p = 1.0 / (1.0 + en);
    double lp = log_pos(p), lq = log_pos(1.0 - p);
    double omt = 1.0 - t;
    *n64 = 0.0 - (t * lp + omt * lq);
    /* textbook float32, every step rounded to float32 */
    float en32;
    double e32; /* float32 exp(-|v32|), as a double: round32, never (double)(float) */
    if (narrow) {
        en32 = (float)en;
        e32 = round32(big_e);
    } else {
        double d = v - round32(v); /* exp(-v32) = exp(-v) exp(d); inf stays inf */
        en32 = en == INFINITY ? INFINITY : (float)fma(en, d, en);
        double da = a - fabs(round32(v));
        e32 = round32(fma(big_e, da, big_e));
    }
    float p32 = 1.0f / (1.0f + en32);
    float lp32 = (float)log_pos((double)p32), lq32 = (float)log_pos((double)(1.0f - p32));
    float omt32 = 1.0f - t32;
    *n32 = 0.0f - (t32 * lp32 + omt32 * lq32);
    /* the framework's naive: (t - 1) max(log1p(-s), -100) - t max(log(s), -100), s the same
     * sigmoid p */
    *f64 = (t - 1.0) * clamp100(log1p_neg(p)) - t * clamp100(lp);
    float ls32 = clamp100f(lp32), lq1_32 = clamp100f((float)log1p_neg((double)p32));
    *f32 = (t32 - 1.0f) * lq1_32 - t32 * ls32;
    /* the framework's stable: (1 - t) v - log_sigmoid(v), log_sigmoid(v) =
     * min(v, 0) - log1p(exp(-|v|)); cancelled if the result is below 2**-(bits / 2) of the
     * larger operand (bits: 24 or 53, halved as integers) */
    double l1 = log1p_pos(big_e);
    double lin = omt * v, lsg = (v < 0.0 ? v : 0.0) - l1;
    *s64 = lin - lsg;
    float l1_32 = (float)log1p_pos(e32);
    float lin32 = omt32 * v32, lsg32 = (v32 < 0.0f ? v32 : 0.0f) - l1_32;
    *s32 = lin32 - lsg32;
    double size = fmax(fabs(lin), fabs(lsg));
    double size32 = (double)fmaxf(fabsf(lin32), fabsf(lsg32));
    int cancel64 = (size > 0.0) & (fabs(*s64) * 0x1p26 <= size);
    int cancel32 = (size32 > 0.0) & ((double)fabsf(*s32) * 0x1p12 <= size32);
    /* reference: (1 - t) softplus(v) + t softplus(-v), softplus(x) = max(x, 0) + log1p(E) */
    *ref = (1.0 - t) * ((v > 0.0 ? v : 0.0) + l1) + t * ((v < 0.0 ? -v : 0.0) + l1);
    /* bitwise, not logical, operators: no branch in a vector lane */
    return ((en32 == INFINITY) * S_OVER32) | (((p32 == 0.0f) | (p32 == 1.0f)) * S_SAT32) |
           ((((t32 == 0.0f) & isinf(lp32)) | ((omt32 == 0.0f) & isinf(lq32))) * S_ZTI32) |
           ((en == INFINITY) * S_OVER64) | (((p == 0.0) | (p == 1.0)) * S_SAT64) |
           ((((t == 0.0) & isinf(lp)) | ((omt == 0.0) & isinf(lq))) * S_ZTI64) |
           (cancel32 * S_CANCEL32) | (cancel64 * S_CANCEL64);
}

/* Whether a row needs the numpy specification: a non-finite logit or target, or a float64
 * logit beyond the float32 range; its status bits then, else 0. */
INLINE int sigmoid_special(const void *z, int narrow, const double *t, int c)
{
    int odd = 0, nonfinite = 0;
    for (int j = 0; j < c; j++) {
        double v = load(z, narrow, j);
        odd |= !(fabs(v) <= FLT_MAX) | !isfinite(t[j]);
        nonfinite |= !isfinite(v);
    }
    return odd ? S_SPECIAL | (nonfinite ? S_NONFINITE : 0) : 0;
}

/* The terms of LANES (logit, target) pairs at z and t, added to b's lanes, their evidence
 * bits or-ed into *ev. `masked`: only the first `size` count (the rest is padding). */
INLINE void sigmoid_lanes(const void *z, int narrow, const double *t, int masked, int size,
                          Lanes *b, int *ev)
{
    int e = 0;
    for (int l = 0; l < LANES; l++) {
        double n64, s64, ref, f64;
        float n32, s32, f32;
        int bits = sigmoid_terms(load(z, narrow, l), t[l], narrow, &n64, &n32, &s64, &s32, &ref,
                                 &f64, &f32);
        int in = masked ? l < size : 1;
        b->n64[l] += in ? n64 : 0.0;
        b->n32[l] += in ? n32 : 0.0f;
        b->s64[l] += in ? s64 : 0.0;
        b->s32[l] += in ? s32 : 0.0f;
        b->rest[l] += in ? ref : 0.0;
        b->f64[l] += in ? f64 : 0.0;
        b->f32[l] += in ? f32 : 0.0f;
        e |= in ? bits : 0;
    }
    *ev |= e;
}

/* Fewer than LANES pairs, copied into float64 lanes padded with (0, 0); a float32 logit is
 * exact in float64 and gives the same float32 terms from there. */
INLINE void sigmoid_tail(const void *z, int narrow, const double *t, int size, Lanes *b, int *ev)
{
    double zp[LANES], tp[LANES];
    for (int l = 0; l < LANES; l++) {
        zp[l] = l < size ? load(z, narrow, l) : 0.0;
        tp[l] = l < size ? t[l] : 0.0;
    }
    sigmoid_lanes(zp, 0, tp, 1, size, b, ev);
}

/* One row of c >= 2 classes: the mean over classes of each path's per-class loss, sums in
 * the path's dtype (LANES lanes, blocks merged pairwise, as row() sums). */
INLINE void sigmoid_row(const void *z, int narrow, const double *t, int c, double *loss,
                        Py_ssize_t stride, uint16_t *bits)
{
    int status = sigmoid_special(z, narrow, t, c);
    if (status) {
        *bits = (uint16_t)status;
        for (int q = 0; q < N_OUT; q++)
            loss[q * stride] = NAN;
        return;
    }
    const size_t item = narrow ? 4 : 8;
    Pairwise pw;
    pw.count = 0;
    int ev = 0;
    for (int lo = 0; lo < c; lo += BLOCK) {
        int size = c - lo < BLOCK ? c - lo : BLOCK;
        Lanes b;
        lanes_zero(&b);
        int j = 0;
        for (; j + LANES <= size; j += LANES)
            sigmoid_lanes((const char *)z + (size_t)(lo + j) * item, narrow, t + lo + j, 0,
                          LANES, &b, &ev);
        if (j < size)
            sigmoid_tail((const char *)z + (size_t)(lo + j) * item, narrow, t + lo + j,
                         size - j, &b, &ev);
        pairwise_push(&pw, &b, 0);
    }
    Sums s = pairwise_total(&pw, 0);
    loss[0] = (double)(s.n32 / (float)c);
    loss[stride] = s.n64 / c;
    loss[2 * stride] = (double)(s.s32 / (float)c);
    loss[3 * stride] = s.s64 / c;
    loss[4 * stride] = s.rest / c;
    loss[5 * stride] = (double)(s.f32 / (float)c);
    loss[6 * stride] = s.f64 / c;
    *bits = (uint16_t)ev;
}

/* Binary rows (one logit each), LANES at a time, one per lane: a row's loss is its term. */
INLINE void sigmoid_single(const void *z, int narrow, const double *t, Py_ssize_t n,
                           double *loss, uint16_t *bits, Py_ssize_t lo, Py_ssize_t hi)
{
    for (Py_ssize_t i = lo; i < hi; i += LANES) {
        int width = hi - i < LANES ? (int)(hi - i) : LANES;
        double zp[LANES], tp[LANES]; /* padded with (0, 0) past hi */
        for (int l = 0; l < LANES; l++) {
            zp[l] = l < width ? load(z, narrow, i + l) : 0.0;
            tp[l] = l < width ? t[i + l] : 0.0;
        }
        double n64[LANES], s64[LANES], ref[LANES], f64[LANES];
        float n32[LANES], s32[LANES], f32[LANES];
        int e[LANES];
        for (int l = 0; l < LANES; l++) {
            double v = zp[l], tv = tp[l];
            int ev = sigmoid_terms(v, tv, 0, &n64[l], &n32[l], &s64[l], &s32[l], &ref[l],
                                   &f64[l], &f32[l]);
            int odd = !(fabs(v) <= FLT_MAX) | !isfinite(tv); /* as sigmoid_special */
            e[l] = odd ? S_SPECIAL | (isfinite(v) ? 0 : S_NONFINITE) : ev;
        }
        for (int l = 0; l < width; l++) {
            Py_ssize_t r = i + l;
            int special = e[l] & S_SPECIAL;
            bits[r] = (uint16_t)e[l];
            loss[r] = special ? NAN : (double)n32[l];
            loss[n + r] = special ? NAN : n64[l];
            loss[2 * n + r] = special ? NAN : (double)s32[l];
            loss[3 * n + r] = special ? NAN : s64[l];
            loss[4 * n + r] = special ? NAN : ref[l];
            loss[5 * n + r] = special ? NAN : (double)f32[l];
            loss[6 * n + r] = special ? NAN : f64[l];
        }
    }
}

INLINE void sigmoid_rows(const void *z, int narrow, Py_ssize_t c, const double *t,
                         double *loss, Py_ssize_t n, uint16_t *bits, Py_ssize_t lo,
                         Py_ssize_t hi)
{
    if (c == 1) {
        sigmoid_single(z, narrow, t, n, loss, bits, lo, hi);
        return;
    }
    const size_t row_bytes = (size_t)c * (narrow ? 4 : 8);
    for (Py_ssize_t i = lo; i < hi; i++)
        sigmoid_row((const char *)z + (size_t)i * row_bytes, narrow, t + i * c, (int)c,
                    loss + i, n, bits + i);
}

/* The entry points of each instruction set: float32 and float64 logits. */
#define DEF_SIGMOID(isa, name, ATTR)                                                            \
    ATTR static void sigmoid32_##isa(const void *z, Py_ssize_t c, const void *labels, double *loss,  \
                        double *ends, Py_ssize_t n, uint16_t *bits, Py_ssize_t lo, Py_ssize_t hi)   \
    {                                                                                       \
        (void)ends;                                                                         \
        sigmoid_rows(z, 1, c, labels, loss, n, bits, lo, hi);                               \
    }                                                                                       \
    ATTR static void sigmoid64_##isa(const void *z, Py_ssize_t c, const void *labels, double *loss,  \
                        double *ends, Py_ssize_t n, uint16_t *bits, Py_ssize_t lo, Py_ssize_t hi)   \
    {                                                                                       \
        (void)ends;                                                                         \
        sigmoid_rows(z, 0, c, labels, loss, n, bits, lo, hi);                               \
    }
FOR_EACH_ISA(DEF_SIGMOID)

/* ------------------------------------------------------------------ soft-label rows */

/* Bits of the per-row status byte of the soft-label kernel: exp_overflow, prob_underflow and
 * zero_times_inf of the naive path per dtype, then S_NONFINITE and S_SPECIAL as above. */
enum { P_OVER32 = 1, P_UNDER32 = 2, P_ZTI32 = 4, P_OVER64 = 8, P_UNDER64 = 16, P_ZTI64 = 32 };
/* ... and from bit 8 (past S_NONFINITE and S_SPECIAL) prob_underflow and zero_times_inf of the
 * framework's naive path per dtype. */
enum { P_NUNDER32 = 256, P_NZTI32 = 512, P_NUNDER64 = 1024, P_NZTI64 = 2048 };

/* LANES logits of a row with their targets t, after the row's first pass r: the terms of
 * every path's sum, as losses.py's naive_soft, stable_soft and reference_soft compute them,
 * added to b's lanes (only the first `size` if `masked`), evidence bits or-ed into *ev. */
INLINE void soft_lanes(const void *z, int narrow, const double *t, const RowPass *r,
                       double lse64, float lse32, double l1, int masked, int size, Lanes *b,
                       int *ev)
{
    float m32 = (float)r->m64;
    double inv64 = 1.0 / r->s.s64;
    float inv32 = 1.0f / r->s.s32;
    int e_bits = 0;
    for (int l = 0; l < LANES; l++) {
        double v = load(z, narrow, l), tv = t[l];
        float v32 = (float)v, t32 = (float)tv, e32, es32;
        double e = row_exp(v, narrow, r->tame, &e32);
        /* the framework's naive: -sum t log(exp(z - m) * (1 / sum exp(z - m))) */
        double es = shifted_exp(v, e, narrow, r->tame, r->m64, r->em, &es32);
        double q = es * inv64, lq = log_pos(q);
        float q32 = es32 * inv32, lq32 = (float)log_pos((double)q32);
        /* naive: -sum t log(p), p = exp(z) / sum exp(z), every step in the dtype */
        double p = e / r->s.n64, lp = log_pos(p);
        float p32 = e32 / r->s.n32, lp32 = (float)log_pos((double)p32);
        /* stable: -sum t (d - lse), d = z - max; reference: sum t ((max - z) + log1p(rest)) */
        double ns64 = tv * ((v - r->m64) - lse64), ref = tv * ((r->m64 - v) + l1);
        float ns32 = t32 * ((float)(v32 - m32) - lse32);
        int in = masked ? l < size : 1;
        b->n64[l] += in ? tv * lp : 0.0;
        b->n32[l] += in ? t32 * lp32 : 0.0f;
        b->s64[l] += in ? ns64 : 0.0;
        b->s32[l] += in ? ns32 : 0.0f;
        b->rest[l] += in ? ref : 0.0;
        b->f64[l] += in ? tv * lq : 0.0;
        b->f32[l] += in ? t32 * lq32 : 0.0f;
        int bits = (((p32 == 0.0f) & (t32 > 0.0f)) * P_UNDER32) |
                   (((t32 == 0.0f) & isinf(lp32)) * P_ZTI32) |
                   (((p == 0.0) & (tv > 0.0)) * P_UNDER64) | (((tv == 0.0) & isinf(lp)) * P_ZTI64) |
                   (((q32 == 0.0f) & (t32 > 0.0f)) * P_NUNDER32) |
                   (((t32 == 0.0f) & isinf(lq32)) * P_NZTI32) |
                   (((q == 0.0) & (tv > 0.0)) * P_NUNDER64) | (((tv == 0.0) & isinf(lq)) * P_NZTI64);
        e_bits |= in ? bits : 0;
    }
    *ev |= e_bits;
}

/* One row of c classes with soft targets t: its first pass, then a second over its logits
 * for every path's sum of target-weighted terms. */
INLINE void soft_row(const void *z, int narrow, const double *t, int c, double *loss,
                     Py_ssize_t stride, uint16_t *bits)
{
    RowPass r = {0};
    int status = row_pass(z, narrow, c, &r, NULL);
    int odd = 0;
    for (int j = 0; j < c; j++)
        odd |= !isfinite(t[j]);
    if (status || odd) {
        *bits = (uint16_t)(S_SPECIAL | ((status & NONFINITE) ? S_NONFINITE : 0));
        for (int q = 0; q < N_OUT; q++)
            loss[q * stride] = NAN;
        return;
    }
    double lse64 = log_pos(r.s.s64), l1 = log1p_pos(r.s.rest);
    float lse32 = (float)log_pos((double)r.s.s32);
    const size_t item = narrow ? 4 : 8;
    int ev = (r.over32 ? P_OVER32 : 0) | (r.over64 ? P_OVER64 : 0);
    Pairwise pw;
    pw.count = 0;
    for (int lo = 0; lo < c; lo += BLOCK) {
        int size = c - lo < BLOCK ? c - lo : BLOCK;
        Lanes b;
        lanes_zero(&b);
        int j = 0;
        for (; j + LANES <= size; j += LANES)
            soft_lanes((const char *)z + (size_t)(lo + j) * item, narrow, t + lo + j, &r, lse64,
                       lse32, l1, 0, LANES, &b, &ev);
        if (j < size) { /* the tail, padded with the max and zero targets */
            double zp[LANES], tp[LANES];
            for (int l = 0; l < LANES; l++) {
                zp[l] = j + l < size ? load(z, narrow, lo + j + l) : r.m64;
                tp[l] = j + l < size ? t[lo + j + l] : 0.0;
            }
            soft_lanes(zp, 0, tp, &r, lse64, lse32, l1, 1, size - j, &b, &ev);
        }
        pairwise_push(&pw, &b, 0);
    }
    Sums s = pairwise_total(&pw, 0);
    loss[0] = (double)(0.0f - s.n32);
    loss[stride] = 0.0 - s.n64;
    loss[2 * stride] = (double)(0.0f - s.s32);
    loss[3 * stride] = 0.0 - s.s64;
    loss[4 * stride] = s.rest;
    loss[5 * stride] = (double)(0.0f - s.f32);
    loss[6 * stride] = 0.0 - s.f64;
    *bits = (uint16_t)ev;
}

INLINE void soft_rows(const void *z, int narrow, Py_ssize_t c, const double *t, double *loss,
                      Py_ssize_t n, uint16_t *bits, Py_ssize_t lo, Py_ssize_t hi)
{
    const size_t row_bytes = (size_t)c * (narrow ? 4 : 8);
    for (Py_ssize_t i = lo; i < hi; i++)
        soft_row((const char *)z + (size_t)i * row_bytes, narrow, t + i * c, (int)c, loss + i,
                 n, bits + i);
}

/* The entry points of each instruction set: float32 and float64 logits. */
#define DEF_SOFT(isa, name, ATTR)                                                            \
    ATTR static void soft32_##isa(const void *z, Py_ssize_t c, const void *labels, double *loss,  \
                        double *ends, Py_ssize_t n, uint16_t *bits, Py_ssize_t lo, Py_ssize_t hi)   \
    {                                                                                       \
        (void)ends;                                                                         \
        soft_rows(z, 1, c, labels, loss, n, bits, lo, hi);                                  \
    }                                                                                       \
    ATTR static void soft64_##isa(const void *z, Py_ssize_t c, const void *labels, double *loss,  \
                        double *ends, Py_ssize_t n, uint16_t *bits, Py_ssize_t lo, Py_ssize_t hi)   \
    {                                                                                       \
        (void)ends;                                                                         \
        soft_rows(z, 0, c, labels, loss, n, bits, lo, hi);                                  \
    }
FOR_EACH_ISA(DEF_SOFT)

/* ------------------------------------------------------------------ float16 and bfloat16 */

/*
 * The multiclass index paths in float16 or bfloat16, as cecheck/precision.py emulates them:
 * every step in float32, its result rounded to the format where the numpy specification
 * rounds it, sums over classes in float32 in numpy's pairwise order. Same bits as the
 * specification, not a bound:
 *  - the rounding is round_narrow's integer and float32 steps, as numpy's astype(float16) and
 *    ml_dtypes' astype(bfloat16) round (NaN aside, which stays a NaN of another payload);
 *  - an elementary function of a value of the format (the textbook path's float32 exp and log,
 *    the log of PyTorch's paths) is a table of 65,536 entries that cecheck/fast.py fills with
 *    the specification's own numpy results;
 *  - PyTorch's exp(z - max) takes a float32 argument: the kernel's float64 exp rounded to
 *    float32, as the specification rounds numpy's float64 exp (the two float64 exps differ by
 *    an ulp in places, which moves the float32 rounding only for a float64 result within an
 *    ulp of a float32 tie: none in 10**7 samples); their sum first from a float32 exp
 *    (exp_approx32), the exact exps only for a row whose sum that leaves undecided;
 *  - the sums are pairwise2's, numpy's pairwise summation.
 * A row with a logit that is not finite in the format (NaN, inf, -inf, or beyond its range)
 * is left to the specification (N_SPECIAL).
 */

enum { FLOAT16, BFLOAT16 };
/* Bits of the narrow kernel's status word (cecheck/fast.py reads them): the textbook path's
 * exp_overflow and prob_underflow, the framework's naive path's prob_underflow; SPECIAL as
 * above. */
enum { N_OVER = 1, N_UNDER = 2, N_NUNDER = 4, N_SPECIAL = SPECIAL };
#define N_NARROW 3   /* losses per row: the textbook, stable and naive paths */
#define TABLE 65536  /* entries of a table: one per value of the format */

/* x rounded to float16 or bfloat16 (fmt), held in float32: to nearest, ties to even, beyond
 * the largest finite value of the format to inf, gradually below its smallest normal. A few
 * integer operations per lane, the same in every instruction set. bfloat16 keeps float32's
 * exponent: round at bit 16 (a carry into the exponent is the next binade, or inf). float16:
 * normal (from 2**-14) round at bit 13, from 65520 on inf; below 2**-14 the step is 2**-24,
 * 0.75's float32 ulp: (|x| + 0.75) - 0.75 rounds |x| to it. */
INLINE float round_narrow(float x, int fmt)
{
    uint32_t u = f32_bits(x), a = u & 0x7fffffffu;
    uint32_t nan = (a | 0x00400000u) & (fmt == BFLOAT16 ? 0xffff0000u : 0xffffe000u);
    if (fmt == BFLOAT16) {
        uint32_t r = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
        return f32_from(a > 0x7f800000u ? nan | (u & 0x80000000u) : r);
    }
    uint32_t normal = (a + 0xfffu + ((a >> 13) & 1u)) & 0xffffe000u;
    uint32_t sub = f32_bits((f32_from(a) + 0.75f) - 0.75f);
    uint32_t r = a < 0x38800000u ? sub : normal;
    r = a >= 0x477ff000u ? 0x7f800000u : r;
    r = a > 0x7f800000u ? nan : r;
    return f32_from(r | (u & 0x80000000u));
}

/* The table index of a value of the format held in float32 (round_narrow's result): its
 * float16 or bfloat16 bits. float16: normal numbers rebiased, subnormals as multiples of
 * 2**-24 (the low bits of |x| + 0.75, exact), inf and NaN 0x7c00 and up. */
INLINE uint32_t narrow_index(float x, int fmt)
{
    uint32_t u = f32_bits(x);
    if (fmt == BFLOAT16)
        return u >> 16;
    uint32_t a = u & 0x7fffffffu;
    uint32_t normal = (a - 0x38000000u) >> 13;
    uint32_t sub = f32_bits(f32_from(a) + 0.75f) - 0x3f400000u;
    uint32_t h = a < 0x38800000u ? sub : normal;
    h = a >= 0x7f800000u ? 0x7c00u | ((a >> 13) & 0x3ffu) : h;
    return (h | ((u >> 16) & 0x8000u)) & 0xffffu;
}

/* numpy's pairwise sums of a[0..n) and b[0..n) in float32 (numpy/_core/src/umath/
 * loops_utils.h.src, pairwise_sum, what ndarray.sum does over a contiguous row), into *sa and
 * *sb: up to 128 terms with eight accumulators, combined as ((r0 + r1) + (r2 + r3)) + ((r4 +
 * r5) + (r6 + r7)), the remainder added after; more: the two halves, cut at a multiple of 8,
 * summed so and added. IEEE additions in a fixed order: the same bits in every instruction
 * set. Two sums at once: each a chain of dependent additions (the eight accumulators a
 * vector), two chains run in the time of one. */
typedef float V8 __attribute__((vector_size(32))); /* GCC's vectors: lane by lane IEEE */
#define LOAD8(v, p) memcpy(&(v), (p), sizeof(V8))

INLINE void pairwise_leaf(const float *a, const float *b, Py_ssize_t n, float *sa, float *sb)
{
    if (n < 8) {
        float ra = 0.0f, rb = 0.0f;
        for (Py_ssize_t i = 0; i < n; i++) {
            ra += a[i];
            rb += b[i];
        }
        *sa = ra;
        *sb = rb;
        return;
    }
    V8 ra, rb, va, vb; /* the eight accumulators of each sum; the next eight terms */
    LOAD8(ra, a);
    LOAD8(rb, b);
    Py_ssize_t i = 8;
    for (; i < n - n % 8; i += 8) {
        LOAD8(va, a + i);
        LOAD8(vb, b + i);
        ra += va;
        rb += vb;
    }
    float xa = ((ra[0] + ra[1]) + (ra[2] + ra[3])) + ((ra[4] + ra[5]) + (ra[6] + ra[7]));
    float xb = ((rb[0] + rb[1]) + (rb[2] + rb[3])) + ((rb[4] + rb[5]) + (rb[6] + rb[7]));
    for (; i < n; i++) {
        xa += a[i];
        xb += b[i];
    }
    *sa = xa;
    *sb = xb;
}

/* pairwise_leaf's sums of any n: a copy per instruction set (a recursive function cannot be
 * inlined into each copy's entry points). pairwise1_: the same sum of a alone, as pairwise2's
 * of a; where numpy's two halves have equal lengths (as 32000's do) they are summed side by
 * side by pairwise2_, two chains at once again. */
typedef void Pairwise2(const float *a, const float *b, Py_ssize_t n, float *sa, float *sb);
typedef float Pairwise1(const float *a, Py_ssize_t n);

#define DEF_PAIRWISE(isa, name, ATTR)                                                        \
    ATTR static void pairwise2_##isa(const float *a, const float *b, Py_ssize_t n, float *sa, \
                                     float *sb)                                             \
    {                                                                                       \
        if (n <= 128) {                                                                     \
            pairwise_leaf(a, b, n, sa, sb);                                                 \
            return;                                                                         \
        }                                                                                   \
        Py_ssize_t n2 = n / 2;                                                              \
        n2 -= n2 % 8;                                                                       \
        float a1, b1, a2, b2;                                                               \
        pairwise2_##isa(a, b, n2, &a1, &b1);                                                \
        pairwise2_##isa(a + n2, b + n2, n - n2, &a2, &b2);                                  \
        *sa = a1 + a2;                                                                      \
        *sb = b1 + b2;                                                                      \
    }                                                                                       \
    ATTR static float pairwise1_##isa(const float *a, Py_ssize_t n)                         \
    {                                                                                       \
        float s1, s2;                                                                       \
        if (n <= 128) {                                                                     \
            pairwise_leaf(a, a, n, &s1, &s2);                                               \
            return s1;                                                                      \
        }                                                                                   \
        Py_ssize_t n2 = n / 2;                                                              \
        n2 -= n2 % 8;                                                                       \
        if (n - n2 == n2)                                                                   \
            pairwise2_##isa(a, a + n2, n2, &s1, &s2);                                       \
        else {                                                                              \
            s1 = pairwise1_##isa(a, n2);                                                    \
            s2 = pairwise1_##isa(a + n2, n - n2);                                           \
        }                                                                                   \
        return s1 + s2;                                                                     \
    }
FOR_EACH_ISA(DEF_PAIRWISE)

/* out[j] = tab[index[j]] for j < c (every index below TABLE); whether one is inf. Scalar
 * loads, four a loop, then the test of out for inf, which vectorises: on this machine's
 * AMD EPYC, 0.25 ns a look-up against 0.35 by AVX-512 gathers, 0.48 by AVX2 gathers and
 * 0.55 by a loop testing each value as it loads it (GCC 12 does not vectorise these
 * look-ups). A copy per instruction set: not inlined, a function of its own, called once
 * per row. */
typedef int LookUp(const float *tab, const uint32_t *index, float *out, int c);

INLINE int look_up_each(const float *tab, const uint32_t *index, float *out, int c)
{
    int j = 0;
    for (; j + 4 <= c; j += 4) {
        float a = tab[index[j]], b = tab[index[j + 1]], d = tab[index[j + 2]];
        float e = tab[index[j + 3]];
        out[j] = a;
        out[j + 1] = b;
        out[j + 2] = d;
        out[j + 3] = e;
    }
    for (; j < c; j++)
        out[j] = tab[index[j]];
    int overflow = 0;
    for (j = 0; j < c; j++)
        overflow |= out[j] == INFINITY;
    return overflow;
}

#define DEF_LOOK_UP(isa, name, ATTR)                                                        \
    ATTR static int look_up_##isa(const float *tab, const uint32_t *index, float *out, int c) \
    {                                                                                       \
        return look_up_each(tab, index, out, c);                                            \
    }
FOR_EACH_ISA(DEF_LOOK_UP)

#ifdef X86_ISAS
#include <immintrin.h>
#endif

/* The first loop of narrow_row: logits from..c to the format fmt (p.cast: float64 ones first
 * to float32), into zr, their table indices into index; the max of their keys (integers
 * ordered as the floats: the bits of a negative float flipped, which vectorises where a float
 * max does not) into *top, whether any is not finite into *odd (both merged). */
INLINE void cast_narrow(const void *z, int narrow, int from, int c, int fmt, float *zr,
                        uint32_t *index, int32_t *top, uint32_t *odd)
{
    int32_t t = *top;
    uint32_t o = *odd;
    for (int j = from; j < c; j++) {
        float v = narrow ? ((const float *)z)[j] : (float)((const double *)z)[j];
        float r = round_narrow(v, fmt);
        uint32_t u = f32_bits(r);
        int32_t key = (int32_t)(u ^ ((uint32_t)((int32_t)u >> 31) >> 1));
        zr[j] = r;
        index[j] = narrow_index(r, fmt);
        t = key > t ? key : t;
        o |= (u & 0x7fffffffu) >= 0x7f800000u;
    }
    *top = t;
    *odd = o;
}

/* cast_narrow to float16 of the first logits, 16 (8) at a time by F16C's conversions in the
 * x86-64-v4 (v3) copy: the float16 bits rounded to nearest even whatever MXCSR says, inf
 * past 65504 (65520 and up), gradual underflow, the sign of zero kept, NaN quieted with its
 * payload cut as round_narrow cuts it (and its row is left to numpy anyway); converted back,
 * the same float32 as round_narrow's, and the bits are narrow_index's. How many were done:
 * cast_narrow does the rest (all in the default copy). Not inlined: a function of its own
 * instruction set, called once per row. */
typedef int Cast16(const void *z, int narrow, int c, float *zr, uint32_t *index, int32_t *top,
                   uint32_t *odd);

static int cast16_base(const void *z, int narrow, int c, float *zr, uint32_t *index,
                       int32_t *top, uint32_t *odd)
{
    (void)z, (void)narrow, (void)c, (void)zr, (void)index, (void)top, (void)odd;
    return 0;
}

#ifdef X86_ISAS
__attribute__((target("arch=x86-64-v4"))) static int cast16_v4(const void *z, int narrow, int c,
                                                               float *zr, uint32_t *index,
                                                               int32_t *top, uint32_t *odd)
{
    __m512i t = _mm512_set1_epi32(*top);
    __mmask16 o = 0;
    const __m512i abs = _mm512_set1_epi32(0x7fffffff), inf = _mm512_set1_epi32(0x7f800000);
    int j = 0;
    for (; j + 16 <= c; j += 16) {
        __m512 v;
        if (narrow)
            v = _mm512_loadu_ps((const float *)z + j);
        else {
            __m256 a = _mm512_cvtpd_ps(_mm512_loadu_pd((const double *)z + j));
            __m256 b = _mm512_cvtpd_ps(_mm512_loadu_pd((const double *)z + j + 8));
            v = _mm512_insertf32x8(_mm512_castps256_ps512(a), b, 1);
        }
        __m256i h = _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        __m512i u = _mm512_castps_si512(_mm512_cvtph_ps(h));
        _mm512_storeu_si512(zr + j, u);
        _mm512_storeu_si512(index + j, _mm512_cvtepu16_epi32(h));
        __m512i flip = _mm512_srli_epi32(_mm512_srai_epi32(u, 31), 1);
        t = _mm512_max_epi32(t, _mm512_xor_si512(u, flip));
        o |= _mm512_cmpge_epu32_mask(_mm512_and_si512(u, abs), inf);
    }
    *top = _mm512_reduce_max_epi32(t);
    *odd |= o != 0;
    return j;
}

__attribute__((target("arch=x86-64-v3"))) static int cast16_v3(const void *z, int narrow, int c,
                                                               float *zr, uint32_t *index,
                                                               int32_t *top, uint32_t *odd)
{
    __m256i t = _mm256_set1_epi32(*top), o = _mm256_setzero_si256();
    const __m256i abs = _mm256_set1_epi32(0x7fffffff), big = _mm256_set1_epi32(0x7f7fffff);
    int j = 0;
    for (; j + 8 <= c; j += 8) {
        __m256 v;
        if (narrow)
            v = _mm256_loadu_ps((const float *)z + j);
        else {
            __m128 a = _mm256_cvtpd_ps(_mm256_loadu_pd((const double *)z + j));
            __m128 b = _mm256_cvtpd_ps(_mm256_loadu_pd((const double *)z + j + 4));
            v = _mm256_insertf128_ps(_mm256_castps128_ps256(a), b, 1);
        }
        __m128i h = _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        __m256i u = _mm256_castps_si256(_mm256_cvtph_ps(h));
        _mm256_storeu_si256((__m256i *)(zr + j), u);
        _mm256_storeu_si256((__m256i *)(index + j), _mm256_cvtepu16_epi32(h));
        __m256i flip = _mm256_srli_epi32(_mm256_srai_epi32(u, 31), 1);
        t = _mm256_max_epi32(t, _mm256_xor_si256(u, flip));
        o = _mm256_or_si256(o, _mm256_cmpgt_epi32(_mm256_and_si256(u, abs), big));
    }
    int32_t k[8];
    uint32_t a[8];
    _mm256_storeu_si256((__m256i *)k, t);
    _mm256_storeu_si256((__m256i *)a, o);
    for (int l = 0; l < 8; l++) {
        *top = k[l] > *top ? k[l] : *top;
        *odd |= a[l] != 0; /* all ones where |u| >= inf */
    }
    return j;
}
#endif

/* exp(d) for float32 d <= 0, approximately: cephes' expf (Cody-Waite reduction, a degree-5
 * polynomial) in float32 arithmetic without fma (the same bits in every copy), within
 * EXP32_ERROR of shifted32's float32 exp, relatively, from APPROX_MIN up (measured by
 * tests/test_narrow_kernel.py); below, exp(APPROX_MIN) (1 + EXP32_ERROR), off by 2**-123
 * at most. Sixteen lanes a vector, several times faster than shifted32; narrow_row only sums
 * these, and checks that the sum is near enough to decide what it needs. */
#define APPROX_MIN (-86.0f) /* exp(-86) * 0.7 is normal: the exponent add below stays so */
#define EXP32_ERROR 0x1p-21f
INLINE float exp_approx32(float d)
{
    float x = d > APPROX_MIN ? d : APPROX_MIN;
    float t = x * 1.44269504088896341f + 12582912.0f; /* 1.5 * 2**23: rounds x / ln 2 */
    float k = t - 12582912.0f;
    float r = (x - k * 0.693359375f) - k * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = (p * (r * r) + r) + 1.0f;
    return f32_from(f32_bits(p) + ((f32_bits(t) - f32_bits(12582912.0f)) << 23));
}

/* PyTorch's float32 exp(z - m) of a logit z of the format whose max is m. */
INLINE float shifted32(float z, float m)
{
    double d = (double)(z - m);
    return (float)exp_tame(d > -150.0 ? d : -150.0);
}

/* One row of c logits with target t in the format fmt: the textbook path (losses.py's
 * textbook_multiclass), PyTorch's stable path (torch_fused.stable_index: log_softmax, then
 * nll) and naive path (torch_naive.naive_index: log of softmax), every step as
 * torch_common.py's log_softmax and softmax take it. tab: the tables of fast.py (the textbook
 * exp, the textbook log, PyTorch's log, of each value of the format); zr, et, es and index:
 * c values each of scratch; ahead: the next row's logits, to prefetch; over_at: where the
 * textbook exp overflows (below); look_up...: the instruction set's look_up_, pairwise2_,
 * pairwise1_ and cast16_. */
INLINE void narrow_row(const void *z, int narrow, int c, int64_t t, int fmt, const float *tab,
                       float *zr, float *et, float *es, uint32_t *index, double *loss,
                       Py_ssize_t stride, uint16_t *bits, const char *ahead, float eta,
                       float over_at, LookUp *look_up, Pairwise2 *pairwise2,
                       Pairwise1 *pairwise1, Cast16 *cast16)
{
    const float *t_exp = tab, *t_log = tab + TABLE, *f_log = tab + 2 * TABLE;
    /* the logits in the format (p.cast), their table indices, their max and whether any is
     * not finite; the max of integer keys ordered as the floats (the bits of a negative float
     * flipped), which vectorises where a float max does not */
    int32_t top = INT32_MIN;
    uint32_t odd = 0;
    int done = fmt == FLOAT16 ? cast16(z, narrow, c, zr, index, &top, &odd) : 0;
    cast_narrow(z, narrow, done, c, fmt, zr, index, &top, &odd);
    float m = f32_from((uint32_t)(top ^ (int32_t)((uint32_t)(top >> 31) >> 1)));
    if (odd) {
        *bits = N_SPECIAL;
        for (int q = 0; q < N_NARROW; q++)
            loss[q * stride] = NAN;
        return;
    }
    /* the textbook exps: table look-ups, but for a row whose exp overflows (over_at: the
     * least value of the format whose textbook exp is inf, where the table's inf entries are
     * exactly the values from it up and its other entries >= 0: narrow.exp_overflow_at),
     * which its max tells: there Σ is inf (terms >= 0, one inf, no NaN) and only the target's
     * exp is needed */
    int past = m >= over_at;
    int overflow = past || look_up(t_exp, index, et, c);
    float et_t = past ? t_exp[index[t]] : et[t];
    /* PyTorch: exp(z - m) in float32 (shifted32), Σ of them in float32, which the stable
     * path needs rounded to the format, the naive path as exp(z_t - m) * (1 / Σ) rounded.
     * First from exp_approx32, 16 at a time, with a prefetch of the next row's next 16
     * logits (`ahead`: this loop is the longest of the row, and the next row comes from
     * memory, not the cache): then Σ is within a factor 1 ± eta of that sum (narrow_eta),
     * and where every value in that range gives both paths the same rounding, that is
     * theirs (only the target's exp is needed exactly). Else the exact exps. */
    const size_t item = narrow ? 4 : 8;
    int j = 0;
    for (; j + 16 <= c; j += 16) {
        __builtin_prefetch(ahead + (size_t)j * item);
        __builtin_prefetch(ahead + (size_t)j * item + 8 * item);
        for (int l = j; l < j + 16; l++)
            es[l] = exp_approx32(zr[l] - m);
    }
    for (; j < c; j++)
        es[j] = exp_approx32(zr[j] - m);
    float sum_t = INFINITY, near, es_t = shifted32(zr[t], m);
    if (past)
        near = pairwise1(es, c);
    else
        pairwise2(et, es, c, &sum_t, &near);
    /* Σ >= 1 (the max's term), so lo and hi are positive normal floats; two ulps outward
     * cover the roundings of the products; rounding, division by a positive number and
     * multiplication by one are monotonic, so each path's rounding of Σ in [lo, hi] lies
     * between its roundings of lo and hi */
    float lo = f32_from(f32_bits(near * (1.0f - eta)) - 2);
    float hi = f32_from(f32_bits(near * (1.0f + eta)) + 2);
    float sum_r = round_narrow(lo, fmt), q = round_narrow(es_t * (1.0f / hi), fmt);
    if (sum_r != round_narrow(hi, fmt) || q != round_narrow(es_t * (1.0f / lo), fmt)) {
        for (j = 0; j < c; j++)
            es[j] = shifted32(zr[j], m);
        float sum;
        pairwise2(es, es, c, &sum, &sum);
        sum_r = round_narrow(sum, fmt);
        q = round_narrow(es_t * (1.0f / sum), fmt);
    }
    /* textbook: p = exp(z_t) / Σ exp(z), loss = -log p */
    float s = round_narrow(sum_t, fmt);
    float p = round_narrow(et_t / s, fmt);
    loss[0] = (double)(0.0f - t_log[narrow_index(p, fmt)]);
    /* stable: (z_t - m) - log(round(Σ)), rounded; loss = -that */
    float lse = f_log[narrow_index(sum_r, fmt)];
    loss[stride] = (double)(0.0f - round_narrow((zr[t] - m) - lse, fmt));
    /* naive: q = exp(z_t - m) * (1 / Σ), rounded; loss = -log q */
    loss[2 * stride] = (double)(0.0f - f_log[narrow_index(q, fmt)]);
    *bits = (uint16_t)((overflow ? N_OVER : 0) | (p == 0.0f ? N_UNDER : 0) |
                       (q == 0.0f ? N_NUNDER : 0));
}

/* The most additions a term of numpy's pairwise sum of n terms passes through: in a block
 * of up to 128, 15 into its accumulator, 3 combining them, 7 of the remainder; one more per
 * halving above. */
static int pairwise_depth(Py_ssize_t n)
{
    if (n <= 128)
        return n < 8 ? (int)n : 25;
    Py_ssize_t n2 = n / 2;
    n2 -= n2 % 8;
    int a = pairwise_depth(n2), b = pairwise_depth(n - n2);
    return 1 + (a > b ? a : b);
}

/* The bound of narrow_row: Σ, numpy's float32 pairwise sum of the exps es_j of a row of c
 * logits, and S, the same sum of exp_approx32's es'_j (|es'_j - es_j| <= EXP32_ERROR es_j,
 * or below exp(APPROX_MIN) when es_j is: 2**-123 at most), are each within gamma of the
 * exact sum E of their terms (gamma = D u / (1 - D u), D additions at most, u = 2**-24), so
 * |S - Σ| <= (2 gamma + EXP32_ERROR (1 + gamma)) E + c 2**-123, E <= Σ / (1 - gamma), and
 * Σ >= 1: Σ / S is within 1 ± eta of 1 for eta twice that relative bound (Σ >= S (1 - x)
 * from S <= Σ (1 + x); Σ <= S (1 + 2 x) from S >= Σ (1 - x), x <= 1/4). Rounded up. */
static float narrow_eta(Py_ssize_t c)
{
    double u = 0x1p-24, d = pairwise_depth(c);
    double gamma = d * u / (1.0 - d * u);
    double x = (2.0 * gamma + (double)EXP32_ERROR * (1.0 + gamma)) / (1.0 - gamma) + 0x1p-90;
    return (float)(2.0 * x * (1.0 + 0x1p-20));
}

/* Rows lo..hi in the formats of the bit mask `formats` (1 float16, 2 bfloat16), each row in
 * both before the next, while it is in the cache; tab, over_at, loss and bits hold one block
 * per format present, float16's first. 0 if the scratch could not be allocated. */
INLINE int narrow_rows(const void *z, int narrow, Py_ssize_t c, const int64_t *y, int formats,
                       const float *tab, const float *over_at, double *loss, Py_ssize_t n,
                       uint16_t *bits, Py_ssize_t lo, Py_ssize_t hi, LookUp *look_up,
                       Cast16 *cast16, Pairwise2 *pairwise2, Pairwise1 *pairwise1)
{
    float *scratch = malloc(4 * (size_t)c * sizeof(float)); /* zr, et, es, index */
    if (!scratch)
        return 0;
    const size_t row_bytes = (size_t)c * (narrow ? 4 : 8);
    const float eta = narrow_eta(c);
    int first = formats & 1; /* the blocks before bfloat16's */
    const float *tab_bf = tab + first * 3 * TABLE;
    double *loss_bf = loss + first * N_NARROW * n;
    uint16_t *bits_bf = bits + first * n;
    for (Py_ssize_t i = lo; i < hi; i++) {
        const void *zi = (const char *)z + (size_t)i * row_bytes;
        const char *ahead = (const char *)zi + (i + 1 < hi ? row_bytes : 0);
        /* the format a constant in each call, so that narrow_row vectorises for it */
        if (formats & 1)
            narrow_row(zi, narrow, (int)c, y[i], FLOAT16, tab, scratch, scratch + c,
                       scratch + 2 * c, (uint32_t *)(scratch + 3 * c), loss + i, n, bits + i,
                       ahead, eta, over_at[0], look_up, pairwise2, pairwise1, cast16);
        if (formats & 2)
            narrow_row(zi, narrow, (int)c, y[i], BFLOAT16, tab_bf, scratch, scratch + c,
                       scratch + 2 * c, (uint32_t *)(scratch + 3 * c), loss_bf + i, n,
                       bits_bf + i, ahead, eta, over_at[first], look_up, pairwise2, pairwise1,
                       cast16);
    }
    free(scratch);
    return 1;
}

/* The entry points of each instruction set: float32 and float64 logits. */
#define DEF_NARROW(isa, name, ATTR)                                                         \
    ATTR static int narrow32_##isa(const void *z, Py_ssize_t c, const int64_t *y, int formats,\
                                   const float *tab, const float *over_at, double *loss,    \
                                   Py_ssize_t n, uint16_t *bits, Py_ssize_t lo, Py_ssize_t hi)\
    {                                                                                       \
        return narrow_rows(z, 1, c, y, formats, tab, over_at, loss, n, bits, lo, hi,        \
                           look_up_##isa, cast16_##isa, pairwise2_##isa, pairwise1_##isa);  \
    }                                                                                       \
    ATTR static int narrow64_##isa(const void *z, Py_ssize_t c, const int64_t *y, int formats,\
                                   const float *tab, const float *over_at, double *loss,    \
                                   Py_ssize_t n, uint16_t *bits, Py_ssize_t lo, Py_ssize_t hi)\
    {                                                                                       \
        return narrow_rows(z, 0, c, y, formats, tab, over_at, loss, n, bits, lo, hi,        \
                           look_up_##isa, cast16_##isa, pairwise2_##isa, pairwise1_##isa);  \
    }
FOR_EACH_ISA(DEF_NARROW)

/* apply's float16 rounding (bits 0) or bits (1) of each value of x as a float32: narrow_row's
 * first loop over float32 logits (cast16, then cast_narrow), a piece at a time. */
INLINE void apply_float16(Cast16 *cast16, int bits, const double *x, double *out, Py_ssize_t n)
{
    float xf[256], zr[256];
    uint32_t index[256];
    for (Py_ssize_t i = 0; i < n; i += 256) {
        int k = n - i < 256 ? (int)(n - i) : 256, done;
        int32_t top = INT32_MIN;
        uint32_t odd = 0;
        for (int j = 0; j < k; j++)
            xf[j] = (float)x[i + j];
        done = cast16(xf, F32, k, zr, index, &top, &odd);
        cast_narrow(xf, F32, done, k, FLOAT16, zr, index, &top, &odd);
        for (int j = 0; j < k; j++)
            out[i + j] = bits ? (double)index[j] : (double)zr[j];
    }
}

/* The elementary functions on their own, for tests: 0 exp_full, 1 exp_tame, 2 log_pos,
 * 3 log1p_pos, 4 and 5 round_narrow to float16 and bfloat16 (float16 as narrow_row rounds it:
 * apply_float16), 6 the float16 bits of the rounded value (narrow_index; a float32 argument:
 * its float32 value), 7 exp_approx32 (a loop each, so that each vectorises). */
#define DEF_APPLY(isa, name, ATTR)                                                          \
    ATTR static void apply_each_##isa(int which, const double *x, double *out, Py_ssize_t n) \
    {                                                                                       \
        if (which == 0)                                                                     \
            for (Py_ssize_t i = 0; i < n; i++)                                              \
                out[i] = exp_full(x[i]);                                                    \
        else if (which == 1)                                                                \
            for (Py_ssize_t i = 0; i < n; i++)                                              \
                out[i] = exp_tame(x[i]);                                                    \
        else if (which == 2)                                                                \
            for (Py_ssize_t i = 0; i < n; i++)                                              \
                out[i] = log_pos(x[i]);                                                     \
        else if (which == 3)                                                                \
            for (Py_ssize_t i = 0; i < n; i++)                                              \
                out[i] = log1p_pos(x[i]);                                                   \
        else if (which == 4)                                                                \
            apply_float16(cast16_##isa, 0, x, out, n);                                      \
        else if (which == 5)                                                                \
            for (Py_ssize_t i = 0; i < n; i++)                                              \
                out[i] = (double)round_narrow((float)x[i], BFLOAT16);                       \
        else if (which == 6)                                                                \
            apply_float16(cast16_##isa, 1, x, out, n);                                      \
        else                                                                                \
            for (Py_ssize_t i = 0; i < n; i++)                                              \
                out[i] = (double)exp_approx32((float)x[i]);                                 \
    }
FOR_EACH_ISA(DEF_APPLY)

/* ------------------------------------------------------------------ headroom */

/* lse(lam z) of a row of c logits whose max is m, for lam > 0: lam m + log S, S the sum of
 * the terms exp(x_j), x_j = lam (z_j - m), taken by exp_approx32, 16 lanes of float32
 * summing SCALED_BLOCK terms, then float64 lanes and a tree: the same bits on every
 * instruction set. x_j in float32 (z_j - m, then times lam rounded to float32: three
 * roundings) where the logits and m are float32 values and lam is a normal float32 well
 * inside its range, which keeps every product finite or far below exp's range; else lam z_j
 * - lam m in float64 as numpy computes it, rounded to float32 (one rounding, then exact on
 * numpy's x_j). cecheck.headroom's estimate of a scaled row's log-partition, to tell the
 * rows far from a threshold; its relative error is at most scaled_eta(c) (NaN where lam m is
 * not finite: numpy decides). */
#define SCALED_BLOCK 256
#define SCALED_LAM_MIN 0x1p-60 /* lam's range for float32 x_j: lam (z_j - m) overflows only */
#define SCALED_LAM_MAX 0x1p60  /* to -inf, and 2**-60 * 2 * float32's max is far below -86 */

INLINE double scaled_lse_row(const void *z, int narrow, int c, double lam, double m)
{
    double lm = lam * m, acc[LANES];
    float part[LANES], terms[SCALED_BLOCK];
    if (!isfinite(lm))
        return NAN;
    for (int l = 0; l < LANES; l++)
        acc[l] = 0.0;
    const int single = narrow != F64 && lam >= SCALED_LAM_MIN && lam <= SCALED_LAM_MAX &&
                       fabs(lm) <= 0x1p24;
    const float lam32 = (float)lam, m32 = (float)m; /* m: a logit, exact when single */
    for (int lo = 0; lo < c; lo += SCALED_BLOCK) {
        int size = c - lo < SCALED_BLOCK ? c - lo : SCALED_BLOCK;
        const void *zb = (const char *)z + (size_t)lo * item_size(narrow);
        if (single && narrow == BF16)
            for (int j = 0; j < size; j++)
                terms[j] = exp_approx32(lam32 * (bf16_float(((const uint16_t *)zb)[j]) - m32));
        else if (single)
            for (int j = 0; j < size; j++)
                terms[j] = exp_approx32(lam32 * (((const float *)zb)[j] - m32));
        else
            for (int j = 0; j < size; j++)
                terms[j] = exp_approx32((float)(lam * load(zb, narrow, j) - lm));
        for (int l = 0; l < LANES; l++)
            part[l] = 0.0f;
        int whole = size - size % LANES;
        for (int j = 0; j < whole; j += LANES)
            for (int l = 0; l < LANES; l++)
                part[l] += terms[j + l];
        for (int j = whole; j < size; j++)
            part[j - whole] += terms[j];
        for (int l = 0; l < LANES; l++)
            acc[l] += (double)part[l];
    }
    return lm + log_pos(tree64(acc));
}

/* The bound of scaled_lse_row: S / E within 1 +- eta of 1, E the exact sum of exp(x_j) of
 * the float64 x_j <= 0 (lam z_j and lam m each rounded, then their difference, exactly as
 * numpy: that error is cecheck.headroom's ESTIMATE_SLACK), E >= 1 (the max's x is exactly 0).
 * Rounding x_j to float32 moves it by 2**-24 |x_j| at most (2**-150 where subnormal), so its
 * exp by a factor exp(+-2**-24 |x_j|) (1 + 2**-17 bounds (exp(a) - 1) / a for the a met);
 * over the terms, Σ exp(x_j) |x_j| = E (H - log E) <= E log c (H the entropy of the weights
 * exp(x_j) / E): 2**-24 log c relatively. exp_approx32 is within EXP32_ERROR of shifted32's
 * float32 exp from APPROX_MIN up, itself within 2**-24 (1 + 2**-40) of exp (exp_tame's error
 * included); below, it gives exp(APPROX_MIN) (1 + EXP32_ERROR) at most for a term in [0,
 * exp(APPROX_MIN) (1 + 2**-17)]: 2**-123 off, c 2**-123 in all, relatively at most that as
 * S and E are about 1 at least. Where x_j is taken in float32 (scaled_lse_row), three
 * roundings (z_j - m, lam, their product: subnormal results exact, or off by 2**-150) move it
 * by 3.01 2**-24 |x*_j| from x*_j = lam (z_j - m) exactly, and numpy's x_j is within 2**-52
 * (lam |z_j| + lam |m|) + 2**-53 |x_j| of x*_j, where lam |z_j| <= lam |m| + |x*_j|: with
 * the weights, 3.01 2**-24 log c + 2**-51 (log c + lam |m|) at most, lam |m| <= 2**24 there:
 * 3.125 2**-24 log c + 2**-26 bounds both. The sum: each term passes SCALED_BLOCK / LANES
 * float32 additions (the first onto 0, exact, counted) and ceil(c / SCALED_BLOCK) + log2(LANES)
 * float64 ones, so it is within (1 + g32)(1 + g64) of the exact sum of the terms, g = D u /
 * (1 - D u), u the unit roundoff. The product of the factors, minus 1, plus c 2**-122;
 * rounded up generously. */
static double scaled_eta(Py_ssize_t c)
{
    double u = 0x1p-24, d32 = SCALED_BLOCK / LANES, d64 = (double)(c / SCALED_BLOCK + 1) + 4;
    double arg = (0x1.9p-23 * log((double)c) + 0x1p-26) * (1.0 + 0x1p-17) + 0x1p-149;
    double expo = (1.0 + (double)EXP32_ERROR) * (1.0 + u * (1.0 + 0x1p-40)) - 1.0;
    double g32 = d32 * u / (1.0 - d32 * u), g64 = d64 * 0x1p-53 / (1.0 - d64 * 0x1p-53);
    double eta = (1.0 + arg) * (1.0 + expo) * (1.0 + g32) * (1.0 + g64) - 1.0;
    return (eta + (double)c * 0x1p-122) * (1.0 + 0x1p-20);
}

INLINE void scaled_lse_rows(const void *z, int narrow, Py_ssize_t c, const int64_t *rows,
                            const double *lam, const double *m, double *out, Py_ssize_t lo,
                            Py_ssize_t hi)
{
    const size_t row_bytes = (size_t)c * item_size(narrow);
    for (Py_ssize_t k = lo; k < hi; k++)
        out[k] = scaled_lse_row((const char *)z + (size_t)rows[k] * row_bytes, narrow, (int)c,
                                lam[k], m[k]);
}

#define DEF_SCALED(isa, name, ATTR)                                                         \
    ATTR static void scaled32_##isa(const void *z, Py_ssize_t c, const int64_t *rows,       \
                                    const double *lam, const double *m, double *out,        \
                                    Py_ssize_t lo, Py_ssize_t hi)                           \
    {                                                                                       \
        scaled_lse_rows(z, F32, c, rows, lam, m, out, lo, hi);                              \
    }                                                                                       \
    ATTR static void scaled64_##isa(const void *z, Py_ssize_t c, const int64_t *rows,       \
                                    const double *lam, const double *m, double *out,        \
                                    Py_ssize_t lo, Py_ssize_t hi)                           \
    {                                                                                       \
        scaled_lse_rows(z, F64, c, rows, lam, m, out, lo, hi);                              \
    }                                                                                       \
    ATTR static void scaled16_##isa(const void *z, Py_ssize_t c, const int64_t *rows,       \
                                    const double *lam, const double *m, double *out,        \
                                    Py_ssize_t lo, Py_ssize_t hi)                           \
    {                                                                                       \
        scaled_lse_rows(z, BF16, c, rows, lam, m, out, lo, hi);                             \
    }
FOR_EACH_ISA(DEF_SCALED)

#pragma GCC pop_options

/* ------------------------------------------------------------------ instruction sets */

enum { INDEX, SIGMOID, SOFT }; /* the kernels */

/* ends: the INDEX kernel's (4, n) row ends (store_ends); unused by the others (NULL). */
typedef void KernelFn(const void *z, Py_ssize_t c, const void *labels, double *loss,
                      double *ends, Py_ssize_t n, uint16_t *bits, Py_ssize_t lo, Py_ssize_t hi);
typedef void ApplyFn(int which, const double *x, double *out, Py_ssize_t n);
typedef void ScaledFn(const void *z, Py_ssize_t c, const int64_t *rows, const double *lam,
                      const double *m, double *out, Py_ssize_t lo, Py_ssize_t hi);
typedef int NarrowFn(const void *z, Py_ssize_t c, const int64_t *y, int formats, const float *tab,
                     const float *over_at, double *loss, Py_ssize_t n, uint16_t *bits,
                     Py_ssize_t lo, Py_ssize_t hi);

/* One instruction set's copy of the entry points: kernel[INDEX, SIGMOID or SOFT][float64?],
 * and INDEX on bfloat16 bits (index16) */
typedef struct {
    const char *name;
    KernelFn *kernel[3][2];
    KernelFn *index16;
    ApplyFn *apply;
    NarrowFn *narrow[2]; /* float16 and bfloat16 multiclass index paths [float64?] */
    ScaledFn *scaled[3]; /* the headroom's scaled rows [float32, float64, bfloat16 bits] */
    LookUp *look_up;     /* the narrow paths' table look-ups */
    Pairwise1 *pairwise1; /* and their sum of one array */
} Isa;

#define ISA_ENTRY(isa, name, ATTR)                                                          \
    {name,                                                                                  \
     {{rows32_##isa, rows64_##isa}, {sigmoid32_##isa, sigmoid64_##isa},                     \
      {soft32_##isa, soft64_##isa}},                                                        \
     rows16_##isa, apply_each_##isa, {narrow32_##isa, narrow64_##isa},                      \
     {scaled32_##isa, scaled64_##isa, scaled16_##isa}, look_up_##isa, pairwise1_##isa},
static const Isa isas[] = {FOR_EACH_ISA(ISA_ENTRY)};
#define N_ISAS ((int)(sizeof isas / sizeof isas[0]))

static const Isa *active; /* chosen once, when the module is imported */

/* Whether this CPU runs the instruction set isas[i]. */
static int cpu_runs(int i)
{
#ifdef X86_ISAS
    __builtin_cpu_init();
    if (strcmp(isas[i].name, "x86-64-v4") == 0)
        return __builtin_cpu_supports("x86-64-v4") != 0;
    if (strcmp(isas[i].name, "x86-64-v3") == 0)
        return __builtin_cpu_supports("x86-64-v3") != 0;
#endif
    return strcmp(isas[i].name, "default") == 0;
}

/* The instruction sets this CPU runs, as "a, b, c", into buf. */
static void runnable_names(char *buf, size_t size)
{
    buf[0] = '\0';
    for (int i = 0; i < N_ISAS; i++) {
        if (!cpu_runs(i))
            continue;
        if (buf[0])
            strncat(buf, ", ", size - strlen(buf) - 1);
        strncat(buf, isas[i].name, size - strlen(buf) - 1);
    }
}

/* Set `active`: the copy CECHECK_KERNEL_ISA names, or the best this CPU runs. 0 and an
 * ImportError if the variable names a copy this build lacks or this CPU cannot run. */
static int choose_isa(void)
{
    const char *want = getenv("CECHECK_KERNEL_ISA");
    char runnable[128];
    runnable_names(runnable, sizeof runnable);
    for (int i = 0; i < N_ISAS; i++) {
        int named = want && want[0] && strcmp(want, isas[i].name) == 0;
        if (named && !cpu_runs(i)) {
            PyErr_Format(PyExc_ImportError,
                         "CECHECK_KERNEL_ISA=%s: this CPU cannot run that kernel; it runs %s",
                         want, runnable);
            return 0;
        }
        if (named || ((!want || !want[0]) && cpu_runs(i))) {
            active = &isas[i];
            return 1;
        }
    }
    PyErr_Format(PyExc_ImportError, "CECHECK_KERNEL_ISA=%s: no such kernel; this CPU runs %s",
                 want ? want : "", runnable);
    return 0;
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

/* Parse (z, itemsize, n, c, labels, loss, bits, lo, hi), with INDEX (..., loss, ends, bits,
 * lo, hi), check every buffer's size (labels: int64 (n,) for INDEX, float64 (n, c) for the
 * others) and run the kernel on rows lo..hi without the GIL. */
static PyObject *run_rows(PyObject *args, int kernel)
{
    int per_class = kernel != INDEX;
    Py_buffer z, y, loss, bits, ends = {0};
    Py_ssize_t itemsize, n, c, lo, hi;
    if (per_class ? !PyArg_ParseTuple(args, "y*nnny*w*w*nn", &z, &itemsize, &n, &c, &y, &loss,
                                      &bits, &lo, &hi)
                  : !PyArg_ParseTuple(args, "y*nnny*w*w*w*nn", &z, &itemsize, &n, &c, &y, &loss,
                                      &ends, &bits, &lo, &hi))
        return NULL;
    PyObject *result = NULL;
    int bf16 = itemsize == 2 && kernel == INDEX; /* bfloat16 bits: multiclass index only */
    if ((itemsize != 4 && itemsize != 8 && !bf16) || n < 0 || c < 1 || c > INT32_MAX ||
        lo < 0 || hi > n || lo > hi) {
        PyErr_SetString(PyExc_ValueError, "bad itemsize, shape or row range");
        goto done;
    }
    if (!check_size(&z, n * c * itemsize, "z") ||
        !check_size(&y, (per_class ? n * c : n) * 8, "labels") ||
        !check_size(&loss, N_OUT * n * 8, "loss") || !check_size(&bits, n * 2, "bits") ||
        (!per_class && !check_size(&ends, 4 * n * 8, "ends")))
        goto done;
    if (!per_class) {
        const int64_t *yy = y.buf;
        for (Py_ssize_t i = lo; i < hi; i++) {
            if (yy[i] < 0 || yy[i] >= c) {
                PyErr_Format(PyExc_ValueError, "target %lld of row %zd is not in [0, %zd)",
                             (long long)yy[i], i, c);
                goto done;
            }
        }
    }
    KernelFn *run = bf16 ? active->index16 : active->kernel[kernel][itemsize == 8];
    Py_BEGIN_ALLOW_THREADS
    run(z.buf, c, y.buf, loss.buf, ends.buf, n, bits.buf, lo, hi);
    Py_END_ALLOW_THREADS
    result = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&z);
    PyBuffer_Release(&y);
    PyBuffer_Release(&loss);
    PyBuffer_Release(&bits);
    if (!per_class)
        PyBuffer_Release(&ends);
    return result;
}

PyDoc_STRVAR(multiclass_index_doc,
             "multiclass_index(z, itemsize, n, c, y, loss, ends, bits, lo, hi)\n\n"
             "Rows lo..hi of C-contiguous (n, c) logits z (float32 if itemsize is 4, float64\n"
             "if 8, bfloat16 bits if 2) with int64 targets y in [0, c): losses into the\n"
             "float64 (7, n) buffer\n"
             "loss (textbook32, textbook64, stable32, stable64, reference, naive32, naive64;\n"
             "naive and stable as PyTorch computes them), each row's max, min, largest logit\n"
             "of the classes other than its target and target's logit into the float64 (4, n)\n"
             "buffer ends (NaN on a row left to numpy), and status bits into the uint16 (n,)\n"
             "buffer bits. Releases the GIL.");

static PyObject *py_multiclass_index(PyObject *self, PyObject *args)
{
    (void)self;
    return run_rows(args, INDEX);
}

PyDoc_STRVAR(sigmoid_doc,
             "sigmoid(z, itemsize, n, c, t, loss, bits, lo, hi)\n\n"
             "As multiclass_index, with float64 (n, c) targets t: the binary cross-entropy of\n"
             "each class, averaged over the classes.");

static PyObject *py_sigmoid(PyObject *self, PyObject *args)
{
    (void)self;
    return run_rows(args, SIGMOID);
}

PyDoc_STRVAR(soft_doc,
             "soft(z, itemsize, n, c, t, loss, bits, lo, hi)\n\n"
             "As multiclass_index, with float64 (n, c) probability targets t (soft labels).");

static PyObject *py_soft(PyObject *self, PyObject *args)
{
    (void)self;
    return run_rows(args, SOFT);
}

PyDoc_STRVAR(narrow_index_doc,
             "narrow_index(z, itemsize, n, c, y, formats, tables, over_at, loss, bits, lo, hi)\n\n"
             "As multiclass_index, in float16 (formats 1), bfloat16 (2) or both (3), each\n"
             "format present a block of each buffer, float16's first: the textbook, stable\n"
             "and naive losses into the float64 (k, 3, n) buffer loss, the status bits (1 exp\n"
             "overflow, 2 textbook prob underflow, 4 naive prob underflow, 32 left to numpy)\n"
             "into the uint16 (k, n) bits. tables: float32 (k, 3, 65536), the textbook path's\n"
             "exp and log and PyTorch's log of each value of the format, by its bits;\n"
             "over_at: float32 (k,), the least value of the format whose textbook exp is\n"
             "inf where the table's inf entries are exactly the values from it up and its\n"
             "others >= 0 (else inf): a row whose max reaches it overflows.\n"
             "Releases the GIL.");

static PyObject *py_narrow_index(PyObject *self, PyObject *args)
{
    (void)self;
    Py_buffer z, y, tab, over, loss, bits;
    Py_ssize_t itemsize, n, c, lo, hi;
    int formats;
    if (!PyArg_ParseTuple(args, "y*nnny*iy*y*w*w*nn", &z, &itemsize, &n, &c, &y, &formats, &tab,
                          &over, &loss, &bits, &lo, &hi))
        return NULL;
    PyObject *result = NULL;
    if ((itemsize != 4 && itemsize != 8) || formats < 1 || formats > 3 || n < 0 ||
        c < 1 || c > INT32_MAX || lo < 0 || hi > n || lo > hi) {
        PyErr_SetString(PyExc_ValueError, "bad itemsize, format, shape or row range");
        goto done;
    }
    Py_ssize_t k = (formats & 1) + (formats >> 1); /* formats */
    if (!check_size(&z, n * c * itemsize, "z") || !check_size(&y, n * 8, "labels") ||
        !check_size(&tab, k * 3 * TABLE * 4, "tables") || !check_size(&over, k * 4, "over_at") ||
        !check_size(&loss, k * N_NARROW * n * 8, "loss") ||
        !check_size(&bits, k * n * 2, "bits"))
        goto done;
    const int64_t *yy = y.buf;
    for (Py_ssize_t i = lo; i < hi; i++) {
        if (yy[i] < 0 || yy[i] >= c) {
            PyErr_Format(PyExc_ValueError, "target %lld of row %zd is not in [0, %zd)",
                         (long long)yy[i], i, c);
            goto done;
        }
    }
    NarrowFn *run = active->narrow[itemsize == 8];
    int ok;
    Py_BEGIN_ALLOW_THREADS
    ok = run(z.buf, c, yy, formats, tab.buf, over.buf, loss.buf, n, bits.buf, lo, hi);
    Py_END_ALLOW_THREADS
    if (ok)
        result = Py_NewRef(Py_None);
    else
        PyErr_NoMemory();
done:
    PyBuffer_Release(&z);
    PyBuffer_Release(&y);
    PyBuffer_Release(&tab);
    PyBuffer_Release(&over);
    PyBuffer_Release(&loss);
    PyBuffer_Release(&bits);
    return result;
}

PyDoc_STRVAR(apply_doc, "apply(name, x, out)\n\n"
                        "The kernel's exp, exp_tame (for |x| <= 300), log or log1p (for x >= 0)\n"
                        "of each float64 in x, into out; or round_float16, round_bfloat16,\n"
                        "float16_bits and exp_approx32 of each float32 value in x (as\n"
                        "float64). For tests.");

static PyObject *py_apply(PyObject *self, PyObject *args)
{
    const char *name;
    Py_buffer x, out;
    (void)self;
    if (!PyArg_ParseTuple(args, "sy*w*", &name, &x, &out))
        return NULL;
    static const char *names[] = {"exp",          "exp_tame",      "log",         "log1p",
                                  "round_float16", "round_bfloat16", "float16_bits",
                                  "exp_approx32"};
    int which = -1;
    for (int i = 0; i < 8; i++)
        which = strcmp(name, names[i]) == 0 ? i : which;
    PyObject *result = NULL;
    if (which < 0)
        PyErr_Format(PyExc_ValueError, "no function %s", name);
    else if (x.len % 8 != 0)
        PyErr_SetString(PyExc_ValueError, "x is not a float64 buffer");
    else if (check_size(&out, x.len, "out")) {
        active->apply(which, x.buf, out.buf, x.len / 8);
        result = Py_NewRef(Py_None);
    }
    PyBuffer_Release(&x);
    PyBuffer_Release(&out);
    return result;
}

PyDoc_STRVAR(look_up_doc, "look_up(tab, index, out) -> bool\n\n"
                          "tab[index] into out (float32 tab of 65,536 entries, uint32 index and\n"
                          "float32 out of the same length) as the narrow kernel looks its tables\n"
                          "up, and whether a value is inf. For tests.");

static PyObject *py_look_up(PyObject *self, PyObject *args)
{
    Py_buffer tab, index, out;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*y*w*", &tab, &index, &out))
        return NULL;
    PyObject *result = NULL;
    const uint32_t *ix = index.buf;
    Py_ssize_t c = index.len / 4, bad = 0;
    for (Py_ssize_t j = 0; j < c; j++)
        bad |= ix[j] >= TABLE;
    if (bad || index.len % 4 != 0 || c > INT_MAX)
        PyErr_SetString(PyExc_ValueError, "index is not uint32 below 65536");
    else if (check_size(&tab, TABLE * 4, "tab") && check_size(&out, index.len, "out"))
        result = PyBool_FromLong(active->look_up(tab.buf, ix, out.buf, (int)c));
    PyBuffer_Release(&tab);
    PyBuffer_Release(&index);
    PyBuffer_Release(&out);
    return result;
}

PyDoc_STRVAR(pairwise_sum_doc, "pairwise_sum(a) -> float\n\n"
                               "The float32 sum of the float32 a in numpy's pairwise order, as\n"
                               "the narrow kernel sums one array. For tests.");

static PyObject *py_pairwise_sum(PyObject *self, PyObject *args)
{
    Py_buffer a;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*", &a))
        return NULL;
    PyObject *result = NULL;
    if (a.len % 4 != 0)
        PyErr_SetString(PyExc_ValueError, "a is not float32");
    else
        result = PyFloat_FromDouble((double)active->pairwise1(a.buf, a.len / 4));
    PyBuffer_Release(&a);
    return result;
}

PyDoc_STRVAR(widen_bfloat16_doc,
             "widen_bfloat16(bits, out, lo, hi)\n\n"
             "Items lo..hi of bits (bfloat16 values held as their uint16 bits) as float32 into\n"
             "the same items of out: each pattern shifted left by 16 bits, so every value (inf\n"
             "and NaN too) is exactly the same; without the GIL.");

static PyObject *py_widen_bfloat16(PyObject *self, PyObject *args)
{
    Py_buffer bits, out;
    Py_ssize_t lo, hi;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*w*nn", &bits, &out, &lo, &hi))
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t n = bits.len / 2;
    if (bits.len % 2 != 0 || lo < 0 || hi > n || lo > hi)
        PyErr_SetString(PyExc_ValueError, "bits is not a uint16 buffer, or a bad range");
    else if (check_size(&out, n * 4, "out")) {
        const uint16_t *b = bits.buf;
        uint32_t *o = out.buf;
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t i = lo; i < hi; i++)
            o[i] = (uint32_t)b[i] << 16;
        Py_END_ALLOW_THREADS
        result = Py_NewRef(Py_None);
    }
    PyBuffer_Release(&bits);
    PyBuffer_Release(&out);
    return result;
}

PyDoc_STRVAR(isa_doc, "isa()\n\n"
                      "The instruction set of the kernels in use: x86-64-v4, x86-64-v3 or default.");

static PyObject *py_isa(PyObject *self, PyObject *args)
{
    (void)self;
    (void)args;
    return PyUnicode_FromString(active->name);
}

PyDoc_STRVAR(isas_doc, "isas()\n\n"
                       "{name: whether this CPU runs it} for each instruction set the kernels\n"
                       "were compiled for, best first. CECHECK_KERNEL_ISA=name, set before the\n"
                       "import, forces one (the import fails if this CPU cannot run it).");

static PyObject *py_isas(PyObject *self, PyObject *args)
{
    (void)self;
    (void)args;
    PyObject *d = PyDict_New();
    for (int i = 0; d && i < N_ISAS; i++) {
        if (PyDict_SetItemString(d, isas[i].name, cpu_runs(i) ? Py_True : Py_False) < 0)
            Py_CLEAR(d);
    }
    return d;
}

PyDoc_STRVAR(scaled_lse_doc,
             "scaled_lse(z, itemsize, n, c, rows, lam, m, out, lo, hi)\n\n"
             "For k in lo..hi: out[k] = lse(lam[k] * z[rows[k]]), the log-sum-exp of row rows[k]\n"
             "of C-contiguous (n, c) logits z (float32 if itemsize is 4, float64 if 8, bfloat16\n"
             "bits if 2) scaled by lam[k] > 0, whose max is m[k]; rows int64, lam, m and out\n"
             "float64 (k,). Returns eta: each out[k] is lam[k] m[k] + log S, S within a factor\n"
             "1 +- eta of the exact sum of exp(x_j), x_j = lam z_j - lam m in float64.\n"
             "Releases the GIL.");

static PyObject *py_scaled_lse(PyObject *self, PyObject *args)
{
    (void)self;
    Py_buffer z, rows, lam, m, out;
    Py_ssize_t itemsize, n, c, lo, hi;
    if (!PyArg_ParseTuple(args, "y*nnny*y*y*w*nn", &z, &itemsize, &n, &c, &rows, &lam, &m, &out,
                          &lo, &hi))
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t k = rows.len / 8;
    if ((itemsize != 2 && itemsize != 4 && itemsize != 8) || n < 0 || c < 1 || c > INT32_MAX ||
        lo < 0 || hi > k || lo > hi) {
        PyErr_SetString(PyExc_ValueError, "bad itemsize, shape or row range");
        goto done;
    }
    if (!check_size(&z, n * c * itemsize, "z") || !check_size(&rows, k * 8, "rows") ||
        !check_size(&lam, k * 8, "lam") || !check_size(&m, k * 8, "m") ||
        !check_size(&out, k * 8, "out"))
        goto done;
    const int64_t *r = rows.buf;
    for (Py_ssize_t i = lo; i < hi; i++) {
        if (r[i] < 0 || r[i] >= n) {
            PyErr_Format(PyExc_ValueError, "row %lld is not in [0, %zd)", (long long)r[i], n);
            goto done;
        }
    }
    ScaledFn *run = active->scaled[itemsize == 2 ? 2 : itemsize == 8];
    Py_BEGIN_ALLOW_THREADS
    run(z.buf, c, rows.buf, lam.buf, m.buf, out.buf, lo, hi);
    Py_END_ALLOW_THREADS
    result = PyFloat_FromDouble(scaled_eta(c));
done:
    PyBuffer_Release(&z);
    PyBuffer_Release(&rows);
    PyBuffer_Release(&lam);
    PyBuffer_Release(&m);
    PyBuffer_Release(&out);
    return result;
}

static PyMethodDef methods[] = {
    {"isa", py_isa, METH_NOARGS, isa_doc},
    {"isas", py_isas, METH_NOARGS, isas_doc},
    {"multiclass_index", py_multiclass_index, METH_VARARGS, multiclass_index_doc},
    {"sigmoid", py_sigmoid, METH_VARARGS, sigmoid_doc},
    {"soft", py_soft, METH_VARARGS, soft_doc},
    {"narrow_index", py_narrow_index, METH_VARARGS, narrow_index_doc},
    {"apply", py_apply, METH_VARARGS, apply_doc},
    {"scaled_lse", py_scaled_lse, METH_VARARGS, scaled_lse_doc},
    {"look_up", py_look_up, METH_VARARGS, look_up_doc},
    {"pairwise_sum", py_pairwise_sum, METH_VARARGS, pairwise_sum_doc},
    {"widen_bfloat16", py_widen_bfloat16, METH_VARARGS, widen_bfloat16_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "cecheck._kernel", "The fused loss kernels of cecheck.fast.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__kernel(void)
{
    if (!choose_isa())
        return NULL;
    return PyModule_Create(&module);
}
