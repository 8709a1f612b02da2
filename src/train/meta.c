/* Meta-Rewarding's data construction: which response is meta-judged, its comparisons,
 * the both-order rule, the Elo fit and the judge pair (include/srlm/meta.h). */
#include <math.h>
#include <string.h>

#include "srlm/meta.h"

int srlm_meta_pick_response(int k, int J, const double *scores, double *variance) {
  int best = -1;
  double best_var = 0;
  for (int q = 0; q < k; q++) {
    const double *s = scores + (size_t)q * (size_t)J;
    double sum = 0, first = NAN;
    int n = 0, distinct = 0;
    for (int j = 0; j < J; j++) {
      if (!isfinite(s[j])) continue;
      if (n == 0) first = s[j];
      distinct |= s[j] != first;
      sum += s[j];
      n++;
    }
    if (!distinct) continue;
    const double mean = sum / n;
    double ss = 0;
    for (int j = 0; j < J; j++)
      if (isfinite(s[j])) ss += (s[j] - mean) * (s[j] - mean);
    const double var = ss / n;
    if (best < 0 || var > best_var) {
      best = q;
      best_var = var;
    }
  }
  if (variance) *variance = best < 0 ? 0 : best_var;
  return best;
}

int srlm_meta_comparisons(int J, const double *scores, int *a, int *b) {
  int n = 0;
  for (int x = 0; x < J; x++)
    for (int y = x + 1; y < J; y++)
      if (isfinite(scores[x]) && isfinite(scores[y]) && scores[x] != scores[y]) {
        a[n] = x;
        b[n] = y;
        n++;
      }
  return n;
}

int srlm_meta_both_orders(srlm_meta_verdict v_xy, srlm_meta_verdict v_yx) {
  if (v_xy == SRLM_META_A && v_yx == SRLM_META_B) return 1;  /* x first and x second */
  if (v_xy == SRLM_META_B && v_yx == SRLM_META_A) return -1; /* y second and y first */
  return 0;
}

/* The objective of rule 4 over the players in use (idx, m of them) at coefficients c. */
static double objective(int n, const double *w, int m, const int *idx, const double *c) {
  double f = 0;
  for (int p = 0; p < m; p++) {
    const int i = idx[p];
    f -= 0.5 * SRLM_META_ELO_RIDGE * c[p] * c[p];
    for (int q = 0; q < m; q++) {
      const double wij = w[(size_t)i * (size_t)n + (size_t)idx[q]];
      if (q == p || wij == 0) continue;
      const double d = c[p] - c[q]; /* log sigmoid(d) = -log(1 + e^-d), computed stably */
      f -= wij * (d > 0 ? log1p(exp(-d)) : -d + log1p(exp(d)));
    }
  }
  return f;
}

/* Solves H x = g (m x m, symmetric positive definite) in place by Gaussian elimination
 * with partial pivoting; g becomes x. */
static void solve(int m, double *h, double *g) {
  for (int k = 0; k < m; k++) {
    int piv = k;
    for (int r = k + 1; r < m; r++)
      if (fabs(h[r * m + k]) > fabs(h[piv * m + k])) piv = r;
    if (piv != k) {
      for (int c = 0; c < m; c++) {
        double t = h[k * m + c];
        h[k * m + c] = h[piv * m + c];
        h[piv * m + c] = t;
      }
      double t = g[k];
      g[k] = g[piv];
      g[piv] = t;
    }
    for (int r = k + 1; r < m; r++) {
      const double f = h[r * m + k] / h[k * m + k];
      for (int c = k; c < m; c++) h[r * m + c] -= f * h[k * m + c];
      g[r] -= f * g[k];
    }
  }
  for (int k = m - 1; k >= 0; k--) {
    double s = g[k];
    for (int c = k + 1; c < m; c++) s -= h[k * m + c] * g[c];
    g[k] = s / h[k * m + k];
  }
}

srlm_status srlm_meta_elo(int n, const double *wins, double *elo) {
  if (n < 1 || n > SRLM_META_MAX_J)
    return srlm_error(SRLM_ERR_RANGE, "meta-judge Elo", "%d judgments (1..%d)", n, SRLM_META_MAX_J);
  int idx[SRLM_META_MAX_J], m = 0;
  for (int i = 0; i < n; i++) {
    int any = 0;
    for (int j = 0; j < n; j++) {
      const double a = wins[(size_t)i * (size_t)n + (size_t)j], b = wins[(size_t)j * (size_t)n + (size_t)i];
      if (!isfinite(a) || a < 0)
        return srlm_error(SRLM_ERR_RANGE, "meta-judge Elo", "win count [%d][%d] = %g", i, j, a);
      if (i != j) any |= a > 0 || b > 0;
    }
    elo[i] = NAN;
    if (any) idx[m++] = i;
  }
  if (m == 0) return SRLM_OK;
  double c[SRLM_META_MAX_J] = {0}, g[SRLM_META_MAX_J], step[SRLM_META_MAX_J], trial[SRLM_META_MAX_J];
  double h[SRLM_META_MAX_J * SRLM_META_MAX_J]; /* 32 KiB on the stack */
  double f = objective(n, wins, m, idx, c);
  for (int it = 0; it < SRLM_META_ELO_MAX_ITER; it++) {
    /* gradient g and the negated Hessian h (the graph Laplacian of the fitted
       probabilities plus the ridge) */
    memset(h, 0, (size_t)m * (size_t)m * sizeof *h);
    for (int p = 0; p < m; p++) {
      g[p] = -SRLM_META_ELO_RIDGE * c[p];
      h[p * m + p] = SRLM_META_ELO_RIDGE;
    }
    for (int p = 0; p < m; p++)
      for (int q = 0; q < m; q++) {
        if (q == p) continue;
        const double wpq = wins[(size_t)idx[p] * (size_t)n + (size_t)idx[q]];
        const double wqp = wins[(size_t)idx[q] * (size_t)n + (size_t)idx[p]];
        const double s = 1 / (1 + exp(-(c[p] - c[q]))); /* P(p beats q) */
        g[p] += wpq * (1 - s) - wqp * s;
        const double v = (wpq + wqp) * s * (1 - s);
        h[p * m + p] += v;
        h[p * m + q] -= v;
      }
    memcpy(step, g, (size_t)m * sizeof *step);
    solve(m, h, step);
    double big = 0;
    for (int p = 0; p < m; p++) big = fmax(big, fabs(step[p]));
    if (big < 1e-12) break;
    /* step halving: the objective is concave, so some step length raises it */
    double t = 1;
    int moved = 0;
    for (int half = 0; half < 60; half++, t *= 0.5) {
      for (int p = 0; p < m; p++) trial[p] = c[p] + t * step[p];
      const double ft = objective(n, wins, m, idx, trial);
      if (ft >= f) {
        memcpy(c, trial, (size_t)m * sizeof *c);
        f = ft;
        moved = 1;
        break;
      }
    }
    if (!moved) break;
  }
  for (int p = 0; p < m; p++) elo[idx[p]] = 400 * c[p] + 1000;
  return SRLM_OK;
}

void srlm_meta_judge_pair(int n, const double *elo, int *chosen, int *rejected, int *made) {
  int hi = -1, lo = -1;
  for (int i = 0; i < n; i++) {
    if (!isfinite(elo[i])) continue;
    if (hi < 0 || elo[i] > elo[hi]) hi = i;
    if (lo < 0 || elo[i] < elo[lo]) lo = i;
  }
  *made = hi >= 0 && lo >= 0 && elo[hi] > elo[lo];
  *chosen = *made ? hi : -1;
  *rejected = *made ? lo : -1;
}
