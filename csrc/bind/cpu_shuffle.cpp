// _cpu.legacy_permutations: k successive numpy.random.RandomState.permutation calls on
// an index array, drawn from that RandomState's own generator. scikit-learn's MLP
// shuffles its samples once per epoch with the legacy RandomState, and fusednn's
// estimators must draw the same orders; numpy's per-call overhead and its Python loop
// were 14 % of a diabetes fit (200 epochs of 331 rows).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <cstring>
#include <optional>

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

// numpy's MT19937 (numpy/random/src/mt19937): its state struct, and the generator
// inlined: the 624-word twist in two loops of independent words (vectorised), and the
// tempering of a whole block after it (vectorised too) instead of once per draw. The
// state (key, pos) stays numpy's: `out` only caches the tempered key.
struct MtState {
  std::uint32_t key[624];
  int pos;
};

struct Mt {
  MtState st;
  std::uint32_t out[624];  // out[i]: the draw at position i of the current key
  explicit Mt(const MtState& s) : st(s) { temper(); }
  void temper() {
    for (int i = 0; i < 624; ++i) {
      std::uint32_t y = st.key[i];
      y ^= y >> 11;
      y ^= (y << 7) & 0x9d2c5680U;
      y ^= (y << 15) & 0xefc60000U;
      y ^= y >> 18;
      out[i] = y;
    }
  }
  void twist() {
    constexpr int N = 624, M = 397;
    constexpr std::uint32_t A = 0x9908b0dfU, UP = 0x80000000U, LO = 0x7fffffffU;
    std::uint32_t* k = st.key;
    // key[i] from the old key[i + 1] and key[i + M] (i < N - M), then from the new key[i + M - N]
    for (int i = 0; i < N - M; ++i) {
      const std::uint32_t y = (k[i] & UP) | (k[i + 1] & LO);
      k[i] = k[i + M] ^ (y >> 1) ^ (-(y & 1U) & A);
    }
    for (int i = N - M; i < N - 1; ++i) {
      const std::uint32_t y = (k[i] & UP) | (k[i + 1] & LO);
      k[i] = k[i + M - N] ^ (y >> 1) ^ (-(y & 1U) & A);
    }
    const std::uint32_t y = (k[N - 1] & UP) | (k[0] & LO);
    k[N - 1] = k[M - 1] ^ (y >> 1) ^ (-(y & 1U) & A);
    st.pos = 0;
    temper();
  }
  std::uint32_t next() {
    if (st.pos == 624) twist();
    return out[st.pos++];
  }
};

// Whether `g` is numpy's MT19937 with the state layout above: its next draw, taken by
// numpy, equals ours from a copy of the state (which is then put back as it was).
bool is_numpy_mt19937(BitGen* g) {
  auto* st = static_cast<MtState*>(g->state);
  if (st->pos < 0 || st->pos > 624) return false;
  Mt ours(*st);
  const MtState saved = *st;
  const std::uint32_t theirs = g->next_uint32(g->state);
  const bool same = ours.next() == theirs && st->pos == ours.st.pos;
  *st = saved;
  return same;
}

// random_interval(i) for every i from n - 1 down to 1 (max <= 2^32 - 1: 32-bit draws),
// each swapping element i with the drawn j
template <class Draw>
void shuffle(std::int64_t* o, std::int64_t n, Draw&& draw32) {
  std::uint32_t mask = 1;  // the smallest 2^k - 1 >= i, halved as i falls
  while (mask < std::uint32_t(n - 1)) mask = mask * 2 + 1;
  for (std::int64_t i = n - 1; i >= 1; --i) {
    if ((mask >> 1) >= std::uint32_t(i)) mask >>= 1;
    std::uint32_t j;
    while ((j = draw32() & mask) > std::uint32_t(i)) {
    }
    const std::int64_t t = o[j];
    o[j] = o[i];
    o[i] = t;
  }
}

}  // namespace

void register_shuffle(py::module_& m) {
  m.def(
      "legacy_permutations",
      [](const py::capsule& bitgen, const py::array_t<std::int64_t, py::array::c_style>& order, int epochs,
         bool mt19937) {
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
        // uniform j in [0, i]; each epoch shuffles a copy of the previous order. numpy's
        // MT19937 is inlined where the caller says the generator is one and its first
        // draw confirms it (the same draws, and the same state after them).
        const bool mt = mt19937 && n > 1 && n <= 0xffffffffLL && epochs > 0 && is_numpy_mt19937(g);
        std::optional<Mt> local;
        if (mt) local.emplace(*static_cast<MtState*>(g->state));
        for (int e = 0; e < epochs; ++e, prev = o, o += n) {
          std::memcpy(o, prev, sizeof(std::int64_t) * std::size_t(n));
          if (mt) {
            shuffle(o, n, [&local] { return local->next(); });
            continue;
          }
          for (py::ssize_t i = n - 1; i >= 1; --i) {
            const auto j = py::ssize_t(random_interval(g, std::uint64_t(i)));
            const std::int64_t t = o[j];
            o[j] = o[i];
            o[i] = t;
          }
        }
        if (mt) *static_cast<MtState*>(g->state) = local->st;
        return out;
      },
      py::arg("bitgen"), py::arg("order"), py::arg("epochs"), py::kw_only(), py::arg("mt19937") = false,
      "Row e: the order after e + 1 calls of RandomState.permutation, each on the previous result, "
      "drawn from the generator behind `bitgen` (a BitGenerator's capsule; hold its lock). mt19937=True: "
      "the capsule is numpy.random.MT19937's (its generator is then inlined).");
}
