/* Whole-network binary inference engine for papers/xnor (plain C, loaded with ctypes; see engine.py, ENGINE.md).
 *
 * It reuses the XNOR-popcount micro-kernel and the packed im2col of xnor_kernel.c (included below, so
 * there is one copy of that code) and adds what a whole network needs so that activations stay packed
 * between binary layers:
 *   eng_pack   float NCHW -> packed sign bits [B, H, W, ceil(C/64)] in one pass, with the ops that stand
 *              between two binary layers applied on the way (max-pool, BatchNorm, ReLU, BatchNorm) and the
 *              XNOR scaling factor of the consumer (the map K of Fig. 2 or the beta of Eq. (10)) computed
 *              from the same values in PyTorch's own order of float additions;
 *   eng_bconv  binary convolution / fully connected layer on packed input (implicit GEMM over packed
 *              patches, zero-padding correction), with one of two epilogues: "float" (Eq. (11):
 *              ((count * alpha) * K) (+ bias) (+ residual), the exact float ops of the simulated layer) or
 *              "threshold" (BatchNorm + sign folded into one integer comparison per channel; writes packed
 *              bits);
 *   eng_bpool  max-pool on packed bits (OR / AND of the window, by the channel's threshold direction);
 *   eng_run    a list of the above, run back to back without returning to Python.
 * Every float operation is written out (no -ffast-math; -ffp-contract=off): where PyTorch's BatchNorm
 * uses a fused multiply-add the engine calls fmaf, and nowhere else.
 */
#include <math.h>
#include "xnor_kernel.c"

/* ------------------------------------------------------------------------------------------------ */
/* PyTorch's float summation orders (ATen SumKernel.cpp, "cascade sum"), per output element.          */
/* ------------------------------------------------------------------------------------------------ */

/* ATen multi_row_sum for one lane: sum of v[i * stride], i < size, with 4 levels of partial sums of
 * 2^level_power rows each (level_power = max(4, ceil(log2(size)) / 4)). Absolute values if absval. */
static float cascade_sum(const float *v, int64_t stride, int64_t size, int absval) {
    int64_t lg = 0;
    while (((int64_t)1 << lg) < size) lg++;
    const int64_t level_power = lg / 4 > 4 ? lg / 4 : 4;
    const int64_t level_step = (int64_t)1 << level_power, level_mask = level_step - 1;
    float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    int64_t i = 0;
    for (; i + level_step <= size;) {
        for (int64_t j = 0; j < level_step; ++j, ++i) {
            const float x = v[i * stride];
            acc[0] += absval ? fabsf(x) : x;
        }
        for (int j = 1; j < 4; ++j) {
            acc[j] += acc[j - 1];
            acc[j - 1] = 0.0f;
            if ((i & (level_mask << (j * level_power))) != 0) break;
        }
    }
    for (; i < size; ++i) {
        const float x = v[i * stride];
        acc[0] += absval ? fabsf(x) : x;
    }
    for (int j = 1; j < 4; ++j) acc[0] += acc[j];
    return acc[0];
}

/* ATen row_sum for one lane: the rows split into 4 interleaved cascade sums (ILP), the leftover rows
 * added to the first, then the four combined in order. */
static float ilp_sum(const float *v, int64_t stride, int64_t size, int absval) {
    const int64_t n4 = size / 4;
    float p[4];
    for (int k = 0; k < 4; k++) p[k] = n4 > 0 ? cascade_sum(v + k * stride, 4 * stride, n4, absval) : 0.0f;
    for (int64_t i = n4 * 4; i < size; i++) {
        const float x = v[i * stride];
        p[0] += absval ? fabsf(x) : x;
    }
    for (int k = 1; k < 4; k++) p[0] += p[k];
    return p[0];
}

/* The same two sums for CB adjacent columns at once (column l at v + l); each column in exactly the order
 * of cascade_sum / ilp_sum, so the compiler may run the columns in SIMD lanes. */
