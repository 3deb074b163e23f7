// The bookkeeping of the graph-launched trainer (cuda::StepGraphs), in plain
// C++ so the CPU tests can check it without a device (_cuda.GraphCacheModel).
//
// A captured range of steps bakes in every pointer and scalar its kernels were
// launched with, except the per-step optimizer scalars, which the kernels read
// from a device table. So a graph may be replayed exactly when its Key matches:
// the step range, batch and sample count, every data/scratch pointer, the loss
// and metric settings, the TF32 choice and the optimizer's constants (not its
// learning rate, which lives in the table).
//
// A capture (and its instantiation) costs far more than running the range once
// without a graph, so a range is captured only the second time its key is seen
// (Book::decide): a fit without per-batch callbacks runs epoch 1 directly,
// captures in epoch 2 and replays from epoch 3 on; the ~50 chunks an epoch of the
// progress bar are each captured once and replayed after; and ranges that never
// repeat before kSeen newer ones (one step at a time over a long epoch, for a
// per-batch callback) are never captured at all, so they cost what the per-op
// path costs instead of a capture each. kCapacity graphs are kept (LRU).
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <utility>
#include <vector>

namespace fusednn {
namespace graphs {

constexpr std::size_t kCapacity = 64;  // an epoch's ~50 progress-bar chunks and its tail
constexpr std::size_t kSeen = 256;     // keys remembered without a graph

struct Key {
  std::vector<std::uint64_t> words;
  bool operator==(const Key& o) const { return words == o.words; }
};

// Everything a capture bakes in, as words; `ptrs` are the device pointers, `ints`
// the sizes and flags, `floats` the bit patterns of float constants.
inline Key make_key(std::initializer_list<const void*> ptrs, std::initializer_list<std::int64_t> ints,
                    std::initializer_list<float> floats) {
  Key k;
  for (const void* p : ptrs) k.words.push_back(std::uint64_t(reinterpret_cast<std::uintptr_t>(p)));
  k.words.push_back(~0ull);  // separators: a shorter pointer list never equals a longer one
  for (std::int64_t i : ints) k.words.push_back(std::uint64_t(i));
  k.words.push_back(~0ull);
  for (float f : floats) {
    std::uint32_t b;
    static_assert(sizeof b == sizeof f, "float is 32 bits");
    std::memcpy(&b, &f, sizeof b);
    k.words.push_back(b);
  }
  return k;
}

// A small LRU map Key -> V that calls `release` on what it drops.
template <class V>
class Cache {
 public:
  explicit Cache(std::size_t capacity, std::function<void(V)> release = nullptr)
      : capacity_(capacity ? capacity : 1), release_(std::move(release)) {}
  Cache(const Cache&) = delete;
  Cache& operator=(const Cache&) = delete;
  ~Cache() { clear(); }

  void set_release(std::function<void(V)> release) { release_ = std::move(release); }

  // The value for k (now the most recently used), or null.
  V* find(const Key& k) {
    for (std::size_t i = 0; i < items_.size(); ++i)
      if (items_[i].first == k) {
        std::pair<Key, V> hit = std::move(items_[i]);
        items_.erase(items_.begin() + long(i));
        items_.push_back(std::move(hit));
        return &items_.back().second;
      }
    return nullptr;
  }
  // Insert (k, v) as the most recently used, dropping the least recently used
  // entry when full; returns how many entries were dropped (0 or 1).
  int insert(Key k, V v) {
    int dropped = 0;
    if (items_.size() >= capacity_) {
      if (release_) release_(items_.front().second);
      items_.erase(items_.begin());
      dropped = 1;
    }
    items_.emplace_back(std::move(k), v);
    return dropped;
  }
  void clear() {
    if (release_)
      for (auto& kv : items_) release_(kv.second);
    items_.clear();
  }
  std::size_t size() const { return items_.size(); }
  std::size_t capacity() const { return capacity_; }

 private:
  std::size_t capacity_;
  std::function<void(V)> release_;
  std::vector<std::pair<Key, V>> items_;  // least recently used first
};

enum class Action { replay, capture, direct };

// The decision for each call: replay a cached graph, capture one (a key seen
// before), or run directly (a key seen for the first time).
template <class V>
class Book {
 public:
  explicit Book(std::size_t capacity = kCapacity, std::size_t seen = kSeen) : graphs_(capacity), seen_(seen) {}
  void set_release(std::function<void(V)> release) { graphs_.set_release(std::move(release)); }
  // *hit is the graph to replay when the answer is Action::replay.
  Action decide(const Key& k, V** hit) {
    *hit = graphs_.find(k);
    if (*hit) return Action::replay;
    if (seen_.find(k)) return Action::capture;
    seen_.insert(k, 0);
    return Action::direct;
  }
  // Keep a captured graph; returns how many were dropped to make room (0 or 1).
  int add(Key k, V v) { return graphs_.insert(std::move(k), v); }
  void clear() { graphs_.clear(); }
  std::size_t size() const { return graphs_.size(); }

 private:
  Cache<V> graphs_;
  Cache<char> seen_;
};

}  // namespace graphs
}  // namespace fusednn
