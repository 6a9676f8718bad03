/* XNOR-popcount kernels for papers/xnor (plain C, loaded with ctypes; no torch headers).
 *
 * Encoding: one bit per value, bit 1 = -1, bit 0 = +1, 64 values per uint64 word, value j of a
 * row in bit (j % 64) of word (j / 64). Bits past the end of a row are 0 on both operands, so
 * they XOR to 0 and never count. For two +-1 rows a, b of n values:
 *     a . b = n - 2 * popcount(a XOR b)                     (XNOR-Net Sec. 3.2, Eq. (11))
 *
 * GEMM layout: A is row-major [M, Kw] (broadcast side); B is stored in "panels" of NB rows,
 * k-major inside a panel: Bp[panel][k][lane], so one SIMD load gives word k of NB rows. The
 * micro-kernel keeps an MR x NR tile of per-lane popcount accumulators in registers.
 * Three code paths, chosen at compile time: AVX-512 VPOPCNTDQ, AVX2 (Harley-Seal carry-save adders
 * over 8 words + nibble-LUT popcount with byte accumulators), scalar popcnt.
 *
 * Entry points: xnor_gemm (packed rows x packed rows -> int32 dot products), xnor_conv2d_f32 (a
 * whole XNOR convolution: sign bits of an NCHW float input, implicit GEMM over packed patches,
 * border correction and the alpha/K/bias epilogue, all in one call), xnor_linear_f32, and the
 * building blocks used by the exact-count API (xnor_pack_nchw, xnor_im2col_panels, xnor_gemm_panel).
 * OpenMP parallelises over tiles of output pixels; loops with little work stay on one thread.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

#if defined(__AVX512F__) && defined(__AVX512VPOPCNTDQ__)
#define XNOR_ISA "avx512-vpopcntdq"
#define NB 8
#define MR 4
#define NR 4
#elif defined(__AVX2__)
/* Harley-Seal micro-kernel, 1 row x 2 panels (8 columns): measured against 3x2 / 2x1 / 2x2 / 4x1 tiles,
 * the plain nibble-LUT kernel, a nibble-table GEMM (one vpshufb per 128 bit pairs) and scalar popcnt
 * mixed in; see the README ("Speed, honestly"). */
#define XNOR_ISA "avx2-harley-seal"
#define NB 4
#define MR 1
#define NR 2
#else
#define XNOR_ISA "scalar-popcnt"
#define NB 4
#define MR 2
#define NR 2
#endif

const char *xnor_isa(void) { return XNOR_ISA; }
int xnor_panel_rows(void) { return NB * NR; }
void xnor_set_num_threads(int n) {
#ifdef _OPENMP
    omp_set_num_threads(n);
#else
    (void)n;
#endif
}
int xnor_max_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

/* Loops with less work than this (in words) run on one thread: waking a second thread costs more. */
#define PAR_MIN_WORK (1 << 18)

static inline int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

/* Number of uint64 words xnor_gemm_panel expects in Bp for N rows of Kw words. */
int64_t xnor_panel_words(int64_t N, int64_t Kw) { return round_up(N, NB * NR) * Kw; }

/* Pack the signs of a row-major float32 [rows, cols] array into [rows, ceil(cols/64)] words. */
void xnor_pack_f32(const float *x, uint64_t *out, int64_t rows, int64_t cols) {
    const int64_t kw = (cols + 63) / 64;
#pragma omp parallel for schedule(static) if (rows * cols > PAR_MIN_WORK * 64)
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * cols;
        uint64_t *o = out + r * kw;
        for (int64_t w = 0; w < kw; w++) {
            uint64_t word = 0;
            const int64_t c0 = w * 64;
            const int64_t c1 = c0 + 64 < cols ? c0 + 64 : cols;
            for (int64_t c = c0; c < c1; c++) word |= (uint64_t)(xr[c] < 0.0f) << (c - c0);
            o[w] = word;
        }
    }
}

