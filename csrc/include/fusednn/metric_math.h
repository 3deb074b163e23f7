// Keras metric objects accumulated inside the fused trainer (and by the per-op
// path's `metric_update` op): one row of a batch at a time, every term in
// double from the float inputs, added into float64 accumulators. Shared by the
// CPU kernel (cpu/metric_objects.cpp, plain +=) and its CUDA twin
// (cuda/metric_objects.cu, atomicAdd), so both compute the same terms.
//
// Accumulator layouts (`acc`, float64), per kind; w is the row's sample weight
// (1 without weights), cols the model's outputs:
//   confusion  classes x classes: acc[true * classes + predicted] += w (cpu::confusion_update's rule)
//   error_sums [sum w |p - t|, sum w (p - t)^2, sum w * cols]
//   auc        [positive weight by bucket (T + 1), negative weight by bucket (T + 1)]: an element
//              p lands in bucket b = #{thresholds < p} (p > threshold is Keras' rule), so the
//              count at threshold i is the sum over buckets b > i. k = 0: every output pooled;
//              k = 1: one such pair per output (cols x 2 x (T + 1)); k = 2 + c: output c only
//              (AUC and Precision/Recall with thresholds, multi_label, class_id)
//   top_k      [sum w * in_top_k, sum w]
//   fbeta      [tp (cols), fp (cols), fn (cols), sum w * t (cols)]
//   r2         [sum w t (cols), sum w t^2 (cols), sum w (t - p)^2 (cols), sum w (cols)]
//   mape       [sum w * mean_j 100 |t - p| / max(|t|, eps), sum w]
//   equal      [sum w * mean_j (t == p), sum w]
#pragma once
#include <cmath>
#include <cstdint>

#ifdef __CUDACC__
#define FUSEDNN_MHD __host__ __device__ __forceinline__
#else
#define FUSEDNN_MHD inline
#endif