#define CB 8
static void cascade_cols(const float *v, int64_t stride, int64_t size, float *out) {
    int64_t lg = 0;
    while (((int64_t)1 << lg) < size) lg++;
    const int64_t level_power = lg / 4 > 4 ? lg / 4 : 4;
    const int64_t level_step = (int64_t)1 << level_power, level_mask = level_step - 1;
    float acc[4][CB];
    for (int j = 0; j < 4; j++)
        for (int l = 0; l < CB; l++) acc[j][l] = 0.0f;
    int64_t i = 0;
    for (; i + level_step <= size;) {
        for (int64_t j = 0; j < level_step; ++j, ++i)
            for (int l = 0; l < CB; l++) acc[0][l] += fabsf(v[i * stride + l]);
        for (int j = 1; j < 4; ++j) {
            for (int l = 0; l < CB; l++) {
                acc[j][l] += acc[j - 1][l];
                acc[j - 1][l] = 0.0f;
            }
            if ((i & (level_mask << (j * level_power))) != 0) break;
        }
    }
    for (; i < size; ++i)
        for (int l = 0; l < CB; l++) acc[0][l] += fabsf(v[i * stride + l]);
    for (int j = 1; j < 4; ++j)
        for (int l = 0; l < CB; l++) acc[0][l] += acc[j][l];
    for (int l = 0; l < CB; l++) out[l] = acc[0][l];
}

static void ilp_cols(const float *v, int64_t stride, int64_t size, float *out) {
    const int64_t n4 = size / 4;
    float p[4][CB];
    for (int k = 0; k < 4; k++) {
        if (n4 > 0) cascade_cols(v + k * stride, 4 * stride, n4, p[k]);
        else
            for (int l = 0; l < CB; l++) p[k][l] = 0.0f;
    }
    for (int64_t i = n4 * 4; i < size; i++)
        for (int l = 0; l < CB; l++) p[0][l] += fabsf(v[i * stride + l]);
    for (int k = 1; k < 4; k++)
        for (int l = 0; l < CB; l++) p[0][l] += p[k][l];
    for (int l = 0; l < CB; l++) out[l] = p[0][l];
}

/* x.abs().sum(dim=1) of a contiguous row of n floats (an inner reduction; vectorized_inner_sum with
 * vec lanes: lane sums over whole vectors by ilp_sum, then the scalar tail, then the lanes in order). */
static float inner_abs_sum(const float *x, int64_t n, int64_t vec) {
    if (n < vec) return ilp_sum(x, 1, n, 1);
    const int64_t nv = n / vec;
    float fin = 0.0f;
    for (int64_t k = nv * vec; k < n; k++) fin += fabsf(x[k]);
    for (int64_t l = 0; l < vec; l++) fin += ilp_sum(x + l, vec, nv, 1);
    return fin;
}

/* A[q] = sum_c |z[c][q]| of one NCHW image [C, P] (x.abs().sum(dim=1) of a [1, C, H, W] tensor): an outer
 * reduction. ATen sums columns in groups: columns before `split` with one cascade over all C rows, the rest
 * with the 4-way interleaved row_sum; split = P rounded down to 4 * vec columns (P >= vec) or to 4 (P < vec).
 * With P == 1 the reduced dimension is the contiguous one (an inner reduction). */
static void channel_abs_sum(const float *z, int64_t C, int64_t P, int64_t q0, int64_t q1, int64_t vec, float *A) {
    if (P == 1) {
        A[0] = inner_abs_sum(z, C, vec);
        return;
    }
    const int64_t split = P >= vec ? P / (4 * vec) * (4 * vec) : P / 4 * 4;
    int64_t q = q0;
    for (; q + CB <= q1 && q + CB <= split; q += CB) cascade_cols(z + q, P, C, A + q);
    if (q >= split)
        for (; q + CB <= q1; q += CB) ilp_cols(z + q, P, C, A + q);
    for (; q < q1; q++) A[q] = q < split ? cascade_sum(z + q, P, C, 1) : ilp_sum(z + q, P, C, 1);
}