/* Row-major [N, Kw] -> panel layout (zero rows appended up to a multiple of NB*NR). */
void xnor_to_panels(const uint64_t *B, uint64_t *Bp, int64_t N, int64_t Kw) {
    const int64_t npan = round_up(N, NB * NR) / NB;
#pragma omp parallel for schedule(static) if (npan * NB * Kw > PAR_MIN_WORK)
    for (int64_t p = 0; p < npan; p++) {
        uint64_t *dst = Bp + p * Kw * NB;
        for (int64_t l = 0; l < NB; l++) {
            const int64_t n = p * NB + l;
            if (n < N) {
                const uint64_t *src = B + n * Kw;
                for (int64_t k = 0; k < Kw; k++) dst[k * NB + l] = src[k];
            } else {
                for (int64_t k = 0; k < Kw; k++) dst[k * NB + l] = 0;
            }
        }
    }
}

/* Optional fused epilogue of an XNOR convolution / linear layer (Eq. (11)):
 *   out[b][m][q] = ((float)(count - corr[m][q]) * alpha[m]) * K[b][q]  (+ bias[m])
 * in exactly the float operations, order and rounding of the simulated PyTorch layer
 * (compiled with -ffp-contract=off so that no multiply-add is fused). */
typedef struct {
    float *out;
    const int32_t *corr; /* [M, P] or NULL */
    const float *alpha;  /* [M] */
    const float *K;      /* [N] (= [batch, P]) */
    const float *bias;   /* [M] or NULL */
} xnor_epilogue;

/* Patch-row layout. With C channels per pixel (cw = ceil(C/64) words, channel c in bit c % 64):
 * - "per tap" (C >= 64 or 64 % C != 0): tap t = i*kw + j takes words t*cw .. t*cw + cw - 1;
 * - "dense" (C < 64 and 64 % C == 0, e.g. 16 or 32 channels): the taps' C bits are packed back to
 *   back, tap t at bit t*C, so a word holds 64/C taps and no tap straddles two words.
 * patch_words gives the row length in words; padded taps and unused bits are 0 in both operands. */
static inline int64_t dense_bits(int64_t C) { return (C < 64 && 64 % C == 0) ? C : 0; }
int64_t xnor_patch_words(int64_t C, int64_t kh, int64_t kw) {
    return dense_bits(C) ? (kh * kw * C + 63) / 64 : kh * kw * ((C + 63) / 64);
}

/* Column n of the packed patch matrix into lane l of the k-major panel dst (zero words outside). */
static inline void im2col_row(const uint64_t *x, uint64_t *dst, int64_t l, int64_t n, int64_t N, int64_t H,
                              int64_t W, int64_t C, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph,
                              int64_t pw, int64_t Ho, int64_t Wo, int64_t Kw) {
    const int64_t Cw = (C + 63) / 64, cb = dense_bits(C);
    if (n >= N || cb) {
        for (int64_t k = 0; k < Kw; k++) dst[k * NB + l] = 0;
        if (n >= N) return;
    }
    const int64_t b = n / (Ho * Wo), r = n % (Ho * Wo), oy = r / Wo, ox = r % Wo;
    int64_t k = 0;
    for (int64_t i = 0; i < kh; i++) {
        const int64_t iy = oy * sh + i - ph;
        for (int64_t j = 0; j < kw; j++) {
            const int64_t ix = ox * sw + j - pw;
            const int inside = !(iy < 0 || iy >= H || ix < 0 || ix >= W);
            if (cb) {
                if (inside) {
                    const int64_t pos = (i * kw + j) * cb;
                    dst[(pos >> 6) * NB + l] |= x[(b * H + iy) * W + ix] << (pos & 63);
                }
            } else if (!inside) {
                for (int64_t c = 0; c < Cw; c++, k++) dst[k * NB + l] = 0;
            } else {
                const uint64_t *src = x + ((b * H + iy) * W + ix) * Cw;
                for (int64_t c = 0; c < Cw; c++, k++) dst[k * NB + l] = src[c];
            }
        }
    }
}

/* im2col on packed bits, written straight into panel layout (layout: see xnor_patch_words).
 * x: [batch, H, W, ceil(C/64)] words (channels packed, NHWC). Row n = (b, oy, ox) of the patch
 * matrix holds the taps (i, j) of pixel (oy*s+i-p, ox*s+j-p); taps outside the image are zero
 * (= +1 values, removed afterwards by the caller's border correction). */