namespace fusednn {

enum class MetricKind : int { confusion = 0, error_sums = 1, auc = 2, top_k = 3, fbeta = 4, r2 = 5, mape = 6,
                              equal = 7 };
constexpr int kMetricKinds = 8;
// what is applied to the model's (folded, pre-activation) output before the metric sees it
enum class MetricPre : int { none = 0, sigmoid = 1, softmax = 2 };

struct MetricSpec {
  MetricKind kind = MetricKind::error_sums;
  MetricPre pre = MetricPre::none;
  double* acc = nullptr;                // the accumulators (layout above), on the kernel's device
  const double* thresholds = nullptr;   // auc: num_thresholds values, ascending, on the kernel's device
  int num_thresholds = 0;
  int k = 0;                            // top_k: k; confusion: the number of classes
  float threshold = 0.5f;               // confusion (one output): the cut; fbeta: NaN = each row's maximum
  bool sparse = false;                  // targets are one class index per row
};

namespace metric_math {

constexpr double kEps = 1e-7;  // keras.backend.epsilon()

// The row's values as the metric sees them: z itself, its sigmoid, or the softmax of the row
// (mx: the row's maximum, inv: 1 / sum exp(z - mx)).
struct Row {
  const float* z;
  MetricPre pre;
  double mx, inv;
  FUSEDNN_MHD double operator[](long j) const {
    const double v = z[j];
    if (pre == MetricPre::sigmoid) return 1.0 / (1.0 + exp(-v));
    if (pre == MetricPre::softmax) return exp(v - mx) * inv;
    return v;
  }
};

FUSEDNN_MHD Row make_row(const float* z, long cols, MetricPre pre) {
  Row r{z, pre, 0.0, 1.0};
  if (pre == MetricPre::softmax) {
    double mx = -INFINITY, s = 0.0;
    for (long j = 0; j < cols; ++j) mx = fmax(mx, double(z[j]));
    for (long j = 0; j < cols; ++j) s += exp(double(z[j]) - mx);
    r.mx = mx;
    r.inv = 1.0 / s;
  }
  return r;
}

FUSEDNN_MHD long argmax(const float* v, long n) {
  long best = 0;
  for (long i = 1; i < n; ++i)
    if (v[i] > v[best]) best = i;
  return best;
}

// #{i : thresholds[i] < p}: the bucket of p (NaN: 0, above no threshold). The first guess
// is where p falls among evenly spaced thresholds in [0, 1] (Keras' default), checked and
// moved against the array; a binary search settles any other case, so the result is
// exact for every ascending array (a search alone costs several mispredicted branches).
FUSEDNN_MHD int bucket(const double* th, int n, double p) {
  if (p != p) return 0;
  const double gp = p * double(n - 1);
  int g = gp <= 0.0 ? 0 : (gp >= double(n - 1) ? n : int(gp) + 1);
  for (int k = 0; k < 3; ++k) {
    if (g < n && th[g] < p) ++g;
    else if (g > 0 && !(th[g - 1] < p)) --g;
    else return g;
  }
  int lo = 0, hi = n;
  while (lo < hi) {
    const int mid = (lo + hi) / 2;
    if (th[mid] < p) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

// A class index from a sparse float label, or -1 outside [0, classes) (NaN included).
FUSEDNN_MHD long label_index(float label, long classes) {
  return label > -1.f && label < float(classes) ? long(label) : -1;
}

// Add row r's terms to s.acc through add(double* slot, double value).
template <class Add>
FUSEDNN_MHD void row_update(const MetricSpec& s, const float* p, const float* t, double w, long cols, Add&& add) {
  double* acc = s.acc;
  switch (s.kind) {
    case MetricKind::confusion: {
      const long classes = s.k;
      const long pred = cols == 1 ? (p[0] > s.threshold ? 1 : 0) : argmax(p, cols);
      long truth;
      if (s.sparse) truth = label_index(t[0], classes);
      else if (cols == 1) truth = t[0] > 0.5f ? 1 : 0;
      else truth = argmax(t, cols);
      if (truth < 0 || truth >= classes || pred < 0 || pred >= classes) return;
      add(acc + truth * classes + pred, w);
      return;
    }
    case MetricKind::error_sums: {
      const Row v = make_row(p, cols, s.pre);
      double a = 0.0, q = 0.0;
      for (long j = 0; j < cols; ++j) {
        const double d = v[j] - double(t[j]);
        a += fabs(d);
        q += d * d;
      }
      add(acc, w * a);
      add(acc + 1, w * q);
      add(acc + 2, w * double(cols));
      return;
    }
    case MetricKind::auc: {
      const Row v = make_row(p, cols, s.pre);
      const long T1 = s.num_thresholds + 1;
      const long j0 = s.k >= 2 ? s.k - 2 : 0, j1 = s.k >= 2 ? j0 + 1 : cols;
      for (long j = j0; j < j1; ++j) {
        const int b = bucket(s.thresholds, s.num_thresholds, v[j]);
        const long base = s.k == 1 ? j * 2 * T1 : 0;
        add(acc + base + (t[j] != 0.f ? 0 : T1) + b, w);  // Keras casts the label to bool
      }
      return;
    }
    case MetricKind::top_k: {
      // in_top_k: fewer than k classes score strictly higher than the target's class
      const long target = s.sparse ? label_index(t[0], cols) : argmax(t, cols);
      double hit = 0.0;
      if (target >= 0) {
        const float score = p[target];
        long higher = 0;
        for (long j = 0; j < cols; ++j) higher += p[j] > score ? 1 : 0;
        hit = higher < s.k ? 1.0 : 0.0;
      }
      add(acc, w * hit);
      add(acc + 1, w);
      return;
    }
    case MetricKind::fbeta: {
      const Row v = make_row(p, cols, s.pre);
      const bool by_max = s.threshold != s.threshold;  // NaN: the row's maximum is the positive
      double mx = -INFINITY;
      if (by_max)
        for (long j = 0; j < cols; ++j) mx = fmax(mx, v[j]);
      for (long j = 0; j < cols; ++j) {
        const double pj = v[j], tj = t[j];
        const double pos = by_max ? ((pj >= mx && fabs(pj) > 1e-9) ? 1.0 : 0.0) : (pj > s.threshold ? 1.0 : 0.0);
        add(acc + j, w * pos * tj);
        add(acc + cols + j, w * pos * (1.0 - tj));
        add(acc + 2 * cols + j, w * (1.0 - pos) * tj);
        add(acc + 3 * cols + j, w * tj);
      }
      return;
    }
    case MetricKind::r2: {
      const Row v = make_row(p, cols, s.pre);
      for (long j = 0; j < cols; ++j) {
        const double tj = t[j], d = tj - v[j];
        add(acc + j, w * tj);
        add(acc + cols + j, w * tj * tj);
        add(acc + 2 * cols + j, w * d * d);
        add(acc + 3 * cols + j, w);
      }
      return;
    }
    case MetricKind::mape:
    case MetricKind::equal: {
      const Row v = make_row(p, cols, s.pre);
      double sum = 0.0;
      for (long j = 0; j < cols; ++j) {
        const double tj = t[j], pj = v[j];
        if (s.kind == MetricKind::mape) sum += 100.0 * fabs(tj - pj) / fmax(fabs(tj), kEps);
        else sum += (s.pre == MetricPre::none ? (t[j] == p[j]) : (tj == pj)) ? 1.0 : 0.0;
      }
      add(acc, w * (sum / double(cols)));
      add(acc + 1, w);
      return;
    }
  }
}

// How many accumulators kind needs for `cols` outputs (confusion: k classes; auc: T thresholds).
inline std::int64_t acc_size(MetricKind kind, long cols, int k, int num_thresholds) {
  switch (kind) {
    case MetricKind::confusion: return std::int64_t(k) * k;
    case MetricKind::error_sums: return 3;
    case MetricKind::auc: return 2 * (std::int64_t(num_thresholds) + 1) * (k == 1 ? cols : 1);
    case MetricKind::fbeta:
    case MetricKind::r2: return 4 * std::int64_t(cols);
    default: return 2;
  }
}

}  // namespace metric_math
}  // namespace fusednn
