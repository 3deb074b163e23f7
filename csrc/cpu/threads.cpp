// The CPU kernels' thread pool.
//
// Why not OpenMP: a static OpenMP team makes the caller wait at the closing
// barrier for every team thread, including one the OS has not scheduled yet.
// Right after a NumPy BLAS call, OpenBLAS's idle workers busy-spin on the
// cores for a while, and a 256^3 product then took 8 ms instead of 0.15 ms
// (measured on the 2-core dev machine). Here the work is split into chunks
// that threads claim from a shared ticket; the calling thread claims chunks
// too and only waits for chunks that a worker has actually started, so a
// late worker costs at most the parallel speed-up, never a time slice.
//
// The ticket packs (generation, chunk count, next chunk) into one 64-bit
// atomic. A worker reads the job's function and context after loading a
// ticket and runs a chunk only if its compare-exchange on that same ticket
// succeeds, which proves the job is still open, so it can never pair a chunk
// index with another job's function.
#include <pthread.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

#include "fusednn/cpu.h"
#include "threads.h"
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define FUSEDNN_PAUSE() _mm_pause()
#else
#define FUSEDNN_PAUSE() ((void)0)
#endif

namespace fusednn {
namespace cpu {

namespace {

constexpr int kChunkBits = 20;
constexpr std::uint64_t kChunkMask = (std::uint64_t(1) << kChunkBits) - 1;
// Workers spin this long for the next job before sleeping: long enough to
// bridge the gaps between kernel calls of a training loop, short enough not
// to hold a core that NumPy or another process wants.
constexpr auto kSpin = std::chrono::microseconds(200);

inline std::uint64_t make_ticket(std::uint64_t gen, std::uint64_t n, std::uint64_t next) {
  return (gen << (2 * kChunkBits)) | (n << kChunkBits) | next;
}
inline std::uint64_t gen_of(std::uint64_t t) { return t >> (2 * kChunkBits); }
inline std::uint64_t n_of(std::uint64_t t) { return (t >> kChunkBits) & kChunkMask; }
inline std::uint64_t next_of(std::uint64_t t) { return t & kChunkMask; }

class Pool {
 public:
  explicit Pool(int workers) {
    for (int i = 0; i < workers; ++i) threads_.push_back(new std::thread([this] { worker(); }));
  }
  ~Pool() {
    stop_.store(true);
    wake();
    for (std::thread* t : threads_) {
      t->join();
      delete t;
    }
  }
  // After fork() the worker threads do not exist in the child: forget them
  // without joining (joining or destroying them would hang or abort).
  void abandon() {
    for (std::thread* t : threads_) t->detach();
    threads_.clear();
  }
  int size() const { return int(threads_.size()) + 1; }

  void run(int nchunks, ChunkFn fn, void* ctx) {
    fn_.store(fn, std::memory_order_relaxed);
    ctx_.store(ctx, std::memory_order_relaxed);
    done_.store(0, std::memory_order_relaxed);
    const std::uint64_t gen = gen_of(ticket_.load(std::memory_order_relaxed)) + 1;
    ticket_.store(make_ticket(gen, std::uint64_t(nchunks), 0), std::memory_order_seq_cst);
    if (sleepers_.load(std::memory_order_seq_cst) > 0) wake();
    work(gen, fn, ctx);
    while (done_.load(std::memory_order_acquire) < nchunks) FUSEDNN_PAUSE();
  }

 private:
  // Claim and run chunks of job `gen` until none is left.
  void work(std::uint64_t gen, ChunkFn fn, void* ctx) {
    std::uint64_t t = ticket_.load(std::memory_order_acquire);
    while (gen_of(t) == gen && next_of(t) < n_of(t)) {
      if (ticket_.compare_exchange_weak(t, t + 1, std::memory_order_acq_rel)) {
        fn(ctx, int(next_of(t)));
        done_.fetch_add(1, std::memory_order_release);
        t = ticket_.load(std::memory_order_acquire);
      }
    }
  }

  void wake() {
    { std::lock_guard<std::mutex> lk(m_); }
    cv_.notify_all();
  }

