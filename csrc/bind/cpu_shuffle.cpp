// _cpu.legacy_permutations: k successive numpy.random.RandomState.permutation calls on
// an index array, drawn from that RandomState's own generator. scikit-learn's MLP
// shuffles its samples once per epoch with the legacy RandomState, and fusednn's
// estimators must draw the same orders; numpy's per-call overhead and its Python loop
// were 14 % of a diabetes fit (200 epochs of 331 rows).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <cstring>

namespace py = pybind11;

namespace {

// numpy's bitgen_t (numpy/random/bitgen.h, a stable C API): the generator behind a
// BitGenerator's "BitGenerator" capsule.
struct BitGen {
  void* state;
  std::uint64_t (*next_uint64)(void*);
  std::uint32_t (*next_uint32)(void*);
  double (*next_double)(void*);
  std::uint64_t (*next_raw)(void*);
};

// numpy's random_interval (distributions.c): uniform on [0, max] by masked rejection.
std::uint64_t random_interval(BitGen* g, std::uint64_t max) {
  if (max == 0) return 0;
  std::uint64_t mask = max;
  for (int s = 1; s <= 32; s *= 2) mask |= mask >> s;
  std::uint64_t v;
  if (max <= 0xffffffffULL) {
    while ((v = (g->next_uint32(g->state) & mask)) > max) {
    }
  } else {
    while ((v = (g->next_uint64(g->state) & mask)) > max) {
    }
  }
  return v;
}

}  // namespace

void register_shuffle(py::module_& m) {
  m.def(
      "legacy_permutations",
      [](const py::capsule& bitgen, const py::array_t<std::int64_t, py::array::c_style>& order, int epochs) {
        if (std::strcmp(bitgen.name(), "BitGenerator") != 0)
          throw py::type_error("expected a numpy BitGenerator capsule");
        if (order.ndim() != 1) throw py::value_error("order must be 1-D");
        if (epochs < 0) throw py::value_error("epochs must be >= 0");
        BitGen* g = bitgen.get_pointer<BitGen>();
        const py::ssize_t n = order.shape(0);
        py::array_t<std::int64_t> out({py::ssize_t(epochs), n});
        std::int64_t* o = out.mutable_data();
        const std::int64_t* prev = order.data();
        // RandomState.shuffle of a 1-D array: from the end, swap element i with a
        // uniform j in [0, i]; each epoch shuffles a copy of the previous order
        for (int e = 0; e < epochs; ++e, prev = o, o += n) {
          std::memcpy(o, prev, sizeof(std::int64_t) * std::size_t(n));
          for (py::ssize_t i = n - 1; i >= 1; --i) {
            const auto j = py::ssize_t(random_interval(g, std::uint64_t(i)));
            const std::int64_t t = o[j];
            o[j] = o[i];
            o[i] = t;
          }
        }
        return out;
      },
      py::arg("bitgen"), py::arg("order"), py::arg("epochs"),
      "Row e: the order after e + 1 calls of RandomState.permutation, each on the previous result, "
      "drawn from the generator behind `bitgen` (a BitGenerator's capsule; hold its lock).");
}
