/*
 * fpmix.c - floating-point workloads for the emulator's compiled-guest test: n-body, spectral norm, an FFT, a
 * Mandelbrot set (double); a float matrix kernel; long double (x87) series, conversions and square roots; the
 * SSE and x87 rounding modes and precision control switched at run time; libm-style exp/log/sin/cos written in C;
 * printf-like %f formatting and strtod-like parsing. Every result is printed both in decimal and as its bits.
 *
 * Built two ways from this one file (see CompiledGuestTests):
 *   -DPARAVIRT_GUEST : a freestanding Paravirt guest (output through the debug_write hypercall);
 *   otherwise        : a static Linux program run natively.
 * The two outputs must be identical: any floating-point instruction the emulator gets wrong changes a bit.
 * Only exactly specified operations are used (no x87 transcendental instruction: those are within one ulp of the
 * hardware, which differs between CPU vendors; the differential tests cover them).
 */
#include <stddef.h>
#include <stdint.h>

#ifndef SCALE
#define SCALE 1
#endif

/* ---- output ---- */

static char out[16384];
static size_t out_len;

static void put(const char *s)
{
    while (*s && out_len < sizeof out - 1)
        out[out_len++] = *s++;
}

static void put_hex(uint64_t v, int digits)
{
    char t[17];
    for (int k = 0; k < digits; k++)
        t[k] = "0123456789abcdef"[(v >> (4 * (digits - 1 - k))) & 0xF];
    t[digits] = 0;
    put(t);
}