/* ------------------------------------------------------------------------------------------------ */
/* eng_pack                                                                                          */
/* ------------------------------------------------------------------------------------------------ */
typedef struct {
    const float *x;          /* [B, C, H, W] */
    int64_t B, C, H, W;
    int64_t pool_k, pool_s;  /* max-pool window and stride first (0: none); no padding */
    const float *a1, *b1;    /* first affine z = a1 x + b1 (NULL: none) */
    int64_t feat1;           /* 1: a1/b1 indexed by feature c*Ho*Wo + q (BatchNorm1d after Flatten), 0: by channel */
    int64_t relu;            /* then max(z, 0) */
    const float *a2, *b2;    /* then a second per-channel affine (NULL: none) */
    int64_t fma;             /* 1: the affines round once (fmaf), 0: multiply then add */
    float *z;                /* scratch [B, C, Ho, Wo] */
    uint64_t *bits;          /* out [B, Ho, Wo, ceil(C/64)]; bit 1 = (z >= 0 is false) */
    float *A;                /* scratch [B, Ho*Wo] */
    float *K;                /* out [B, KHo, KWo] (NULL: none) = avg_pool(mean_c |z|) for the consumer conv */
    int64_t kh, kw, sh, sw, ph, pw, KHo, KWo;
    float *beta;             /* out [B] (NULL: none) = mean |z| over all C*Ho*Wo values (consumer linear) */
    int64_t vec;             /* PyTorch's float vector width (8: AVX2, 16: AVX-512) */
} eng_pack_args;

/* 8x8 bit-matrix transpose: byte i bit j -> byte j bit i. */
static inline uint64_t transpose8(uint64_t x) {
    uint64_t t;
    t = (x ^ (x >> 7)) & 0x00AA00AA00AA00AAULL;
    x = x ^ t ^ (t << 7);
    t = (x ^ (x >> 14)) & 0x0000CCCC0000CCCCULL;
    x = x ^ t ^ (t << 14);
    t = (x ^ (x >> 28)) & 0x00000000F0F0F0F0ULL;
    x = x ^ t ^ (t << 28);
    return x;
}

/* mask of z[c][q0 .. q0+7] that are not >= 0 (the -1 values; NaN included, -0.0 excluded) */
static inline unsigned neg8(const float *zc, int64_t q0, int64_t n) {
#if defined(__AVX2__)
    if (n == 8)
        return (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(zc + q0), _mm256_setzero_ps(), _CMP_NGE_UQ));
#endif
    unsigned m = 0;
    for (int64_t l = 0; l < n; l++) m |= (unsigned)!(zc[q0 + l] >= 0.0f) << l;
    return m;
}