void xnor_im2col_panels(const uint64_t *x, uint64_t *Bp, int64_t batch, int64_t H, int64_t W,
                        int64_t C, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph,
                        int64_t pw, int64_t Ho, int64_t Wo) {
    const int64_t N = batch * Ho * Wo, Kw = xnor_patch_words(C, kh, kw);
    const int64_t npan = round_up(N, NB * NR) / NB;
#pragma omp parallel for schedule(static) if (npan * NB * Kw > PAR_MIN_WORK)
    for (int64_t p = 0; p < npan; p++)
        for (int64_t l = 0; l < NB; l++)
            im2col_row(x, Bp + p * Kw * NB, l, p * NB + l, N, H, W, C, kh, kw, sh, sw, ph, pw, Ho, Wo, Kw);
}

/* Packed patches of the tn = NB * NR output pixels n0 .. n0 + tn - 1 into NR k-major panels:
 * the same words as im2col_row, with the pixel coordinates stepped instead of divided per pixel
 * and no bounds checks for windows that lie inside the image. */
static void im2col_tile(const uint64_t *x, uint64_t *panel, int64_t n0, int64_t N, int64_t H, int64_t W,
                        int64_t C, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw,
                        int64_t Ho, int64_t Wo, int64_t Kw) {
    const int64_t Cw = (C + 63) / 64, cb = dense_bits(C);
    int64_t b = n0 / (Ho * Wo), r = n0 % (Ho * Wo), oy = r / Wo, ox = r % Wo;
    for (int64_t t = 0; t < NB * NR; t++) {
        uint64_t *dst = panel + (t / NB) * Kw * NB;
        const int64_t l = t % NB;
        if (n0 + t >= N) {
            for (int64_t k = 0; k < Kw; k++) dst[k * NB + l] = 0;
            continue;
        }
        const int64_t y0 = oy * sh - ph, x0 = ox * sw - pw;
        if (cb && y0 >= 0 && x0 >= 0 && y0 + kh <= H && x0 + kw <= W) {
            for (int64_t k = 0; k < Kw; k++) dst[k * NB + l] = 0;
            for (int64_t i = 0; i < kh; i++) {
                const uint64_t *src = x + (b * H + y0 + i) * W + x0; /* Cw = 1 word per pixel */
                for (int64_t j = 0; j < kw; j++) {
                    const int64_t pos = (i * kw + j) * cb;
                    dst[(pos >> 6) * NB + l] |= src[j] << (pos & 63);
                }
            }
        } else if (y0 >= 0 && x0 >= 0 && y0 + kh <= H && x0 + kw <= W) {
            int64_t k = 0;
            for (int64_t i = 0; i < kh; i++) {
                const uint64_t *src = x + ((b * H + y0 + i) * W + x0) * Cw; /* kw * Cw consecutive words */
                for (int64_t j = 0; j < kw * Cw; j++, k++) dst[k * NB + l] = src[j];
            }
        } else {
            im2col_row(x, dst, l, n0 + t, N, H, W, C, kh, kw, sh, sw, ph, pw, Ho, Wo, Kw);
        }
        if (++ox == Wo) {
            ox = 0;
            if (++oy == Ho) { oy = 0; b++; }
        }
    }
}

