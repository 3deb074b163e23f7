// The Keras metric objects of the fused trainer and of the `metric_update` op
// (fusednn/metric_math.h), read from Python dicts, shared by the _cpu and _cuda
// bindings:
//   {"kind": int (MetricKind), "pre": int (MetricPre), "acc": float64 1-D accumulators,
//    "k": int, "threshold": float, "thresholds": float64 1-D ascending or None, "sparse": bool}
// The array checks differ by device, so each binding passes `f64(handle, name, writeable)`
// -> std::pair<double*, size_t entries> (a C-contiguous float64 array on its device, kept
// alive by the caller).
#pragma once
#include <pybind11/pybind11.h>

#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "fusednn/metric_math.h"

namespace fusednn {
namespace bind_common {

namespace py = pybind11;

// One spec for outputs of `cols` columns and targets of `t_cols` columns. `host_thresholds`
// reads the thresholds for the ascending check (the CUDA binding copies them to the host).
template <class F64, class HostThresholds>
MetricSpec to_metric_spec(const py::dict& d, long cols, long t_cols, const std::string& where, F64&& f64,
                          HostThresholds&& host_thresholds) {
  MetricSpec s;
  const int kind = d["kind"].cast<int>(), pre = d.contains("pre") ? d["pre"].cast<int>() : 0;
  if (kind < 0 || kind >= kMetricKinds)
    throw py::value_error(where + "unknown metric kind " + std::to_string(kind));
  if (pre < 0 || pre > 2) throw py::value_error(where + "unknown metric pre-activation " + std::to_string(pre));
  s.kind = static_cast<MetricKind>(kind);
  s.pre = static_cast<MetricPre>(pre);
  s.k = d.contains("k") ? d["k"].cast<int>() : 0;
  s.threshold = d.contains("threshold") && !d["threshold"].is_none() ? d["threshold"].cast<float>() : NAN;
  s.sparse = d.contains("sparse") && d["sparse"].cast<bool>();
  if (s.sparse && s.kind != MetricKind::confusion && s.kind != MetricKind::top_k)
    throw py::value_error(where + "only the confusion and top_k metrics take sparse (class index) targets");
  if (s.sparse ? t_cols != 1 : t_cols != cols)
    throw py::value_error(where + "targets have " + std::to_string(t_cols) + " columns for " +
                          std::to_string(cols) + " outputs" + (s.sparse ? " (sparse: 1 expected)" : ""));
  if (s.kind == MetricKind::confusion) {
    if (s.k < 2 || (cols != 1 && cols != s.k))
      throw py::value_error(where + "confusion needs k >= 2 classes and 1 or k outputs");
    if (std::isnan(s.threshold)) s.threshold = 0.5f;
  }
  if (s.kind == MetricKind::top_k && s.k < 1) throw py::value_error(where + "top_k needs k >= 1");
  if (s.kind == MetricKind::auc) {
    if (s.k < 0 || (s.k >= 2 && s.k - 2 >= cols))
      throw py::value_error(where + "auc k must be 0 (pooled), 1 (per output) or 2 + an output index < " +
                            std::to_string(cols));
    if (!d.contains("thresholds") || d["thresholds"].is_none())
      throw py::value_error(where + "auc needs its thresholds");
    auto th = f64(d["thresholds"], where + "thresholds", false);
    if (th.second < 1) throw py::value_error(where + "auc needs at least one threshold");
    const std::vector<double> h = host_thresholds(th);
    for (std::size_t i = 1; i < h.size(); ++i)
      if (!(h[i - 1] <= h[i])) throw py::value_error(where + "auc thresholds must be ascending and not NaN");
    s.thresholds = th.first;
    s.num_thresholds = int(th.second);
  }
  auto acc = f64(d["acc"], where + "acc", true);
  const std::int64_t want = metric_math::acc_size(s.kind, cols, s.k, s.num_thresholds);
  if (std::int64_t(acc.second) != want)
    throw py::value_error(where + "acc has " + std::to_string(acc.second) + " entries, expected " +
                          std::to_string(want));
  s.acc = acc.first;
  return s;
}

template <class F64, class HostThresholds>
std::vector<MetricSpec> to_metric_specs(const py::object& specs, long cols, long t_cols, F64&& f64,
                                        HostThresholds&& host_thresholds) {
  std::vector<MetricSpec> out;
  if (specs.is_none()) return out;
  const py::list l = specs.cast<py::list>();
  for (py::size_t i = 0; i < l.size(); ++i)
    out.push_back(to_metric_spec(l[i].cast<py::dict>(), cols, t_cols, "metric " + std::to_string(i) + " ", f64,
                                 host_thresholds));
  return out;
}

}  // namespace bind_common
}  // namespace fusednn