void eng_pack(const eng_pack_args *a) {
    const int64_t B = a->B, C = a->C, H = a->H, W = a->W;
    const int64_t Ho = a->pool_k ? (H - a->pool_k) / a->pool_s + 1 : H;
    const int64_t Wo = a->pool_k ? (W - a->pool_k) / a->pool_s + 1 : W;
    const int64_t P = Ho * Wo, Cw = (C + 63) / 64, Cb = Cw * 8;
    const int par = B * C * P > (1 << 14);
#pragma omp parallel if (par)
    {
        /* z = chain(x): max-pool, affine, ReLU, affine (the float ops of the simulated model, in its order) */
#pragma omp for collapse(2) schedule(static)
        for (int64_t b = 0; b < B; b++)
            for (int64_t c = 0; c < C; c++) {
                const float *restrict xc = a->x + (b * C + c) * H * W;
                float *restrict zc = a->z + (b * C + c) * P;
                const int64_t pk = a->pool_k, ps = a->pool_s, fused = a->fma;
                if (pk == 2 && ps == 2) {
                    for (int64_t oy = 0; oy < Ho; oy++) {
                        const float *r0 = xc + 2 * oy * W, *r1 = r0 + W;
                        for (int64_t ox = 0; ox < Wo; ox++) {
                            /* ATen max_pool2d: the first maximum in row order, a NaN wins */
                            float v = r0[2 * ox];
                            float u = r0[2 * ox + 1];
                            v = (u > v || u != u) ? u : v;
                            u = r1[2 * ox];
                            v = (u > v || u != u) ? u : v;
                            u = r1[2 * ox + 1];
                            v = (u > v || u != u) ? u : v;
                            zc[oy * Wo + ox] = v;
                        }
                    }
                } else if (pk) {
                    for (int64_t oy = 0; oy < Ho; oy++)
                        for (int64_t ox = 0; ox < Wo; ox++) {
                            float v = -INFINITY;
                            for (int64_t i = 0; i < pk; i++)
                                for (int64_t j = 0; j < pk; j++) {
                                    const float u = xc[(oy * ps + i) * W + ox * ps + j];
                                    v = (u > v || u != u) ? u : v;
                                }
                            zc[oy * Wo + ox] = v;
                        }
                } else {
                    for (int64_t q = 0; q < P; q++) zc[q] = xc[q];
                }
                if (a->a1 && a->feat1) {
                    const float *restrict a1 = a->a1 + c * P, *restrict b1 = a->b1 + c * P;
                    if (fused) for (int64_t q = 0; q < P; q++) zc[q] = fmaf(zc[q], a1[q], b1[q]);
                    else for (int64_t q = 0; q < P; q++) zc[q] = zc[q] * a1[q] + b1[q];
                } else if (a->a1) {
                    const float a1 = a->a1[c], b1 = a->b1[c];
                    if (fused) for (int64_t q = 0; q < P; q++) zc[q] = fmaf(zc[q], a1, b1);
                    else for (int64_t q = 0; q < P; q++) zc[q] = zc[q] * a1 + b1;
                }
                if (a->relu)
                    for (int64_t q = 0; q < P; q++) zc[q] = zc[q] > 0.0f ? zc[q] : (zc[q] != zc[q] ? zc[q] : 0.0f);
                if (a->a2) {
                    const float a2 = a->a2[c], b2 = a->b2[c];
                    if (fused) for (int64_t q = 0; q < P; q++) zc[q] = fmaf(zc[q], a2, b2);
                    else for (int64_t q = 0; q < P; q++) zc[q] = zc[q] * a2 + b2;
                }
            }
        /* sign bits, 8 pixels x 8 channels at a time (movemask, then an 8x8 bit transpose) */
        const int64_t nq8 = (P + 7) / 8;
#pragma omp for collapse(2) schedule(static)
        for (int64_t b = 0; b < B; b++)
            for (int64_t t = 0; t < nq8; t++) {
                const int64_t q0 = t * 8, nq = P - q0 < 8 ? P - q0 : 8;
                uint8_t *ob = (uint8_t *)(a->bits + (b * P + q0) * Cw);
                for (int64_t g = 0; g < Cb; g++) {
                    uint64_t m8 = 0;
                    for (int64_t i = 0; i < 8; i++) {
                        const int64_t c = g * 8 + i;
                        if (c < C) m8 |= (uint64_t)neg8(a->z + (b * C + c) * P, q0, nq) << (8 * i);
                    }
                    const uint64_t tr = transpose8(m8); /* byte l = channels g*8 .. g*8+7 of pixel q0 + l */
                    for (int64_t l = 0; l < nq; l++) ob[l * Cb + g] = (uint8_t)(tr >> (8 * l));
                }
            }
        /* A = mean_c |z| (for K), per pixel, in PyTorch's order */
        if (a->K) {
            const int64_t chunk = 4 * a->vec;
            const int64_t nch = (P + chunk - 1) / chunk;
#pragma omp for collapse(2) schedule(static)
            for (int64_t b = 0; b < B; b++)
                for (int64_t t = 0; t < nch; t++) {
                    const int64_t q0 = t * chunk, q1 = q0 + chunk < P ? q0 + chunk : P;
                    float *Ab = a->A + b * P;
                    channel_abs_sum(a->z + b * C * P, C, P, q0, q1, a->vec, Ab);
                    for (int64_t q = q0; q < q1; q++) Ab[q] = Ab[q] / (float)C;
                }
            /* K = avg_pool2d(A, k, s, p, count_include_pad=True) (ATen: sum in row order, then / window) */
#pragma omp for collapse(2) schedule(static)
            for (int64_t b = 0; b < B; b++)
                for (int64_t oy = 0; oy < a->KHo; oy++)
                    for (int64_t ox = 0; ox < a->KWo; ox++) {
                        int64_t ih0 = oy * a->sh - a->ph, iw0 = ox * a->sw - a->pw;
                        int64_t ih1 = ih0 + a->kh < Ho + a->ph ? ih0 + a->kh : Ho + a->ph;
                        int64_t iw1 = iw0 + a->kw < Wo + a->pw ? iw0 + a->kw : Wo + a->pw;
                        const int64_t pool = (ih1 - ih0) * (iw1 - iw0);
                        ih0 = ih0 > 0 ? ih0 : 0;
                        iw0 = iw0 > 0 ? iw0 : 0;
                        ih1 = ih1 < Ho ? ih1 : Ho;
                        iw1 = iw1 < Wo ? iw1 : Wo;
                        float s = 0.0f;
                        for (int64_t i = ih0; i < ih1; i++)
                            for (int64_t j = iw0; j < iw1; j++) s += a->A[b * P + i * Wo + j];
                        a->K[(b * a->KHo + oy) * a->KWo + ox] = (ih0 >= ih1 || iw0 >= iw1) ? 0.0f : s / (float)pool;
                    }
        }
        if (a->beta) {
#pragma omp for schedule(static)
            for (int64_t b = 0; b < B; b++)
                a->beta[b] = inner_abs_sum(a->z + b * C * P, C * P, a->vec) / (float)(C * P);
        }
    }
}

