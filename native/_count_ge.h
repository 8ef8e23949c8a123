/* The inner loop of the numeric drift kernel (native/_histogram.pyx), in C so
 * that it can be compiled once per instruction set and picked when the module
 * loads: a wheel built for plain x86-64 (SSE2, four float lanes) then still
 * counts with AVX2 (eight) or AVX-512 (sixteen) where the CPU has them, about
 * 2x and 2.5x faster on 10 bins.  Everywhere else (other compilers, other
 * CPUs, libcs without ifunc such as musl) there is one portable version.
 *
 * Pure arithmetic on a contiguous block: the caller has checked every range.
 */
#ifndef MLRT_COUNT_GE_H
#define MLRT_COUNT_GE_H

#include <stddef.h>
#include <stdint.h>

#if defined(__x86_64__) && defined(__ELF__) && defined(__GLIBC__) && \
    ((defined(__clang__) && __clang_major__ >= 14) ||                 \
     (!defined(__clang__) && defined(__GNUC__) && __GNUC__ >= 8))
#define MLRT_SIMD_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#define MLRT_HAVE_SIMD_CLONES 1
#else
#define MLRT_SIMD_CLONES
#define MLRT_HAVE_SIMD_CLONES 0
#endif

/* The clone the loader picks on this CPU (the same order as the resolver's):
 * benchmarks record it beside their figures. */
static const char *mlrt_simd_target(void) {
#if MLRT_HAVE_SIMD_CLONES
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return "avx512f";
    if (__builtin_cpu_supports("avx2")) return "avx2";
#endif
    return "default";
}

/* g[0] = #(x == x), the values that are not NaN; g[1 + t] = #(x >= edges[t])
 * for t < k.  The accumulators are as wide as the data lanes (int32 for
 * float32, int64 for float64), so a compare mask adds without widening and
 * each loop vectorizes.  m <= 2**31 - 1 for the float32 version. */
#define MLRT_DEFINE_COUNT_GE(NAME, T, ACC)                                                 \
    MLRT_SIMD_CLONES                                                                       \
    static void NAME(const T *x, ptrdiff_t m, const T *edges, ptrdiff_t k, int64_t *g) {  \
        ptrdiff_t r, t;                                                                    \
        ACC s = 0;                                                                         \
        for (r = 0; r < m; r++) s += x[r] == x[r];                                         \
        g[0] = s;                                                                          \
        for (t = 0; t < k; t++) {                                                          \
            const T e = edges[t];                                                          \
            s = 0;                                                                         \
            for (r = 0; r < m; r++) s += x[r] >= e;                                        \
            g[1 + t] = s;                                                                  \
        }                                                                                  \
    }

/* One body for both widths (C has no fused types; a macro keeps them one). */
MLRT_DEFINE_COUNT_GE(mlrt_count_ge_f32, float, int32_t)
MLRT_DEFINE_COUNT_GE(mlrt_count_ge_f64, double, int64_t)

#endif
