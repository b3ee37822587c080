/*
 * Plain C reference of the adaptive kernels, the yardstick the numba kernels are timed against.
 *
 * Compiled on the spot by agent/bench/creference.py (cc -O3 -march=native -shared -fPIC) and
 * called through ctypes on the same arrays, block size and parameters as the numba kernels.
 * No intrinsics, no -ffast-math: reductions use eight partial sums (the CMSIS-DSP habit), which
 * lets the compiler vectorise them while the summation order stays fixed and reproducible.
 *
 * Conventions (the same as agent/dsp, see the DSP contract):
 *   - all signals float64; one call processes one block of `block` samples;
 *   - a history buffer holds the newest sample first: hist[0] = x[n], hist[1] = x[n-1], ...
 *     It is shifted once per block (one memmove), and the regressor of the i-th sample of the
 *     block is the contiguous slice hist[block-1-i .. block-1-i+taps-1];
 *   - NLMS/RLS (system identification): y[n] = w . [x[n] .. x[n-N+1]], e[n] = d[n] - y[n],
 *     w updated with e[n] before the next sample;
 *   - leakage: w <- (1 - leakage) w + update;
 *   - NLMS normalisation: mu / (eps + ||regressor||^2) with a running energy (newest square in,
 *     oldest square out);
 *   - RLS: P(0) = I / delta, symmetric update P <- (P - pi pi^T / (lam + x^T pi)) / lam with
 *     pi = P x; each element computes (pi[i] * pi[j]) first, so P stays exactly symmetric;
 *   - filtered-x (FxNLMS, FxRLS): the secondary-path estimate is a bulk delay of D samples and
 *     an FIR s of S taps; x'[n] = sum_j s[j] x[n-D-j]; the anti-noise y[n] = w . [x[n] ..];
 *     e is the measured error (noise + secondary path * y), so the update descends:
 *     FxNLMS: w <- (1 - leakage) w - mu e[n] x'_vec / (eps + ||x'_vec||^2);
 *     FxRLS (modified filtered-x structure, no loop delay in its error): the virtual error
 *     e_v[n] = e[n] - (S^ * y)[n] + w . x'_vec is minimised, w <- (1 - leakage) w - k e_v[n].
 */
#include <math.h>
#include <string.h>

static inline double dot(const double *restrict a, const double *restrict b, int n) {
    double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0, s4 = 0.0, s5 = 0.0, s6 = 0.0, s7 = 0.0;
    int k = 0;
    for (; k + 8 <= n; k += 8) {
        s0 += a[k] * b[k];
        s1 += a[k + 1] * b[k + 1];
        s2 += a[k + 2] * b[k + 2];
        s3 += a[k + 3] * b[k + 3];
        s4 += a[k + 4] * b[k + 4];
        s5 += a[k + 5] * b[k + 5];
        s6 += a[k + 6] * b[k + 6];
        s7 += a[k + 7] * b[k + 7];
    }
    for (; k < n; k++) s0 += a[k] * b[k];
    return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7));
}

/* w <- keep * w + g * v */
static inline void scale_add(double *restrict w, double keep, double g, const double *restrict v, int n) {
    for (int k = 0; k < n; k++) w[k] = keep * w[k] + g * v[k];
}

/* Shift a newest-first history of `len` samples by one block and insert the block (oldest first
 * in `x`) at the front, newest first. */
static inline void push_block(double *restrict hist, int len, const double *restrict x, int block) {
    memmove(hist + block, hist, (size_t)(len - block) * sizeof(double));
    for (int i = 0; i < block; i++) hist[block - 1 - i] = x[i];
}

/* The running ||u||^2 of a newest-first regressor u of `taps` samples once it has slid by one sample:
 * the newest square in, the oldest (u[taps], just behind the regressor) out; never below zero. */
static inline double slide_energy(double en, const double *u, int taps) {
    const double newest = u[0], oldest = u[taps];
    en += newest * newest - oldest * oldest;
    return en < 0.0 ? 0.0 : en;
}

/* ---- NLMS: hist has taps + block samples; energy[0] is the running ||regressor||^2 ---- */
void nlms_block(int taps, int block, double *w, double *hist, double *energy, const double *x,
                const double *d, double *y, double *e, double mu, double leakage, double eps) {
    push_block(hist, taps + block, x, block);
    double en = energy[0];
    const double keep = 1.0 - leakage;
    for (int i = 0; i < block; i++) {
        const double *u = hist + (block - 1 - i);
        en = slide_energy(en, u, taps);
        y[i] = dot(w, u, taps);
        e[i] = d[i] - y[i];
        scale_add(w, keep, mu * e[i] / (eps + en), u, taps);
    }
    energy[0] = en;
}

void nlms_run(int taps, int block, int nblocks, double *w, double *hist, double *energy, const double *x,
              const double *d, double *y, double *e, double mu, double leakage, double eps) {
    for (int b = 0; b < nblocks; b++) {
        const long o = (long)b * block;
        nlms_block(taps, block, w, hist, energy, x + o, d + o, y + o, e + o, mu, leakage, eps);
    }
}