/* C[m, n] = kbits - 2 * popcount(A[m] XOR B[n]) for m < M, n < N (stored as described below). */
static void micro_tile(const uint64_t *A, const uint64_t *Bp, int32_t *C, const xnor_epilogue *ep,
                       int64_t M, int64_t N, int64_t Kw, int64_t kbits, int64_t P, int64_t m0, int64_t n0) {
    const uint64_t *arow[MR];
    for (int i = 0; i < MR; i++) arow[i] = A + (m0 + i < M ? m0 + i : M - 1) * Kw;
    const uint64_t *bp = Bp + (n0 / NB) * Kw * NB; /* NR consecutive panels */
    int64_t cnt[MR][NR * NB];
#if defined(__AVX512F__) && defined(__AVX512VPOPCNTDQ__)
    __m512i acc[MR][NR];
#pragma GCC unroll 8
    for (int i = 0; i < MR; i++)
#pragma GCC unroll 8
        for (int j = 0; j < NR; j++) acc[i][j] = _mm512_setzero_si512();
    for (int64_t k = 0; k < Kw; k++) {
        __m512i b[NR];
#pragma GCC unroll 8
        for (int j = 0; j < NR; j++) b[j] = _mm512_loadu_si512((const void *)(bp + (j * Kw + k) * NB));
#pragma GCC unroll 8
        for (int i = 0; i < MR; i++) {
            const __m512i a = _mm512_set1_epi64((long long)arow[i][k]);
#pragma GCC unroll 8
            for (int j = 0; j < NR; j++)
                acc[i][j] = _mm512_add_epi64(acc[i][j], _mm512_popcnt_epi64(_mm512_xor_si512(a, b[j])));
        }
    }
    if (P % NB == 0 && N - n0 >= NR * NB) {
        /* fast store: each vector of NB columns lies inside one image (P % NB == 0) */
        const __m512i kb = _mm512_set1_epi64((long long)kbits);
        for (int i = 0; i < MR && m0 + i < M; i++) {
            const int64_t m = m0 + i;
            for (int j = 0; j < NR; j++) {
                const int64_t n = n0 + j * NB, b = n / P, q = n % P;
                /* count = kbits - 2 * popcount, as int32 */
                const __m256i c32 = _mm512_cvtepi64_epi32(_mm512_sub_epi64(kb, _mm512_slli_epi64(acc[i][j], 1)));
                if (ep) {
                    __m256i c = c32;
                    if (ep->corr) c = _mm256_sub_epi32(c, _mm256_loadu_si256((const __m256i *)(ep->corr + m * P + q)));
                    __m256 y = _mm256_mul_ps(_mm256_cvtepi32_ps(c), _mm256_set1_ps(ep->alpha[m]));
                    y = _mm256_mul_ps(y, _mm256_loadu_ps(ep->K + n));
                    if (ep->bias) y = _mm256_add_ps(y, _mm256_set1_ps(ep->bias[m]));
                    _mm256_storeu_ps(ep->out + (b * M + m) * P + q, y);
                } else {
                    _mm256_storeu_si256((__m256i *)(C + (b * M + m) * P + q), c32);
                }
            }
        }
        return;
    }
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++) _mm512_storeu_si512((void *)(&cnt[i][j * NB]), acc[i][j]);
#elif defined(__AVX2__)
    /* Harley-Seal (carry-save) accumulation: per accumulator, a tree of 7 carry-save adders (CSA: 5
     * logic ops) turns 8 XOR vectors into one vector of weight 8 plus the carried ones/twos/fours, and
     * only that vector goes through the nibble-LUT popcount (2 vpshufb), into byte counters flushed
     * with vpsadbw every 31 blocks. The plain LUT kernel spends 2 vpshufb + 1 shift per vector, and
     * this core issues one 256-bit vpshufb per cycle: that port, not the logic ops, was the limit. */
    const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
                                         0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
    const __m256i low = _mm256_set1_epi8(0x0f), zero = _mm256_setzero_si256();
#define POPB(v) _mm256_add_epi8(_mm256_shuffle_epi8(lut, _mm256_and_si256((v), low)), \
                                _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16((v), 4), low)))
#define CSA(h, l, a, b, c) do { const __m256i u_ = _mm256_xor_si256((a), (b)); \
        (h) = _mm256_or_si256(_mm256_and_si256((a), (b)), _mm256_and_si256(u_, (c))); \
        (l) = _mm256_xor_si256(u_, (c)); } while (0)
#define DW(i, j, t) _mm256_xor_si256(_mm256_set1_epi64x((long long)arow[i][k + (t)]), \
                                     _mm256_loadu_si256((const __m256i *)(bp + ((j) * Kw + k + (t)) * NB)))
    __m256i ones[MR][NR], twos[MR][NR], fours[MR][NR], e8[MR][NR], acc[MR][NR];
#pragma GCC unroll 8
    for (int i = 0; i < MR; i++)