/* ------------------------------------------------------------------------------------------------ */
/* eng_bconv                                                                                         */
/* ------------------------------------------------------------------------------------------------ */
typedef struct {
    const uint64_t *x;        /* [B, H, W, ceil(C/64)] packed input */
    int64_t B, H, W, C;       /* C: channels per pixel (bits) */
    const uint64_t *w;        /* [M, Kw] packed filters (kernel.pack_conv_weight layout) */
    int64_t M, kh, kw, sh, sw, ph, pw, Ho, Wo;
    int64_t kbits;            /* bits per filter that count: kh*kw*C for a conv, the true length for a linear layer */
    const int32_t *corr;      /* [M, Ho*Wo] zero-padding correction, or NULL */
    int64_t mode;             /* 0: float epilogue, 1: threshold epilogue */
    const float *alpha;       /* [M] or NULL */
    const float *K;           /* [B*Ho*Wo] or NULL */
    const float *bias;        /* [M] or NULL */
    const float *res;         /* residual [B, res_C, res_H, res_W] added last, or NULL */
    int64_t res_C, res_H, res_W, res_s, res_coff; /* out[b][m][y][x] += res[b][m - res_coff][y*res_s][x*res_s] */
    float *out;               /* [B, M, Ho, Wo] (float epilogue) */
    const int32_t *T;         /* [M] thresholds (threshold epilogue) */
    const uint8_t *inc;       /* [M] 1: +1 iff count >= T, 0: +1 iff count <= T */
    uint64_t *out_bits;       /* [B, Ho, Wo, ceil(M/64)] (threshold epilogue) */
} eng_conv_args;

