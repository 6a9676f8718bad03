/* Our int4 weight-only GEMM of AWQ's group-quantized linear layers, for batch 1 and small batches (fp32 activations).

   y[m, n] = sum_k x'[m, k] W[n, k] + b[n],  W[n, k] = Delta[n, g] (q[n, k] - z[n, g]),  g = k / group_size,
   x' = x * (1/s) (AWQ's Eq. (2): the input is divided by the per-channel scale s).
   Per group the scale and the zero point are applied once:
       sum_{k in g} Delta (q_k - z) x'_k = Delta (sum_{k in g} q_k x'_k) - (Delta z) (sum_{k in g} x'_k).

   Weight layout (papers/awq/int4.py: pack_codes): each row of K codes is cut into blocks of 64; block b is 8
   uint32 words, and nibble j (bits 4j .. 4j+3) of word i holds the code of input channel 64 b + 8 j + i.
   So one 256-bit load gives 8 lanes of 8 nibbles, and for j < 7 an AND with 0xF << 4j leaves in lane i the
   integer q * 16^j of channel 64 b + 8 j + i (for j = 7, where q * 16^7 would not fit a signed int32, a
   shift right by 28 leaves q). Converted to float this is exact (4 significant bits), and it is multiplied
   by the prepared activation x'_k * 16^-j (x'_k for j = 7), a power-of-two scaling that is exact too: each
   product equals q_k x'_k bit for bit, with one AND + one int->float conversion + one FMA per 8 weights.

   Memory traffic per 4096 x 4096 layer: 8 MiB of codes + 2 x 64 KiB of Delta and Delta z (fp32 weights: 64 MiB).
   Threads: 1 by default; with threads > 1 OpenMP splits the output rows. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#ifdef __AVX2__
#include <immintrin.h>
#endif

const char *awq_isa(void) {
#if defined(__AVX2__) && defined(__FMA__)
#if defined(__AVX512F__)
    return "avx2-fma (built with AVX-512 enabled)";
#else
    return "avx2-fma";
#endif
#else
    return "scalar";
#endif
}

/* x' = x * inv_s * 16^-j(k) (j = 7: x * inv_s) for the kernel, and the per-group sums of x * inv_s (unscaled). */
static void prepare(const float *x, int64_t M, int64_t K, int64_t G, int64_t gs, const float *inv_s, float *xs,
                    float *xg) {
    static const float pow16[8] = {1.0f, 0.0625f, 0.00390625f, 2.44140625e-4f, 1.52587890625e-5f,
                                   9.5367431640625e-7f, 5.9604644775390625e-8f, 1.0f};
    for (int64_t m = 0; m < M; m++) {
        const float *xr = x + m * K;
        float *xsr = xs + m * K;
        for (int64_t g = 0; g < G; g++) {
            float sum = 0.0f;
            for (int64_t k = g * gs; k < (g + 1) * gs; k++) {
                float v = inv_s ? xr[k] * inv_s[k] : xr[k];
                sum += v;
                xsr[k] = v * pow16[(k & 63) >> 3];
            }
            xg[m * G + g] = sum;
        }
    }
}

#if defined(__AVX2__) && defined(__FMA__)
/* keep a loaded vector in a register: each code word is used 8 times, each activation vector R times */
#define REG(v) __asm__("" : "+x"(v))
static inline float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* R output rows x C activation rows: one pass over the R rows' codes, each unpacked once and used C times;
   P accumulators per (row, activation row) take alternate j, so that P R C >= 8 FMA chains hide the FMA latency. */
static inline __attribute__((always_inline)) void tile(const int R, const int C, const int P, const uint32_t *w,
                                                       int64_t K,
                                                       int64_t G, int64_t gs, const float *xs, const float *xg,
                                                       const float *delta, const float *dz, const float *bias,
                                                       int64_t n0, int64_t m0, int64_t N, float *y) {
    const int64_t kw = K / 8, bpg = gs / 64;
    __m256 tot[4][4];
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) tot[r][c] = _mm256_setzero_ps();
    const __m256i mask0 = _mm256_set1_epi32(0xF);
    for (int64_t g = 0; g < G; g++) {
        __m256 acc[4][4][4];
        for (int p = 0; p < P; p++)
            for (int r = 0; r < R; r++)
                for (int c = 0; c < C; c++) acc[p][r][c] = _mm256_setzero_ps();
        for (int64_t b = g * bpg; b < (g + 1) * bpg; b++) {
            __m256i v[4];
            /* Prefetch the next tile's codes (the R rows after these, contiguous) while this tile computes: R * 32
               bytes per block, so they are in cache when it starts. Without it each tile waits on memory, since
               the hardware prefetcher does not follow R streams of K / 2 bytes each far enough ahead. */
            if (n0 + 2 * R <= N) {
                const char *next = (const char *)(w + (n0 + R) * kw) + b * R * 32;
                for (int l = 0; l < R * 32; l += 64) _mm_prefetch(next + l, _MM_HINT_T0);
            }
            for (int r = 0; r < R; r++) {
                v[r] = _mm256_loadu_si256((const __m256i *)(w + (n0 + r) * kw + b * 8));
                REG(v[r]);
            }
#pragma GCC unroll 8
            for (int j = 0; j < 8; j++) {
                __m256 f[4];
                for (int r = 0; r < R; r++) {
                    __m256i q = j == 7 ? _mm256_srli_epi32(v[r], 28)
                                       : _mm256_and_si256(v[r], _mm256_slli_epi32(mask0, 4 * j));
                    f[r] = _mm256_cvtepi32_ps(q); /* q * 16^j (j = 7: q), exact */
                }
                for (int c = 0; c < C; c++) {
                    __m256 xv = _mm256_loadu_ps(xs + (m0 + c) * K + b * 64 + j * 8); /* x' 16^-j */
                    REG(xv);
                    for (int r = 0; r < R; r++) acc[j % P][r][c] = _mm256_fmadd_ps(f[r], xv, acc[j % P][r][c]);
                }
            }
        }
        for (int r = 0; r < R; r++) {
            const __m256 d = _mm256_set1_ps(delta[(n0 + r) * G + g]); /* Delta once per group */
            for (int c = 0; c < C; c++) {
                __m256 a = acc[0][r][c];
                for (int p = 1; p < P; p++) a = _mm256_add_ps(a, acc[p][r][c]);
                tot[r][c] = _mm256_fmadd_ps(d, a, tot[r][c]);
            }
        }
    }
    for (int r = 0; r < R; r++) {
        const float *dzr = dz + (n0 + r) * G;
        for (int c = 0; c < C; c++) {
            const float *xgr = xg + (m0 + c) * G;
            float corr = 0.0f;
            for (int64_t g = 0; g < G; g++) corr += dzr[g] * xgr[g]; /* (Delta z) sum x' per group */
            y[(m0 + c) * N + n0 + r] = hsum256(tot[r][c]) - corr + (bias ? bias[n0 + r] : 0.0f);
        }
    }
}