#pragma GCC unroll 8
        for (int j = 0; j < NR; j++) ones[i][j] = twos[i][j] = fours[i][j] = e8[i][j] = acc[i][j] = zero;
    int64_t k = 0;
    int blocks = 0;
    for (; k + 8 <= Kw; k += 8) {
#pragma GCC unroll 8
        for (int i = 0; i < MR; i++)
#pragma GCC unroll 8
            for (int j = 0; j < NR; j++) {
                __m256i ta, tb, fa, fb, e;
                CSA(ta, ones[i][j], ones[i][j], DW(i, j, 0), DW(i, j, 1));
                CSA(tb, ones[i][j], ones[i][j], DW(i, j, 2), DW(i, j, 3));
                CSA(fa, twos[i][j], twos[i][j], ta, tb);
                CSA(ta, ones[i][j], ones[i][j], DW(i, j, 4), DW(i, j, 5));
                CSA(tb, ones[i][j], ones[i][j], DW(i, j, 6), DW(i, j, 7));
                CSA(fb, twos[i][j], twos[i][j], ta, tb);
                CSA(e, fours[i][j], fours[i][j], fa, fb);
                e8[i][j] = _mm256_add_epi8(e8[i][j], POPB(e));
            }
        if (++blocks == 31) { /* byte counters hold at most 8 per block */
            blocks = 0;
#pragma GCC unroll 8
            for (int i = 0; i < MR; i++)
#pragma GCC unroll 8
                for (int j = 0; j < NR; j++) {
                    acc[i][j] = _mm256_add_epi64(acc[i][j], _mm256_sad_epu8(e8[i][j], zero));
                    e8[i][j] = zero;
                }
        }
    }
#pragma GCC unroll 8
    for (int i = 0; i < MR; i++)
#pragma GCC unroll 8
        for (int j = 0; j < NR; j++) {
            /* weights: eights 8, fours 4, twos 2, ones 1 (each byte sum <= 8 + 16 + 32 + 56) */
            __m256i fin = _mm256_add_epi8(POPB(ones[i][j]), _mm256_slli_epi16(POPB(twos[i][j]), 1));
            fin = _mm256_add_epi8(fin, _mm256_slli_epi16(POPB(fours[i][j]), 2));
            for (int64_t kk = k; kk < Kw; kk++) { /* the last Kw % 8 words: <= 7 * 8 more per byte */
                const __m256i v = _mm256_xor_si256(_mm256_set1_epi64x((long long)arow[i][kk]),
                                                   _mm256_loadu_si256((const __m256i *)(bp + (j * Kw + kk) * NB)));
                fin = _mm256_add_epi8(fin, POPB(v));
            }
            acc[i][j] = _mm256_add_epi64(_mm256_slli_epi64(_mm256_add_epi64(acc[i][j], _mm256_sad_epu8(e8[i][j], zero)), 3),
                                         _mm256_sad_epu8(fin, zero));
        }
#undef POPB
#undef CSA
#undef DW
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++) _mm256_storeu_si256((__m256i *)(&cnt[i][j * NB]), acc[i][j]);
#else
    for (int i = 0; i < MR; i++)
        for (int l = 0; l < NR * NB; l++) cnt[i][l] = 0;
    for (int64_t k = 0; k < Kw; k++)
        for (int i = 0; i < MR; i++) {
            const uint64_t a = arow[i][k];
            for (int j = 0; j < NR; j++)
                for (int l = 0; l < NB; l++)
                    cnt[i][j * NB + l] += __builtin_popcountll(a ^ bp[(j * Kw + k) * NB + l]);
        }