/* counts cnt[(m - m_lo) * TN + l] of output pixels n0 .. n0 + nv - 1 -> outputs */
static void conv_epilogue(const eng_conv_args *a, const int32_t *cnt, int64_t tn, int64_t n0, int64_t nv,
                          int64_t m_lo, int64_t m_hi) {
    const int64_t P = a->Ho * a->Wo, M = a->M;
    if (a->mode == 0) {
        for (int64_t m = m_lo; m < m_hi; m++) {
            const int32_t *cm = cnt + (m - m_lo) * tn;
            int64_t b = n0 / P, q = n0 % P;
            for (int64_t l = 0; l < nv; l++) {
                const int32_t c = cm[l] - (a->corr ? a->corr[m * P + q] : 0);
                float y = (float)c;
                if (a->alpha) y = y * a->alpha[m];      /* Eq. (11): count * alpha */
                if (a->K) y = y * a->K[n0 + l];         /*           ... * K       */
                if (a->bias) y = y + a->bias[m];
                if (a->res) {
                    const int64_t cr = m - a->res_coff, oy = q / a->Wo, ox = q % a->Wo;
                    const float r = (cr >= 0 && cr < a->res_C)
                        ? a->res[((b * a->res_C + cr) * a->res_H + oy * a->res_s) * a->res_W + ox * a->res_s] : 0.0f;
                    y = y + r;
                }
                a->out[(b * M + m) * P + q] = y;
                if (++q == P) { q = 0; b++; }
            }
        }
    } else {
        const int64_t Mw = (M + 63) / 64;
        for (int64_t l = 0; l < nv; l++) {
            const int64_t n = n0 + l, q = n % P;
            for (int64_t m0 = m_lo; m0 < m_hi; m0 += 64) {
                uint64_t word = 0;
                const int64_t m1 = m0 + 64 < m_hi ? m0 + 64 : m_hi;
                for (int64_t m = m0; m < m1; m++) {
                    const int32_t c = cnt[(m - m_lo) * tn + l] - (a->corr ? a->corr[m * P + q] : 0);
                    const int plus = a->inc[m] ? c >= a->T[m] : c <= a->T[m];
                    word |= (uint64_t)!plus << (m - m0);
                }
                a->out_bits[n * Mw + m0 / 64] = word;
            }
        }
    }
}

void eng_bconv(const eng_conv_args *a) {
    const int64_t N = a->B * a->Ho * a->Wo, M = a->M;
    const int64_t Kw = xnor_patch_words(a->C, a->kh, a->kw);
    const int64_t tn = NB * NR;
    const int gemv = a->kh == 1 && a->kw == 1 && a->H == 1 && a->W == 1 && N < 4;
    const int64_t ntiles = gemv ? 1 : (N + tn - 1) / tn;
#ifdef _OPENMP
    const int64_t nthr = omp_get_max_threads();
#else
    const int64_t nthr = 1;
#endif
    /* partition: tiles of output pixels (batch and space), and when there are few, blocks of 64 output channels */
    const int64_t mblocks = (M + 63) / 64;
    int64_t mchunks = 1;
    if (nthr > 1 && ntiles < 4 * nthr) {
        mchunks = (4 * nthr + ntiles - 1) / ntiles;
        if (mchunks > mblocks) mchunks = mblocks;
    }
    const int64_t mper = (mblocks + mchunks - 1) / mchunks * 64;
    const int par = M * N * Kw > (1 << 14);
#pragma omp parallel if (par)
    {
        uint64_t *panel = (uint64_t *)aligned_alloc(64, (size_t)round_up(Kw * tn * 8, 64));
        int32_t *cnt = (int32_t *)malloc((size_t)(mper * tn) * sizeof(int32_t));
#pragma omp for collapse(2) schedule(dynamic, 1)
        for (int64_t t = 0; t < ntiles; t++)
            for (int64_t mc = 0; mc < mchunks; mc++) {
                const int64_t m_lo = mc * mper, m_hi = m_lo + mper < M ? m_lo + mper : M;
                if (m_lo >= m_hi) continue;
                if (gemv) {
                    /* a fully connected layer on 1-3 samples: one dot product per (row, sample), no panels */
                    for (int64_t m = m_lo; m < m_hi; m++) {
                        const uint64_t *wr = a->w + m * Kw;
                        for (int64_t n = 0; n < N; n++) {
                            const uint64_t *xr = a->x + n * Kw;
                            int64_t pc = 0;
                            for (int64_t k = 0; k < Kw; k++) pc += __builtin_popcountll(wr[k] ^ xr[k]);
                            cnt[(m - m_lo) * tn + n] = (int32_t)(a->kbits - 2 * pc);
                        }
                    }
                    conv_epilogue(a, cnt, tn, 0, N, m_lo, m_hi);
                    continue;
                }
                const int64_t n0 = t * tn, nv = N - n0 < tn ? N - n0 : tn;
                im2col_tile(a->x, panel, n0, N, a->H, a->W, a->C, a->kh, a->kw, a->sh, a->sw, a->ph, a->pw,
                            a->Ho, a->Wo, Kw);
                /* rows m_lo .. m_hi of the filters against this tile; counts land in cnt[m - m_lo][l] */
                for (int64_t m0 = 0; m0 < m_hi - m_lo; m0 += MR)
                    micro_tile(a->w + m_lo * Kw, panel, cnt, NULL, m_hi - m_lo, nv, Kw, a->kbits, tn, m0, 0);
                conv_epilogue(a, cnt, tn, n0, nv, m_lo, m_hi);
            }
        free(panel);
        free(cnt);
    }
}