  void worker() {
    // Jobs start at generation 1: a worker that starts after the pool's first job
    // was published still helps with it.
    std::uint64_t seen = 0;
    while (!stop_.load(std::memory_order_relaxed)) {
      std::uint64_t t = ticket_.load(std::memory_order_acquire);
      if (gen_of(t) == seen) {
        const auto until = std::chrono::steady_clock::now() + kSpin;
        int spins = 0;
        while (gen_of(t = ticket_.load(std::memory_order_acquire)) == seen && !stop_.load()) {
          FUSEDNN_PAUSE();
          if (++spins % 256 == 0 && std::chrono::steady_clock::now() > until) {
            std::unique_lock<std::mutex> lk(m_);
            sleepers_.fetch_add(1, std::memory_order_seq_cst);
            cv_.wait(lk, [&] { return gen_of(ticket_.load(std::memory_order_seq_cst)) != seen || stop_.load(); });
            sleepers_.fetch_sub(1);
          }
        }
        if (stop_.load()) return;
      }
      seen = gen_of(t);
      // The function and context are only used if a claim on a ticket of
      // generation `seen` succeeds, which proves they belong to that job.
      work(seen, fn_.load(std::memory_order_relaxed), ctx_.load(std::memory_order_relaxed));
    }
  }

  std::vector<std::thread*> threads_;
  std::atomic<std::uint64_t> ticket_{0};
  std::atomic<ChunkFn> fn_{nullptr};
  std::atomic<void*> ctx_{nullptr};
  std::atomic<int> done_{0};
  std::atomic<int> sleepers_{0};
  std::atomic<bool> stop_{false};
  std::mutex m_;
  std::condition_variable cv_;
};

// hardware_concurrency() reads /sys on every call (~5 us): ask once.
int default_threads() {
  static const int n = [] {
    const unsigned hw = std::thread::hardware_concurrency();
    return hw ? int(hw) : 1;
  }();
  return n;
}

std::mutex g_pool_mutex;  // one parallel job at a time; also guards g_pool
// Set while this thread holds g_pool_mutex for a job: a kernel that a chunk of the job
// calls (a fused trainer's replica, csrc/cpu/train_replicas.cpp) runs on this thread
// without try_lock on a mutex the thread itself holds.
thread_local bool t_holds_pool = false;
Pool* g_pool = nullptr;
std::atomic<int> g_threads{0};

void forget_pool_in_child() {
  // The child of a fork has only the forking thread; the mutex may have been
  // held by another thread at fork time, so re-create it in place.
  new (&g_pool_mutex) std::mutex();
  if (g_pool) {
    g_pool->abandon();
    g_pool = nullptr;
  }
}

}  // namespace

int num_threads() {
  int n = g_threads.load(std::memory_order_relaxed);
  return n > 0 ? n : default_threads();
}

void set_num_threads(int n) {
  g_threads.store(n < 1 ? 1 : n);
}

void parallel_run(int nchunks, ChunkFn fn, void* ctx) {
  const int nt = num_threads();
  if (nchunks <= 1 || nt <= 1 || t_holds_pool) {
    for (int c = 0; c < nchunks; ++c) fn(ctx, c);
    return;
  }
  // A kernel called from inside a parallel job (or from a second Python
  // thread while one runs) simply runs on its own thread.
  std::unique_lock<std::mutex> lk(g_pool_mutex, std::try_to_lock);
  if (!lk.owns_lock()) {
    for (int c = 0; c < nchunks; ++c) fn(ctx, c);
    return;
  }
  static const bool registered = [] {
    pthread_atfork(nullptr, nullptr, forget_pool_in_child);
    return true;
  }();
  (void)registered;
  if (!g_pool || g_pool->size() != nt) {
    delete g_pool;
    g_pool = new Pool(nt - 1);
  }
  struct Holding {
    Holding() { t_holds_pool = true; }
    ~Holding() { t_holds_pool = false; }
  } holding;
  g_pool->run(nchunks, fn, ctx);
}

}  // namespace cpu
}  // namespace fusednn