#endif
    /* column n = (image b, pixel q) with P pixels per image goes to C[b][m][q] (NCHW for convs) */
    const int64_t nn = N - n0 < NR * NB ? N - n0 : NR * NB;
    for (int i = 0; i < MR && m0 + i < M; i++) {
        const int64_t m = m0 + i;
        int64_t b = n0 / P, q = n0 % P;
        if (ep) {
            const float alpha = ep->alpha[m];
            for (int64_t l = 0; l < nn; l++) {
                const int32_t c = (int32_t)(kbits - 2 * cnt[i][l]) - (ep->corr ? ep->corr[m * P + q] : 0);
                float y = (float)c * alpha;
                y = y * ep->K[n0 + l];
                if (ep->bias) y = y + ep->bias[m];
                ep->out[(b * M + m) * P + q] = y;
                if (++q == P) { q = 0; b++; }
            }
        } else {
            for (int64_t l = 0; l < nn; l++) {
                C[(b * M + m) * P + q] = (int32_t)(kbits - 2 * cnt[i][l]);
                if (++q == P) { q = 0; b++; }
            }
        }
    }
}

/* Binary GEMM on a pre-panelled B (see xnor_to_panels / xnor_im2col_panels). Column n of the
 * result is stored at C[(n / P) * M * P + m * P + n % P]: P = N gives a row-major [M, N] matrix,
 * P = pixels per image gives NCHW output of a convolution whose columns are (image, pixel). */
static void gemm_panel_ep(const uint64_t *A, const uint64_t *Bp, int32_t *C, const xnor_epilogue *ep,
                          int64_t M, int64_t N, int64_t Kw, int64_t kbits, int64_t P) {
    const int64_t tn = NB * NR;
    const int64_t ntiles_n = round_up(N, tn) / tn, ntiles_m = round_up(M, MR) / MR;
    /* cache blocking: a block of n-tiles (their panels stay in L1/L2) against all of A */
    const int64_t panel_bytes = Kw * tn * 8;
    int64_t nblk = (32 * 1024) / (panel_bytes > 0 ? panel_bytes : 1);
    if (nblk < 1) nblk = 1;
    const int64_t nblocks = (ntiles_n + nblk - 1) / nblk;
    const int64_t mblk = 64; /* rows of A per block: 64 * Kw words */
    const int64_t mblocks = (ntiles_m + mblk - 1) / mblk;
#pragma omp parallel for collapse(2) schedule(dynamic) if (M * N * Kw > PAR_MIN_WORK * 64)
    for (int64_t bn = 0; bn < nblocks; bn++)
        for (int64_t bm = 0; bm < mblocks; bm++) {
            const int64_t tn1 = (bn + 1) * nblk < ntiles_n ? (bn + 1) * nblk : ntiles_n;
            const int64_t tm1 = (bm + 1) * mblk < ntiles_m ? (bm + 1) * mblk : ntiles_m;
            for (int64_t tm = bm * mblk; tm < tm1; tm++)
                for (int64_t t = bn * nblk; t < tn1; t++)
                    micro_tile(A, Bp, C, ep, M, N, Kw, kbits, P, tm * MR, t * tn);
        }
}

void xnor_gemm_panel(const uint64_t *A, const uint64_t *Bp, int32_t *C, int64_t M, int64_t N,
                     int64_t Kw, int64_t kbits, int64_t P) {
    gemm_panel_ep(A, Bp, C, NULL, M, N, Kw, kbits, P);
}

/* Sign bits of an NCHW float tensor, channels packed per pixel: out [batch, H*W, Cw]. */
void xnor_pack_nchw(const float *x, uint64_t *out, int64_t batch, int64_t C, int64_t HW) {
    const int64_t cw = (C + 63) / 64;
#pragma omp parallel for schedule(static) if (batch * C * HW > PAR_MIN_WORK * 64)
    for (int64_t b = 0; b < batch; b++) {
        uint64_t *o = out + b * HW * cw;
        memset(o, 0, (size_t)(HW * cw) * sizeof(uint64_t));
        for (int64_t c = 0; c < C; c++) {
            const float *xc = x + (b * C + c) * HW;
            const int64_t w = c / 64, sh = c % 64;
            for (int64_t q = 0; q < HW; q++) o[q * cw + w] |= (uint64_t)(xc[q] < 0.0f) << sh;
        }
    }
}

/* Whole XNOR convolution (Eq. (11)) on an NCHW float input: sign bits, packed im2col, XNOR-popcount
 * GEMM, border correction and the alpha/K/bias epilogue. out: float [batch, M, Ho, Wo].
 * Returns 0, or -1 if out of memory. */