/* ------------------------------------------------------------------------------------------------ */
/* eng_bpool: max-pool of sign(BN(count)) on packed bits                                             */
/* ------------------------------------------------------------------------------------------------ */
typedef struct {
    const uint64_t *x;   /* [B, H, W, Cw] */
    int64_t B, H, W, Cw, k, s, Ho, Wo;
    const uint64_t *inc; /* [Cw] bit set: channel's +1 is "count >= T" (max of +1s is OR), clear: "count <= T" */
    uint64_t *out;       /* [B, Ho, Wo, Cw] */
} eng_bpool_args;

void eng_bpool(const eng_bpool_args *a) {
#pragma omp parallel for collapse(2) schedule(static) if (a->B * a->Ho * a->Wo * a->Cw > (1 << 14))
    for (int64_t b = 0; b < a->B; b++)
        for (int64_t oy = 0; oy < a->Ho; oy++)
            for (int64_t ox = 0; ox < a->Wo; ox++)
                for (int64_t w = 0; w < a->Cw; w++) {
                    uint64_t all = ~(uint64_t)0, any = 0;
                    for (int64_t i = 0; i < a->k; i++)
                        for (int64_t j = 0; j < a->k; j++) {
                            const uint64_t v = a->x[((b * a->H + oy * a->s + i) * a->W + ox * a->s + j) * a->Cw + w];
                            all &= v;
                            any |= v;
                        }
                    /* bit 1 = -1: increasing channel: -1 iff all inputs -1 (AND); decreasing: -1 iff any (OR) */
                    a->out[((b * a->Ho + oy) * a->Wo + ox) * a->Cw + w] = (all & a->inc[w]) | (any & ~a->inc[w]);
                }
}

/* ------------------------------------------------------------------------------------------------ */
/* eng_run: ops back to back (kind 0: eng_pack, 1: eng_bconv, 2: eng_bpool)                          */
/* ------------------------------------------------------------------------------------------------ */
void eng_run(int64_t n, const int64_t *kinds, void *const *args) {
    for (int64_t i = 0; i < n; i++) {
        if (kinds[i] == 0) eng_pack((const eng_pack_args *)args[i]);
        else if (kinds[i] == 1) eng_bconv((const eng_conv_args *)args[i]);
        else eng_bpool((const eng_bpool_args *)args[i]);
    }
}

/* for tests: the two summation orders above, on a [rows, cols] or a row */
void eng_channel_mean_abs(const float *z, int64_t B, int64_t C, int64_t P, int64_t vec, float *A) {
    for (int64_t b = 0; b < B; b++) {
        channel_abs_sum(z + b * C * P, C, P, 0, P, vec, A + b * P);
        for (int64_t q = 0; q < P; q++) A[b * P + q] = A[b * P + q] / (float)C;
    }
}
