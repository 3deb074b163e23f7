// The host-side pieces of the fast GPU training paths, bound for the Python
// dispatch and for CPU tests (nothing here needs a device):
//   persistent_plan(...)        the shared-memory plan and size rule (persistent_plan.h)
//   persistent_smem_limit()     the current device's opt-in shared memory per block (0 without one)
//   GraphCacheModel             the graph book's decisions (graph_cache.h) over integer handles
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <vector>

#include "fusednn/cuda_persistent.h"
#include "fusednn/graph_cache.h"
#include "fusednn/persistent_plan.h"

namespace py = pybind11;
using namespace fusednn;

namespace {

py::dict plan_dict(const persistent::Plan& p) {
  py::dict d;
  d["bytes"] = p.bytes;
  d["floats"] = p.floats;
  d["header_bytes"] = persistent::kHeaderBytes;
  d["threads"] = persistent::kThreads;
  d["max_layers"] = persistent::kMaxLayers;
  d["ldx"] = p.ldx;
  d["x"] = p.x;
  d["y"] = p.y;
  py::list layers;
  for (const persistent::LayerPlan& l : p.layers) {
    py::dict e;
    e["in"] = l.in;
    e["out"] = l.out;
    e["bias"] = l.bias;
    e["ldw"] = l.ldw;
    e["lda"] = l.lda;
    e["W"] = l.W;
    e["b"] = l.b;
    e["W_s1"] = l.W_s1;
    e["W_s2"] = l.W_s2;
    e["b_s1"] = l.b_s1;
    e["b_s2"] = l.b_s2;
    e["A"] = l.A;
    e["G"] = l.G;
    layers.append(e);
  }
  d["layers"] = layers;
  return d;
}

// The graph book (graph_cache.h) with integer "graphs": what StepGraphs decides per call.
class GraphCacheModel {
 public:
  GraphCacheModel(std::size_t capacity, std::size_t seen) : book_(capacity, seen) {
    book_.set_release([this](long v) { released_.push_back(v); });
  }
  // ("replay", graph), ("captured", graph, dropped) or ("direct",) for a key made of ints.
  py::tuple use(const std::vector<std::int64_t>& ints) {
    graphs::Key k;
    for (std::int64_t i : ints) k.words.push_back(std::uint64_t(i));
    long* hit = nullptr;
    switch (book_.decide(k, &hit)) {
      case graphs::Action::replay: return py::make_tuple("replay", *hit);
      case graphs::Action::direct: return py::make_tuple("direct");
      default: break;
    }
    const long v = next_++;
    const int dropped = book_.add(k, v);
    return py::make_tuple("captured", v, dropped);
  }
  std::vector<long> released() const { return released_; }
  std::size_t size() const { return book_.size(); }

 private:
  long next_ = 0;
  std::vector<long> released_;
  graphs::Book<long> book_;
};

}  // namespace

void register_persistent(py::module_& m) {
  m.def(
      "persistent_plan",
      [](const std::vector<int>& dims, const std::vector<bool>& bias, int states, int batch, int y_cols) {
        try {
          return plan_dict(persistent::make_plan(dims, bias, states, batch, y_cols));
        } catch (const std::invalid_argument& e) {
          throw py::value_error(e.what());
        }
      },
      py::arg("dims"), py::arg("bias"), py::arg("states"), py::arg("batch"), py::arg("y_cols"),
      "The persistent trainer's shared-memory plan for layer widths dims = [in, out_0, out_1, ...], "
      "per-layer bias flags, `states` optimizer arrays per parameter (Adam 2, SGD+momentum 1, SGD 0), "
      "the batch size and the target columns: {'bytes', 'floats', 'layers': [...], ...}.");
  m.def(
      "persistent_why_not",
      [](const std::vector<int>& dims, const std::vector<bool>& bias, int states, int batch, int y_cols,
         std::size_t smem_limit) {
        return persistent::why_not(persistent::make_plan(dims, bias, states, batch, y_cols), smem_limit);
      },
      py::arg("dims"), py::arg("bias"), py::arg("states"), py::arg("batch"), py::arg("y_cols"),
      py::arg("smem_limit"), "Why the plan cannot run with smem_limit bytes per block ('' when it can).");
  m.def("persistent_smem_limit", &cuda::persistent_smem_limit,
        "Opt-in shared memory per block of the current device, in bytes (0 without a device).");
  py::class_<GraphCacheModel>(m, "GraphCacheModel",
                              "The graph-launched trainer's cache policy over integer handles (for tests).")
      .def(py::init<std::size_t, std::size_t>(), py::arg("capacity") = graphs::kCapacity,
           py::arg("seen") = graphs::kSeen)
      .def("use", &GraphCacheModel::use, py::arg("key"))
      .def_property_readonly("released", &GraphCacheModel::released)
      .def("__len__", &GraphCacheModel::size);
  m.attr("GRAPH_CACHE_CAPACITY") = graphs::kCapacity;
  m.attr("GRAPH_SEEN_CAPACITY") = graphs::kSeen;
}