#define TILE(R, C, P)                                                                                            \
    static void tile_##R##x##C(const uint32_t *w, int64_t K, int64_t G, int64_t gs, const float *xs,            \
                               const float *xg, const float *delta, const float *dz, const float *bias,         \
                               int64_t n0, int64_t m0, int64_t N, float *y) {                                   \
        tile(R, C, P, w, K, G, gs, xs, xg, delta, dz, bias, n0, m0, N, y);                                       \
    }
TILE(4, 1, 1)
TILE(1, 1, 4)
TILE(4, 2, 1)
TILE(1, 2, 4)
TILE(2, 3, 2)
TILE(1, 3, 2)
TILE(2, 4, 1)
TILE(1, 4, 2)
typedef void (*tile_fn)(const uint32_t *, int64_t, int64_t, int64_t, const float *, const float *, const float *,
                        const float *, const float *, int64_t, int64_t, int64_t, float *);
#else
/* Portable path: the same per-group arithmetic, one weight at a time. */
static void tile_any(int R, int C, const uint32_t *w, int64_t K, int64_t G, int64_t gs, const float *xs,
                     const float *xg, const float *delta, const float *dz, const float *bias, int64_t n0, int64_t m0,
                     int64_t N, float *y) {
    const int64_t kw = K / 8;
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) {
            const uint32_t *wr = w + (n0 + r) * kw;
            const float *xr = xs + (m0 + c) * K;
            float tot = 0.0f, corr = 0.0f;
            for (int64_t g = 0; g < G; g++) {
                float acc = 0.0f;
                for (int64_t k = g * gs; k < (g + 1) * gs; k++) {
                    int64_t b = k >> 6, j = (k & 63) >> 3, i = k & 7;
                    uint32_t q = (wr[b * 8 + i] >> (4 * j)) & 0xFu;
                    acc += (float)(j == 7 ? q : q << (4 * j)) * xr[k];
                }
                tot += delta[(n0 + r) * G + g] * acc;
                corr += dz[(n0 + r) * G + g] * xg[(m0 + c) * G + g];
            }
            y[(m0 + c) * N + n0 + r] = tot - corr + (bias ? bias[n0 + r] : 0.0f);
        }
}
#endif

/* y [M, N] = (x [M, K] * inv_s) W^T + bias. w: [N, K / 8] uint32 (layout above); delta, dz: [N, G] fp32 with
   dz = Delta z; inv_s [K] and bias [N] may be NULL. K must be a multiple of gs, gs a multiple of 64.
   Returns 0, or -1 on bad sizes, -2 when out of memory. */
int awq_int4_linear(const float *x, int64_t M, int64_t K, const uint32_t *w, int64_t N, int64_t gs,
                    const float *delta, const float *dz, const float *inv_s, const float *bias, float *y,
                    int threads) {
    if (M < 1 || N < 1 || gs < 64 || gs % 64 || K % gs) return -1;
    const int64_t G = K / gs;
    float *xs = (float *)malloc(sizeof(float) * (size_t)(M * K + M * G));
    if (!xs) return -2;
    float *xg = xs + M * K;
    prepare(x, M, K, G, gs, inv_s, xs, xg);
    if (threads < 1) threads = 1;
    for (int64_t m0 = 0; m0 < M;) {
        const int64_t C = M - m0 >= 4 ? 4 : M - m0;
#if defined(__AVX2__) && defined(__FMA__)
        const int R = C == 1 || C == 2 ? 4 : 2;
        tile_fn big = C == 1 ? tile_4x1 : C == 2 ? tile_4x2 : C == 3 ? tile_2x3 : tile_2x4;
        tile_fn one = C == 1 ? tile_1x1 : C == 2 ? tile_1x2 : C == 3 ? tile_1x3 : tile_1x4;
#else
        const int R = 1;
#endif
        const int64_t n_tiles = N / R, n_full = n_tiles * R;
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
        for (int64_t t = 0; t < n_tiles + (N - n_full); t++) {
#if defined(__AVX2__) && defined(__FMA__)
            if (t < n_tiles)
                big(w, K, G, gs, xs, xg, delta, dz, bias, t * R, m0, N, y);
            else
                one(w, K, G, gs, xs, xg, delta, dz, bias, n_full + (t - n_tiles), m0, N, y);
#else
            tile_any(1, (int)C, w, K, G, gs, xs, xg, delta, dz, bias, t, m0, N, y);
#endif
        }
        m0 += C;
    }
    free(xs);
    return 0;
}