int xnor_conv2d_f32(const float *x, const uint64_t *w_words, const int32_t *corr, const float *alpha,
                    const float *K, const float *bias, float *out, int64_t batch, int64_t C, int64_t H,
                    int64_t W, int64_t M, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph,
                    int64_t pw, int64_t Ho, int64_t Wo) {
    const int64_t cw = (C + 63) / 64, N = batch * Ho * Wo, Kw = xnor_patch_words(C, kh, kw);
    uint64_t *xb = (uint64_t *)malloc((size_t)(batch * H * W * cw) * sizeof(uint64_t));
    if (!xb) return -1;
    xnor_pack_nchw(x, xb, batch, C, H * W);
    const xnor_epilogue ep = {out, corr, alpha, K, bias};
    const int64_t tn = NB * NR, ntiles = round_up(N, tn) / tn, kbits = kh * kw * C;
    int failed = 0;
    /* implicit GEMM: each thread builds the packed patches of one tile of tn output pixels in a small
     * (L1-sized) panel and runs every output channel against it; no im2col matrix in memory */
#pragma omp parallel if (M * N * Kw > PAR_MIN_WORK * 64)
    {
        uint64_t *panel = (uint64_t *)aligned_alloc(64, (size_t)round_up(Kw * tn * 8, 64));
        if (!panel) {
#pragma omp atomic write
            failed = 1;
        } else {
#pragma omp for schedule(dynamic, 4)
            for (int64_t t = 0; t < ntiles; t++) {
                const int64_t n0 = t * tn;
                im2col_tile(xb, panel, n0, N, H, W, C, kh, kw, sh, sw, ph, pw, Ho, Wo, Kw);
                /* micro_tile expects Bp + (n0 / NB) * Kw * NB to be this tile's panels */
                const uint64_t *base = panel - (n0 / NB) * Kw * NB;
                for (int64_t m0 = 0; m0 < M; m0 += MR)
                    micro_tile(w_words, base, NULL, &ep, M, N, Kw, kbits, Ho * Wo, m0, n0);
            }
            free(panel);
        }
    }
    free(xb);
    return failed ? -1 : 0;
}

/* XNOR linear layer (Eq. (7)-(10)): out [batch, M] = ((count * alpha[m]) * beta[b]) + bias[m], with
 * x float [batch, n] and w_words [M, ceil(n/64)]. Returns 0, or -1 if out of memory. */
int xnor_linear_f32(const float *x, const uint64_t *w_words, const float *alpha, const float *beta,
                    const float *bias, float *out, int64_t batch, int64_t n, int64_t M) {
    const int64_t kw = (n + 63) / 64;
    uint64_t *xb = (uint64_t *)malloc((size_t)(batch * kw) * sizeof(uint64_t));
    uint64_t *Bp = (uint64_t *)aligned_alloc(64, (size_t)round_up(xnor_panel_words(batch, kw) * 8, 64));
    if (!xb || !Bp) { free(xb); free(Bp); return -1; }
    xnor_pack_f32(x, xb, batch, n);
    xnor_to_panels(xb, Bp, batch, kw);
    /* rows m = output units (A = W), columns = samples with P = 1 pixel each: out[b][m] */
    const xnor_epilogue ep = {out, NULL, alpha, beta, bias};
    gemm_panel_ep(w_words, Bp, NULL, &ep, M, batch, kw, n, 1);
    free(xb);
    free(Bp);
    return 0;
}

/* Binary GEMM on row-major A [M, Kw] and B [N, Kw]; C [M, N]. Returns 0, or -1 if out of memory. */
int xnor_gemm(const uint64_t *A, const uint64_t *B, int32_t *C, int64_t M, int64_t N, int64_t Kw,
              int64_t kbits) {
    uint64_t *Bp = (uint64_t *)aligned_alloc(64, (size_t)round_up(xnor_panel_words(N, Kw) * 8, 64));
    if (!Bp) return -1;
    xnor_to_panels(B, Bp, N, Kw);
    xnor_gemm_panel(A, Bp, C, M, N, Kw, kbits, N);
    free(Bp);
    return 0;
}