static void put_u64(uint64_t v)
{
    char t[24];
    int n = 0;
    do {
        t[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    char r[24];
    for (int k = 0; k < n; k++)
        r[k] = t[n - 1 - k];
    r[n] = 0;
    put(r);
}

static uint64_t bits_d(double d)
{
    union { double d; uint64_t u; } x = { d };
    return x.u;
}

static uint32_t bits_f(float f)
{
    union { float f; uint32_t u; } x = { f };
    return x.u;
}

/* printf("%.*f")-like: integer part by repeated division, fraction by repeated multiplication (long double). */
static void put_fixed(double v, int decimals)
{
    if (v != v) {
        put("nan");
        return;
    }
    if (v < 0) {
        put("-");
        v = -v;
    }
    if (v > 1e18) {
        put("big");
        return;
    }
    long double x = v;
    long double scale = 1;
    for (int k = 0; k < decimals; k++)
        scale *= 10;
    long double r = x * scale + 0.5L;
    uint64_t all = (uint64_t)r;
    uint64_t p10 = (uint64_t)scale;
    put_u64(all / p10);
    if (decimals) {
        put(".");
        uint64_t frac = all % p10;
        char t[20];
        for (int k = decimals - 1; k >= 0; k--) {
            t[k] = (char)('0' + frac % 10);
            frac /= 10;
        }
        t[decimals] = 0;
        put(t);
    }
}

static void result(const char *name, double v)
{
    put(name);
    put(" ");
    put_fixed(v, 9);
    put(" ");
    put_hex(bits_d(v), 16);
    put("\n");
}

static void result_ld(const char *name, long double v)
{
    union { long double l; struct { uint64_t m; uint16_t e; } p; } x;
    x.p.m = 0;
    x.p.e = 0;
    x.l = v;
    put(name);
    put(" ");
    put_hex(x.p.e, 4);
    put(":");
    put_hex(x.p.m, 16);
    put("\n");
}

/* ---- strtod-like parsing: digits in a uint64, exponent applied with long double powers of ten ---- */

static double parse(const char *s)
{
    int neg = 0;
    if (*s == '-') {
        neg = 1;
        s++;
    }
    uint64_t mant = 0;
    int exp10 = 0, digits = 0;
    for (; *s >= '0' && *s <= '9'; s++) {
        if (digits < 19) {
            mant = mant * 10 + (uint64_t)(*s - '0');
            digits++;
        } else {
            exp10++;
        }
    }
    if (*s == '.') {
        for (s++; *s >= '0' && *s <= '9'; s++) {
            if (digits < 19) {
                mant = mant * 10 + (uint64_t)(*s - '0');
                digits++;
                exp10--;
            }
        }
    }
    if (*s == 'e' || *s == 'E') {
        int eneg = 0, e = 0;
        s++;
        if (*s == '-') {
            eneg = 1;
            s++;
        } else if (*s == '+') {
            s++;
        }
        for (; *s >= '0' && *s <= '9'; s++)
            e = e * 10 + (*s - '0');
        exp10 += eneg ? -e : e;
    }
    long double v = (long double)mant;
    long double p = 10;
    int e = exp10 < 0 ? -exp10 : exp10;
    long double f = 1;
    while (e) {
        if (e & 1)
            f *= p;
        p *= p;
        e >>= 1;
    }
    v = exp10 < 0 ? v / f : v * f;
    double d = (double)v;
    return neg ? -d : d;
}

/* ---- libm-style functions in C (double, as musl/fdlibm write them: reduction + polynomial) ---- */

static double my_floor(double x)
{
    return __builtin_floor(x);
}

static double my_exp(double x)
{
    /* exp(x) = 2^k * exp(r), r = x - k*ln2 (Cody-Waite), exp(r) by a degree-11 Taylor polynomial. */
    const double ln2hi = 6.93147180369123816490e-01, ln2lo = 1.90821492927058770002e-10;
    double kd = my_floor(x * 1.4426950408889634 + 0.5);
    int k = (int)kd;
    double r = (x - kd * ln2hi) - kd * ln2lo;
    double p = 1.0 / 39916800;
    for (int n = 10; n >= 1; n--)
        p = p * r + 1.0 / (double)(n == 1 ? 1 : n == 2 ? 2 : n == 3 ? 6 : n == 4 ? 24 : n == 5 ? 120 : n == 6 ? 720 : n == 7 ? 5040 : n == 8 ? 40320 : n == 9 ? 362880 : 3628800);
    p = p * r + 1.0;
    union { double d; uint64_t u; } s = { 1.0 };
    s.u += (uint64_t)(int64_t)k << 52;
    return p * s.d;
}

static double my_log(double x)
{
    /* log(x) = k*ln2 + 2 atanh((m-1)/(m+1)), m in [sqrt(1/2), sqrt(2)). */
    union { double d; uint64_t u; } v = { x };
    int k = (int)((v.u >> 52) & 0x7FF) - 1023;
    v.u = (v.u & 0x000FFFFFFFFFFFFFull) | 0x3FF0000000000000ull;
    double m = v.d;
    if (m > 1.4142135623730951) {
        m *= 0.5;
        k++;
    }
    double t = (m - 1) / (m + 1), t2 = t * t, s = 0;
    for (int n = 21; n >= 1; n -= 2)
        s = s * t2 + 1.0 / n;
    return k * 0.6931471805599453 + 2 * t * s;
}

static void my_sincos(double x, double *sn, double *cs)
{
    /* Reduce by pi/2 (two-part constant), then Taylor polynomials on [-pi/4, pi/4]. */
    double kd = my_floor(x * 0.6366197723675814 + 0.5);
    int q = (int)kd & 3;
    double r = (x - kd * 1.5707963267341256) - kd * 6.077100506506192e-11;
    double r2 = r * r;
    double s = r * (1 + r2 * (-1.0 / 6 + r2 * (1.0 / 120 + r2 * (-1.0 / 5040 + r2 * (1.0 / 362880 + r2 * (-1.0 / 39916800 + r2 / 6227020800.0))))));
    double c = 1 + r2 * (-0.5 + r2 * (1.0 / 24 + r2 * (-1.0 / 720 + r2 * (1.0 / 40320 + r2 * (-1.0 / 3628800 + r2 / 479001600.0)))));
    switch (q) {
    case 0: *sn = s; *cs = c; break;
    case 1: *sn = c; *cs = -s; break;
    case 2: *sn = -s; *cs = -c; break;
    default: *sn = -c; *cs = s; break;
    }
}

/* ---- n-body (the benchmarks game, 5 bodies) ---- */

#include "../../../bench/guests/kernels/nbody.h"

static void nbody(int steps)
{
    struct body b[NBODY_BODIES];
    for (int i = 0; i < NBODY_BODIES; i++)
        b[i] = nbody_jovian[i];
    nbody_offset_momentum(b);
    result("nbody.e0", nbody_energy(b));
    nbody_advance(b, steps, 0.01);
    result("nbody.e1", nbody_energy(b));
}

/* ---- spectral norm ---- */

static double eval_a(int i, int j)
{
    return 1.0 / ((i + j) * (i + j + 1) / 2 + i + 1);
}

static void times(const double *v, double *av, int n, int transpose)
{
    for (int i = 0; i < n; i++) {
        double s = 0;
        for (int j = 0; j < n; j++)
            s += (transpose ? eval_a(j, i) : eval_a(i, j)) * v[j];
        av[i] = s;
    }
}

static void spectral(int n)
{
    static double u[128], v[128], t[128];
    for (int i = 0; i < n; i++)
        u[i] = 1;
    for (int k = 0; k < 10; k++) {
        times(u, t, n, 0);
        times(t, v, n, 1);
        times(v, t, n, 0);
        times(t, u, n, 1);
    }
    double vbv = 0, vv = 0;
    for (int i = 0; i < n; i++) {
        vbv += u[i] * v[i];
        vv += v[i] * v[i];
    }
    result("spectral", __builtin_sqrt(vbv / vv));
}

/* ---- FFT (iterative radix 2) with C sin/cos; then the inverse, and the round-trip error ---- */

static void fft(double *re, double *im, int n, int inverse)
{
    for (int i = 1, j = 0; i < n; i++) {
        int bit = n >> 1;
        for (; j & bit; bit >>= 1)
            j ^= bit;
        j ^= bit;
        if (i < j) {
            double t = re[i]; re[i] = re[j]; re[j] = t;
            t = im[i]; im[i] = im[j]; im[j] = t;
        }
    }
    for (int len = 2; len <= n; len <<= 1) {
        double wr, wi;
        my_sincos((inverse ? 2 : -2) * 3.141592653589793 / len, &wi, &wr);
        for (int i = 0; i < n; i += len) {
            double cr = 1, ci = 0;
            for (int j = 0; j < len / 2; j++) {
                double ur = re[i + j], ui = im[i + j];
                double vr = re[i + j + len / 2] * cr - im[i + j + len / 2] * ci;
                double vi = re[i + j + len / 2] * ci + im[i + j + len / 2] * cr;
                re[i + j] = ur + vr;
                im[i + j] = ui + vi;
                re[i + j + len / 2] = ur - vr;
                im[i + j + len / 2] = ui - vi;
                double t = cr * wr - ci * wi;
                ci = cr * wi + ci * wr;
                cr = t;
            }
        }
    }
    if (inverse)
        for (int i = 0; i < n; i++) {
            re[i] /= n;
            im[i] /= n;
        }
}

static void fft_test(void)
{
    static double re[256], im[256], r0[256];
    uint64_t s = 88172645463325252ull;
    for (int i = 0; i < 256; i++) {
        s ^= s << 13; s ^= s >> 7; s ^= s << 17;
        re[i] = r0[i] = (double)(int64_t)(s >> 11) / 9007199254740992.0;
        im[i] = 0;
    }
    fft(re, im, 256, 0);
    double power = 0;
    for (int i = 0; i < 256; i++)
        power += re[i] * re[i] + im[i] * im[i];
    result("fft.power", power);
    result("fft.bin7", re[7]);
    fft(re, im, 256, 1);
    double err = 0;
    for (int i = 0; i < 256; i++) {
        double d = re[i] - r0[i];
        err += d < 0 ? -d : d;
    }
    result("fft.roundtrip", err);
}

/* ---- Mandelbrot ---- */

#include "../../../bench/guests/kernels/mandelbrot.h"

static void mandelbrot(int w, int h)
{
    uint64_t sum = 0;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            sum = sum * 31 + (uint64_t)mandelbrot_escape(2.0 * x / w - 1.5, 2.0 * y / h - 1.0, 50);
    put("mandelbrot ");
    put_hex(sum, 16);
    put("\n");
}

/* ---- float: a matrix product, square roots and conversions ---- */

static void floats(void)
{
    static float a[16][16], b[16][16], c[16][16];
    for (int i = 0; i < 16; i++)
        for (int j = 0; j < 16; j++) {
            a[i][j] = (float)(i * 16 + j) / 7.0f - 3.25f;
            b[i][j] = 1.0f / (float)(i + j + 1);
        }
    for (int i = 0; i < 16; i++)
        for (int j = 0; j < 16; j++) {
            float s = 0;
            for (int k = 0; k < 16; k++)
                s += a[i][k] * b[k][j];
            c[i][j] = s;
        }
    uint32_t h = 0;
    int isum = 0;
    for (int i = 0; i < 16; i++)
        for (int j = 0; j < 16; j++) {
            h = h * 33 ^ bits_f(c[i][j]) ^ bits_f(__builtin_sqrtf(c[i][j] < 0 ? -c[i][j] : c[i][j]));
            isum += (int)c[i][j] + (int)(c[i][j] * 1000.0f);
        }
    put("floats ");
    put_hex(h, 8);
    put(" ");
    put_u64((uint64_t)(int64_t)isum);
    put("\n");
    result("float->double", (double)c[3][5] * (double)c[7][11]);
}

/* ---- long double (x87): series, conversions, square roots, fmod by fprem ---- */

static long double fprem(long double x, long double y)
{
    long double r;
    unsigned short sw;
    do {
        __asm__ volatile("fprem; fnstsw %%ax" : "=t"(r), "=a"(sw) : "0"(x), "u"(y));
        x = r;
    } while (sw & 0x400);
    return r;
}

static void long_doubles(void)
{
    long double e = 1, term = 1;
    for (int k = 1; k < 25; k++) {
        term /= k;
        e += term;
    }
    result_ld("ld.e", e);
    long double pi = 0;
    for (int k = 0; k < 2000 * SCALE; k++)
        pi += (k & 1 ? -4.0L : 4.0L) / (2 * k + 1);
    result_ld("ld.leibniz", pi);
    result_ld("ld.sqrt2", __builtin_sqrtl(2.0L));
    result_ld("ld.sqrt3/7", __builtin_sqrtl(3.0L / 7.0L));
    long double big = 12345678901234567.0L * 1000.0L;
    result_ld("ld.big", big);
    int64_t i64 = (int64_t)(big / 3.0L);
    put("ld.i64 ");
    put_hex((uint64_t)i64, 16);
    put("\n");
    result("ld->double", (double)(e * pi));
    result_ld("ld.fprem", fprem(1e30L, 3.0L));
    result_ld("ld.fprem_pi", fprem(12345.6789L, 3.14159265358979323846L));
    long double tiny = 1e-4950L;
    result_ld("ld.tiny", tiny * 3.0L);
    result_ld("ld.cmp", (e > pi) ? e - pi : pi - e);
}

/* ---- rounding modes and precision control switched at run time ---- */

static double div_with_mxcsr(double a, double b, unsigned mode)
{
    unsigned old, cur;
    __asm__ volatile("stmxcsr %0" : "=m"(old));
    cur = (old & ~0x6000u) | (mode << 13);
    __asm__ volatile("ldmxcsr %0" : : "m"(cur));
    volatile double va = a, vb = b; /* no constant folding: divide at run time, in this mode */
    volatile double r = va / vb;
    double rr = r;
    __asm__ volatile("ldmxcsr %0" : : "m"(old));
    return rr;
}

static long double div_with_fcw(long double a, long double b, unsigned short pc, unsigned short rc)
{
    unsigned short old, cur;
    __asm__ volatile("fnstcw %0" : "=m"(old));
    cur = (unsigned short)((old & ~0x0F00u) | (pc << 8) | (rc << 10));
    __asm__ volatile("fldcw %0" : : "m"(cur));
    volatile long double va = a, vb = b;
    volatile long double r = va / vb;
    long double rr = r;
    __asm__ volatile("fldcw %0" : : "m"(old));
    return rr;
}

static void modes(void)
{
    static const char *names[4] = { "rn", "rd", "ru", "rz" };
    for (unsigned m = 0; m < 4; m++) {
        char name[16] = "mxcsr.";
        name[6] = names[m][0];
        name[7] = names[m][1];
        name[8] = 0;
        result(name, div_with_mxcsr(1.0, -3.0, m));
    }
    for (unsigned pc = 0; pc < 4; pc += (pc == 0 ? 2 : 1)) {
        for (unsigned rc = 0; rc < 4; rc++) {
            char name[16] = "fcw.pc?.??";
            name[6] = (char)('0' + pc);
            name[8] = names[rc][0];
            name[9] = names[rc][1];
            result_ld(name, div_with_fcw(2.0L, 3.0L, (unsigned short)pc, (unsigned short)rc));
        }
    }
    unsigned mx;
    __asm__ volatile("stmxcsr %0" : "=m"(mx));
    put("mxcsr.flags ");
    put_hex(mx & 0x3F, 2);
    put("\n");
}

/* ---- libm-style C functions, parsing and formatting ---- */

static void libm(void)
{
    static const char *inputs[] = { "0.5", "1", "2.718281828459045", "10", "-3.75", "1e-5", "123456.789", "6.02214076e23",
                                     "-1.5e-300", "3.14159265358979323846" };
    double acc = 0;
    for (int k = 0; k < 10; k++) {
        double x = parse(inputs[k]);
        char name[16] = "parse[?]";
        name[6] = (char)('0' + k);
        result(name, x);
        double sn, cs;
        my_sincos(x, &sn, &cs);
        acc += sn * 0.5 + cs * 0.25;
        if (x > 0) {
            acc += my_log(x);
            if (x < 700)
                acc += my_exp(-x);
        }
    }
    result("libm.acc", acc);
    double s = 0;
    for (int k = 1; k <= 200 * SCALE; k++)
        s += my_exp(-k / 50.0) * my_log(k + 0.5) + __builtin_floor(k * 0.37) - __builtin_ceil(k * 0.21) + __builtin_trunc(-k * 0.13);
    result("libm.sum", s);
    int64_t conv = 0;
    for (int k = -20; k <= 20; k++) {
        double d = k * 0.75;
        conv = conv * 3 + (int64_t)d + (int64_t)__builtin_lrint(d) + (int64_t)(float)d;
    }
    put("conv ");
    put_hex((uint64_t)conv, 16);
    put("\n");
    result("u64->double", (double)(uint64_t)0xFEDCBA9876543210ull);
    result("i64->double", (double)(int64_t)-0x123456789ABCDEFll);
    put("double->u64 ");
    put_hex((uint64_t)1.8e19, 16);
    put("\n");
}

static size_t run_all(void)
{
    out_len = 0;
    nbody(500 * SCALE);
    spectral(64);
    fft_test();
    mandelbrot(48, 24);
    floats();
    long_doubles();
    modes();
    libm();
    return out_len;
}

#ifdef PARAVIRT_GUEST
#include "../../../bench/guests/flat-guest.h"

/* The libm functions the compilers may call instead of inlining (all exact: their results do not depend on the
 * implementation). */
double floor(double x)
{
    union { double d; uint64_t u; } v = { x };
    int e = (int)((v.u >> 52) & 0x7FF) - 1023;
    if (e >= 52)
        return x;
    if (e < 0)
        return (v.u << 1) == 0 ? x : (v.u >> 63) ? -1.0 : 0.0;
    uint64_t m = 0x000FFFFFFFFFFFFFull >> e;
    if ((v.u & m) == 0)
        return x;
    if (v.u >> 63)
        v.u += m;
    v.u &= ~m;
    return v.d;
}

double ceil(double x)
{
    return -floor(-x);
}

double trunc(double x)
{
    return x < 0 ? -floor(-x) : floor(x);
}

long lrint(double x)
{
    long r;
    __asm__("cvtsd2si %1, %0" : "=r"(r) : "x"(x));
    return r;
}

double sqrt(double x)
{
    __asm__("sqrtsd %1, %0" : "=x"(x) : "x"(x));
    return x;
}

float sqrtf(float x)
{
    __asm__("sqrtss %1, %0" : "=x"(x) : "x"(x));
    return x;
}

long double sqrtl(long double x)
{
    __asm__("fsqrt" : "+t"(x));
    return x;
}

__attribute__((noreturn)) void guest_main(void *boot_info)
{
    (void)boot_info;
    size_t n = run_all();
    flat_guest_finish(out, n);
}
#else
#include <unistd.h>

int main(void)
{
    size_t n = run_all();
    return write(1, out, n) == (ssize_t)n ? 0 : 1;
}
#endif