/* ---- RLS core: one sample with regressor u, gain applied as w += sign * k * err ---- */
static inline void rls_update(int taps, double *restrict w, double *restrict p, double *restrict pi,
                              const double *restrict u, double err, double sign, double lam,
                              double keep) {
    /* pi = P u, accumulated row by row (P is symmetric): axpy loops, no horizontal reductions */
    for (int c = 0; c < taps; c++) pi[c] = 0.0;
    for (int r = 0; r < taps; r++) {
        const double *restrict row = p + (long)r * taps;
        const double ur = u[r];
        for (int c = 0; c < taps; c++) pi[c] += ur * row[c];
    }
    const double inv_denom = 1.0 / (lam + dot(u, pi, taps));
    const double inv_lam = 1.0 / lam;
    const double g = sign * err * inv_denom;
    scale_add(w, keep, g, pi, taps);
    for (int r = 0; r < taps; r++) {
        double *restrict row = p + (long)r * taps;
        const double a = pi[r];
        for (int c = 0; c < taps; c++) row[c] = (row[c] - (a * pi[c]) * inv_denom) * inv_lam;
    }
}

/* ---- RLS: hist has taps + block samples, p is taps*taps row-major, pi is taps scratch ---- */
void rls_block(int taps, int block, double *w, double *p, double *hist, double *pi, const double *x,
               const double *d, double *y, double *e, double lam, double leakage) {
    push_block(hist, taps + block, x, block);
    const double keep = 1.0 - leakage;
    for (int i = 0; i < block; i++) {
        const double *u = hist + (block - 1 - i);
        y[i] = dot(w, u, taps);
        e[i] = d[i] - y[i];
        rls_update(taps, w, p, pi, u, e[i], 1.0, lam, keep);
    }
}

void rls_run(int taps, int block, int nblocks, double *w, double *p, double *hist, double *pi,
             const double *x, const double *d, double *y, double *e, double lam, double leakage) {
    for (int b = 0; b < nblocks; b++) {
        const long o = (long)b * block;
        rls_block(taps, block, w, p, hist, pi, x + o, d + o, y + o, e + o, lam, leakage);
    }
}

/* ---- Filtered reference of one block: xf[i] = sum_j s[j] x[n_i - delay - j].
 * shist has delay + s_taps + block samples (newest first) and receives the block. ---- */
static inline void filter_reference(int delay, int s_taps, int block, const double *s, double *shist,
                                    const double *x, double *xf) {
    push_block(shist, delay + s_taps + block, x, block);
    for (int i = 0; i < block; i++) xf[i] = dot(s, shist + (block - 1 - i) + delay, s_taps);
}

/* The block prelude of every filtered-x kernel: filter the block x into xf, then push x into xhist and
 * xf into fhist (histories of hist_len samples each). */
static inline void push_filtered_x(int delay, int s_taps, int block, const double *s, double *shist,
                                   double *xhist, double *fhist, int hist_len, const double *x, double *xf) {
    filter_reference(delay, s_taps, block, s, shist, x, xf);
    push_block(xhist, hist_len, x, block);
    push_block(fhist, hist_len, xf, block);
}

/* ---- FxNLMS: xhist and fhist have taps + block samples, shist delay + s_taps + block,
 * xf is block scratch, energy[0] the running ||filtered regressor||^2. ---- */
void fxnlms_block(int taps, int block, int delay, int s_taps, const double *s, double *w, double *xhist,
                  double *shist, double *fhist, double *xf, double *energy, const double *x,
                  const double *e, double *y, double mu, double leakage, double eps) {
    push_filtered_x(delay, s_taps, block, s, shist, xhist, fhist, taps + block, x, xf);
    double en = energy[0];
    const double keep = 1.0 - leakage;
    for (int i = 0; i < block; i++) {
        const double *u = xhist + (block - 1 - i);
        const double *uf = fhist + (block - 1 - i);
        en = slide_energy(en, uf, taps);
        y[i] = dot(w, u, taps);
        scale_add(w, keep, -mu * e[i] / (eps + en), uf, taps);
    }
    energy[0] = en;
}

void fxnlms_run(int taps, int block, int nblocks, int delay, int s_taps, const double *s, double *w,
                double *xhist, double *shist, double *fhist, double *xf, double *energy, const double *x,
                const double *e, double *y, double mu, double leakage, double eps) {
    for (int b = 0; b < nblocks; b++) {
        const long o = (long)b * block;
        fxnlms_block(taps, block, delay, s_taps, s, w, xhist, shist, fhist, xf, energy, x + o, e + o, y + o,
                     mu, leakage, eps);
    }
}

/* ---- FxRLS: as FxNLMS, with the RLS gain on the filtered regressor (p taps*taps, pi scratch) and the
 * virtual error e_v = e - (S^ * y) + w . x'_vec; yhist has delay + s_taps + block past outputs. ---- */
void fxrls_block(int taps, int block, int delay, int s_taps, const double *s, double *w, double *p,
                 double *xhist, double *shist, double *fhist, double *yhist, double *xf, double *pi,
                 const double *x, const double *e, double *y, double lam, double leakage) {
    push_filtered_x(delay, s_taps, block, s, shist, xhist, fhist, taps + block, x, xf);
    memmove(yhist + block, yhist, (size_t)(delay + s_taps) * sizeof(double));
    const double keep = 1.0 - leakage;
    for (int i = 0; i < block; i++) {
        const double *uf = fhist + (block - 1 - i);
        const double yn = dot(w, xhist + (block - 1 - i), taps);
        y[i] = yn;
        yhist[block - 1 - i] = yn;
        const double dh = e[i] - dot(s, yhist + (block - 1 - i) + delay, s_taps);
        const double ev = dh + dot(w, uf, taps);
        rls_update(taps, w, p, pi, uf, ev, -1.0, lam, keep);
    }
}

void fxrls_run(int taps, int block, int nblocks, int delay, int s_taps, const double *s, double *w, double *p,
               double *xhist, double *shist, double *fhist, double *yhist, double *xf, double *pi,
               const double *x, const double *e, double *y, double lam, double leakage) {
    for (int b = 0; b < nblocks; b++) {
        const long o = (long)b * block;
        fxrls_block(taps, block, delay, s_taps, s, w, p, xhist, shist, fhist, yhist, xf, pi, x + o, e + o,
                    y + o, lam, leakage);
    }
}

/* ---- Hybrid: a long FxNLMS w1 (l_taps) and a short FxRLS w2 (n_taps) in an adaptive convex mix
 * (agent/dsp/hybrid.py). Both adapt on their own virtual error d^ + w_i . x'_vec with
 * d^ = e - (S^ * y); y = lam (w1 . x_vec) + (1 - lam) (w2 . x_vec), lam = 1 / (1 + exp(-a));
 * mix = [a, lam, power]: power <- beta power + (1 - beta) (v1 - v2)^2,
 * a <- clip(a - mu_mix e_c (v1 - v2) lam (1 - lam) / (mix_eps + power), +-a_limit).
 * The leakage applies to the FxNLMS part only (the RLS is regularised by its forgetting factor).
 * xhist and fhist have max(l_taps, n_taps) + block samples, yhist delay + s_taps + block. ---- */

void hybrid_block(int l_taps, int n_taps, int block, int delay, int s_taps, const double *s, double *w1,
                  double *w2, double *p, double *pi, double *mix, double *energy, double *xhist, double *shist,
                  double *fhist, double *yhist, double *xf, const double *x, const double *e, double *y,
                  double mu, double lam, double leakage, double eps, double mu_mix, double beta,
                  double mix_eps, double a_limit) {
    const int hist = (l_taps > n_taps ? l_taps : n_taps) + block;
    push_filtered_x(delay, s_taps, block, s, shist, xhist, fhist, hist, x, xf);
    memmove(yhist + block, yhist, (size_t)(delay + s_taps) * sizeof(double));
    const double keep = 1.0 - leakage;
    double en = energy[0];
    for (int i = 0; i < block; i++) {
        const double *u = xhist + (block - 1 - i);
        const double *uf = fhist + (block - 1 - i);
        en = slide_energy(en, uf, l_taps);
        const double ml = mix[1];
        const double yn = ml * dot(w1, u, l_taps) + (1.0 - ml) * dot(w2, u, n_taps);
        y[i] = yn;
        yhist[block - 1 - i] = yn;
        const double dh = e[i] - dot(s, yhist + (block - 1 - i) + delay, s_taps);
        const double v1 = dot(w1, uf, l_taps), v2 = dot(w2, uf, n_taps);
        const double ec = dh + ml * v1 + (1.0 - ml) * v2;
        const double diff = v1 - v2;
        const double pw = beta * mix[2] + (1.0 - beta) * diff * diff;
        double a = mix[0] - mu_mix * ec * diff * ml * (1.0 - ml) / (mix_eps + pw);
        if (a > a_limit) a = a_limit;
        else if (a < -a_limit) a = -a_limit;
        else if (a != a) a = 0.0;
        mix[0] = a;
        mix[1] = 1.0 / (1.0 + exp(-a));
        mix[2] = pw;
        scale_add(w1, keep, -mu * (dh + v1) / (eps + en), uf, l_taps);
        rls_update(n_taps, w2, p, pi, uf, dh + v2, -1.0, lam, 1.0); /* leakage on w1 only */
    }
    energy[0] = en;
}

void hybrid_run(int l_taps, int n_taps, int block, int nblocks, int delay, int s_taps, const double *s,
                double *w1, double *w2, double *p, double *pi, double *mix, double *energy, double *xhist,
                double *shist, double *fhist, double *yhist, double *xf, const double *x, const double *e,
                double *y, double mu, double lam, double leakage, double eps, double mu_mix, double beta,
                double mix_eps, double a_limit) {
    for (int b = 0; b < nblocks; b++) {
        const long o = (long)b * block;
        hybrid_block(l_taps, n_taps, block, delay, s_taps, s, w1, w2, p, pi, mix, energy, xhist, shist, fhist,
                     yhist, xf, x + o, e + o, y + o, mu, lam, leakage, eps, mu_mix, beta, mix_eps, a_limit);
    }
}
