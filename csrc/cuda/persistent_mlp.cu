// The persistent MLP trainer: one thread block runs a whole range of optimizer
// steps (an epoch, usually) of a small all-Dense model in one launch. The
// parameters, their optimizer state and the batch's activations live in shared
// memory (the layout and the size rule are fusednn/persistent_plan.h); each
// step gathers its batch by the epoch's permutation from global memory, runs
// the forward pass, the loss and its gradient, the metric counts, the backward
// pass and the Adam/SGD update, with a barrier between dependent phases and no
// launch in between. At the end the parameters and states go back to global
// memory (and the last step's gradients to dW/db), so the model's arrays are
// exactly as after the per-op trainer.
//
// The arithmetic follows the per-op kernels (same loss, activation and
// optimizer formulas, losses and metric sums in double) but the dot products
// add in a different order (register tiles, not the GEMM's), so results match
// the per-op path within float32 rounding rather than bit for bit.
//
// Products run on register tiles: a thread owns RM x RN outputs spaced M/RM rows
// and N/RN columns apart, so the lanes of a warp read consecutive (or, for the
// transposed operand, odd-pitch: different-bank) shared-memory words and
// broadcast the other operand. The tile shrinks when a product is too small to
// keep half the block busy.
#include <climits>
#include <stdexcept>
#include <string>

#include "activation.cuh"
#include "fusednn/cuda.h"
#include "fusednn/cuda_persistent.h"
#include "fusednn/persistent_plan.h"

namespace fusednn {
namespace cuda {

namespace {

namespace pp = fusednn::persistent;
constexpr int kThreads = pp::kThreads;
constexpr int kWarps = pp::kWarps;

struct PLayer {
  int in, out, act, ldw, lda;
  int W, b, W_s1, W_s2, b_s1, b_s2, A, G;  // shared-memory float offsets, -1 absent
  float *gW, *gb, *gdW, *gdb, *gWs1, *gWs2, *gbs1, *gbs2;  // global
};

struct PArgs {
  int L;
  PLayer layer[pp::kMaxLayers];
  const float* x;
  const float* y;
  const std::int64_t* order;
  std::int64_t n;
  int d_in, y_cols, ldx, ox, oy, batch;
  std::int64_t step0, step1, iterations;
  int loss;  // LossKind
  int opt;   // OptKind
  const float* rows;  // the run's step_params rows on the device, kOptParams floats per step
  bool nesterov;
  float* step_losses;
  double* counts;
  int classes;
  bool sparse;
  float threshold;
  double* err_sums;
};

__device__ __forceinline__ float act_bwd_rt(float dy, float y, int a) {
  switch (Act(a)) {
    case Act::relu: return detail::act_bwd<Act::relu>(dy, y);
    case Act::sigmoid: return detail::act_bwd<Act::sigmoid>(dy, y);
    case Act::tanh: return detail::act_bwd<Act::tanh>(dy, y);
    default: return dy;
  }
}

// C(m, n) = sum_k X(m, k) Y(k, n) for m < M, n < N with X(m, k) = X[m*xsm + k*xsk]
// and Y(k, n) = Y[k*ysk + n*ysn]; epi(m, n, value) stores each result.
template <int RM, int RN, class Epi>
__device__ __forceinline__ void product_tile(int M, int N, int K, const float* X, int xsm, int xsk,
                                             const float* Y, int ysk, int ysn, const Epi& epi) {
  const int MG = (M + RM - 1) / RM, NG = (N + RN - 1) / RN;
  const int items = MG * NG;
  for (int o = threadIdx.x; o < items; o += kThreads) {
    const int h = o / NG, g = o - (o / NG) * NG;
    const float* xp[RM];
    const float* yp[RN];
#pragma unroll
    for (int i = 0; i < RM; ++i) {
      const int m = h + i * MG;
      xp[i] = X + (m < M ? m : 0) * xsm;
    }
#pragma unroll
    for (int j = 0; j < RN; ++j) {
      const int nn = g + j * NG;
      yp[j] = Y + (nn < N ? nn : 0) * ysn;
    }
    float acc[RM][RN];
#pragma unroll
    for (int i = 0; i < RM; ++i)
#pragma unroll
      for (int j = 0; j < RN; ++j) acc[i][j] = 0.f;
#pragma unroll 4
    for (int k = 0; k < K; ++k) {
      float a[RM], b[RN];
#pragma unroll
      for (int i = 0; i < RM; ++i) a[i] = xp[i][k * xsk];
#pragma unroll
      for (int j = 0; j < RN; ++j) b[j] = yp[j][k * ysk];
#pragma unroll
      for (int i = 0; i < RM; ++i)
#pragma unroll
        for (int j = 0; j < RN; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
#pragma unroll
    for (int i = 0; i < RM; ++i) {
      const int m = h + i * MG;
      if (m >= M) continue;
#pragma unroll
      for (int j = 0; j < RN; ++j) {
        const int nn = g + j * NG;
        if (nn < N) epi(m, nn, acc[i][j]);
      }
    }
  }
}

// The largest tile that still gives half the block an item of work.
template <class Epi>
__device__ __forceinline__ void product(int M, int N, int K, const float* X, int xsm, int xsk, const float* Y,
                                        int ysk, int ysn, const Epi& epi) {
  auto items = [&](int rm, int rn) { return ((M + rm - 1) / rm) * ((N + rn - 1) / rn); };
  if (items(4, 4) >= kThreads / 2) product_tile<4, 4>(M, N, K, X, xsm, xsk, Y, ysk, ysn, epi);
  else if (items(2, 4) >= kThreads / 2) product_tile<2, 4>(M, N, K, X, xsm, xsk, Y, ysk, ysn, epi);
  else if (items(2, 2) >= kThreads / 2) product_tile<2, 2>(M, N, K, X, xsm, xsk, Y, ysk, ysn, epi);
  else product_tile<1, 1>(M, N, K, X, xsm, xsk, Y, ysk, ysn, epi);
}

// The optimizer step of one parameter, the formulas of optim.cu.
struct Update {
  int opt;
  float lr, mu, alpha, c1, c2, eps;
  bool nesterov;
  __device__ __forceinline__ void operator()(float& w, float g, float* s1, float* s2) const {
    if (opt == int(OptKind::adam)) {
      const float m = __fadd_rn(*s1, __fmul_rn(__fsub_rn(g, *s1), c1));
      const float v = __fadd_rn(*s2, __fmul_rn(__fsub_rn(__fmul_rn(g, g), *s2), c2));
      *s1 = m;
      *s2 = v;
      w = __fsub_rn(w, __fdiv_rn(__fmul_rn(m, alpha), __fadd_rn(__fsqrt_rn(v), eps)));
    } else if (s1 == nullptr) {
      w = __fsub_rn(w, __fmul_rn(lr, g));
    } else {
      const float vi = __fsub_rn(__fmul_rn(mu, *s1), __fmul_rn(lr, g));
      *s1 = vi;
      w = nesterov ? __fadd_rn(w, __fsub_rn(__fmul_rn(mu, vi), __fmul_rn(lr, g))) : __fadd_rn(w, vi);
    }
  }
};

__device__ __forceinline__ double warp_sum(double v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  return v;
}

// Copy a layer's parameters (or their states) between global in x out rows and
// the padded shared layout.
__device__ void copy_matrix(float* s, float* g, int rows, int cols, int ld, bool to_shared) {
  const int total = rows * cols;
  for (int e = threadIdx.x; e < total; e += kThreads) {
    const int r = e / cols, c = e - (e / cols) * cols;
    if (to_shared) s[r * ld + c] = g[e];
    else g[e] = s[r * ld + c];
  }
}

__device__ void copy_layer_state(float* sm, const PLayer& l, bool to_shared) {
  copy_matrix(sm + l.W, l.gW, l.in, l.out, l.ldw, to_shared);
  if (l.W_s1 >= 0) copy_matrix(sm + l.W_s1, l.gWs1, l.in, l.out, l.ldw, to_shared);
  if (l.W_s2 >= 0) copy_matrix(sm + l.W_s2, l.gWs2, l.in, l.out, l.ldw, to_shared);
  if (l.b >= 0) copy_matrix(sm + l.b, l.gb, 1, l.out, l.out, to_shared);
  if (l.b_s1 >= 0) copy_matrix(sm + l.b_s1, l.gbs1, 1, l.out, l.out, to_shared);
  if (l.b_s2 >= 0) copy_matrix(sm + l.b_s2, l.gbs2, 1, l.out, l.out, to_shared);
}

__global__ void __launch_bounds__(kThreads, 1) persistent_mlp_kernel(const __grid_constant__ PArgs p) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  double* red = reinterpret_cast<double*>(smem_raw);                 // [3][kWarps]
  float* sm = reinterpret_cast<float*>(smem_raw + pp::kHeaderBytes);
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  const int L = p.L;
  const PLayer& last = p.layer[L - 1];
  const int d_out = last.out;

  for (int l = 0; l < L; ++l) copy_layer_state(sm, p.layer[l], true);

  for (std::int64_t s = p.step0; s < p.step1; ++s) {
    const std::int64_t lo = s * p.batch;
    const int B = int(p.n - lo < p.batch ? p.n - lo : p.batch);
    const bool final_step = s + 1 == p.step1;
    // ---- gather the batch; thread 0 also works out this step's Adam step size
    float* xs = sm + p.ox;
    float* ys = sm + p.oy;
    for (int e = tid; e < B * p.d_in; e += kThreads) {
      const int r = e / p.d_in, c = e - (e / p.d_in) * p.d_in;
      const std::int64_t k = p.order[lo + r];
      xs[r * p.ldx + c] = k >= 0 && k < p.n ? p.x[k * p.d_in + c] : __int_as_float(0x7fc00000);
    }
    for (int e = tid; e < B * p.y_cols; e += kThreads) {
      const int r = e / p.y_cols, c = e - (e / p.y_cols) * p.y_cols;
      const std::int64_t k = p.order[lo + r];
      ys[e] = k >= 0 && k < p.n ? p.y[k * p.y_cols + c] : __int_as_float(0x7fc00000);
    }
    __syncthreads();

    // ---- forward: A_l = act(A_{l-1} W_l + b_l)
    for (int l = 0; l < L; ++l) {
      const PLayer& ly = p.layer[l];
      const float* ain = l ? sm + p.layer[l - 1].A : xs;
      const int ldin = l ? p.layer[l - 1].lda : p.ldx;
      float* A = sm + ly.A;
      const float* bias = ly.b >= 0 ? sm + ly.b : nullptr;
      const int lda = ly.lda, act = ly.act;
      product(B, ly.out, ly.in, ain, ldin, 1, sm + ly.W, ly.ldw, 1, [&](int r, int c, float v) {
        A[r * lda + c] = detail::act_fwd_rt(bias ? v + bias[c] : v, Act(act));
      });
      __syncthreads();
    }

    // ---- loss, its gradient w.r.t. the last output (times act'), metric sums
    {
      const float* Z = sm + last.A;
      float* G = sm + last.G;
      const int ld = last.lda;
      const std::int64_t count = std::int64_t(B) * d_out;
      double lacc = 0.0, eabs = 0.0, esq = 0.0;
      if (p.loss == int(LossKind::mse) || p.loss == int(LossKind::xent_binary)) {
        const bool mse = p.loss == int(LossKind::mse);
        const float scale = mse ? 2.0f / float(count) : 1.0f / float(count);
        for (int e = tid; e < B * d_out; e += kThreads) {
          const int r = e / d_out, c = e - (e / d_out) * d_out;
          const float z = Z[r * ld + c], t = ys[e];
          float g;
          if (mse) {
            const double d = double(z) - double(t);
            lacc = fma(d, d, lacc);
            g = __fmul_rn(scale, __fsub_rn(z, t));
          } else {
            const double zd = z;
            lacc += (zd > 0.0 ? zd : 0.0) - zd * double(t) + log1p(exp(-fabs(zd)));
            g = __fmul_rn(scale, __fsub_rn(detail::sigmoid1(z), t));
          }
          G[r * ld + c] = act_bwd_rt(g, z, last.act);
        }
      } else {
        const bool sparse = p.loss == int(LossKind::xent_sparse);
        const float scale = 1.0f / float(B);
        for (int r = tid; r < B; r += kThreads) {
          const float* zr = Z + r * ld;
          float* gr = G + r * ld;
          float mx = -INFINITY;
          for (int c = 0; c < d_out; ++c) mx = fmaxf(mx, zr[c]);
          double sum = 0.0;
          for (int c = 0; c < d_out; ++c) sum += exp(double(__fsub_rn(zr[c], mx)));
          const double lse = double(mx) + log(sum);
          if (sparse) {
            const float label = ys[r];
            const bool ok = label >= 0.f && label < float(d_out) && label == truncf(label);
            const int k = ok ? int(label) : 0;
            lacc += ok ? lse - double(zr[k]) : double(NAN);
            for (int c = 0; c < d_out; ++c)
              gr[c] = ok ? __fmul_rn(scale, __fsub_rn(float(exp(double(zr[c]) - lse)), c == k ? 1.f : 0.f)) : 0.f;
          } else {
            const float* tr = ys + r * d_out;
            for (int c = 0; c < d_out; ++c) {
              lacc += double(tr[c]) * (lse - double(zr[c]));
              gr[c] = __fmul_rn(scale, __fsub_rn(float(exp(double(zr[c]) - lse)), tr[c]));
            }
          }
        }
      }
      if (p.err_sums)
        for (int e = tid; e < B * d_out; e += kThreads) {
          const int r = e / d_out, c = e - (e / d_out) * d_out;
          const double d = double(Z[r * ld + c]) - double(ys[e]);
          eabs += fabs(d);
          esq = fma(d, d, esq);
        }
      if (p.counts)  // one thread per row: the first maximum, as confusion_update
        for (int r = tid; r < B; r += kThreads) {
          const float* zr = Z + r * ld;
          long long pred;
          if (d_out == 1) {
            pred = zr[0] > p.threshold ? 1 : 0;
          } else {
            pred = 0;
            float best = zr[0];
            for (int c = 1; c < d_out; ++c)
              if (zr[c] > best) best = zr[c], pred = c;
          }
          long long truth;
          if (p.sparse) {
            const float label = ys[r];
            truth = label > -1.f && label < float(p.classes) ? (long long)label : -1;
          } else if (p.y_cols == 1) {
            truth = ys[r] > 0.5f ? 1 : 0;
          } else {
            const float* tr = ys + r * p.y_cols;
            truth = 0;
            float best = tr[0];
            for (int c = 1; c < p.y_cols; ++c)
              if (tr[c] > best) best = tr[c], truth = c;
          }
          if (truth >= 0 && truth < p.classes && pred >= 0 && pred < p.classes)
            atomicAdd(p.counts + (truth * p.classes + pred), 1.0);
        }
      lacc = warp_sum(lacc);
      eabs = warp_sum(eabs);
      esq = warp_sum(esq);
      if (lane == 0) {
        red[warp] = lacc;
        red[kWarps + warp] = eabs;
        red[2 * kWarps + warp] = esq;
      }
      __syncthreads();
    }

    // ---- backward. Phase j updates layer L-j (j >= 1) and pushes the gradient
    // through layer L-1-j (when it has a layer below): a layer's W is read for
    // dX one phase before it is updated.
    // this step's row of Optimizer.step_params (fusednn/optim_update.h): P_LR the
    // learning rate; SGD P_A momentum; Adam P_A alpha, P_B 1-b1, P_C 1-b2, P_D epsilon
    const float* row = p.rows + (s - p.step0) * kOptParams;
    const Update up{p.opt, row[P_LR], row[P_A], row[P_A], row[P_B], row[P_C], row[P_D], p.nesterov};
    for (int j = 0; j <= L; ++j) {
      if (j == 0 && tid == 0) {  // the step's loss and error sums, in a fixed order
        double a = 0.0, e1 = 0.0, e2 = 0.0;
        for (int w = 0; w < kWarps; ++w) a += red[w], e1 += red[kWarps + w], e2 += red[2 * kWarps + w];
        const double cnt = p.loss == int(LossKind::xent_categorical) || p.loss == int(LossKind::xent_sparse)
                               ? double(B)
                               : double(B) * d_out;
        p.step_losses[s] = float(a / cnt);
        if (p.err_sums) p.err_sums[0] += e1, p.err_sums[1] += e2;
      }
      const int u = L - j, v = L - 1 - j;
      if (j >= 1) {  // update layer u from dW = A_{u-1}^T G_u, db = colsum(G_u)
        const PLayer& ly = p.layer[u];
        const float* ain = u ? sm + p.layer[u - 1].A : xs;
        const int ldin = u ? p.layer[u - 1].lda : p.ldx;
        float* W = sm + ly.W;
        float* s1 = ly.W_s1 >= 0 ? sm + ly.W_s1 : nullptr;
        float* s2 = ly.W_s2 >= 0 ? sm + ly.W_s2 : nullptr;
        const int ldw = ly.ldw, out = ly.out;
        float* gdW = final_step ? ly.gdW : nullptr;
        product(ly.in, ly.out, B, ain, 1, ldin, sm + ly.G, ly.lda, 1, [&](int i, int c, float g) {
          const int idx = i * ldw + c;
          up(W[idx], g, s1 ? s1 + idx : nullptr, s2 ? s2 + idx : nullptr);
          if (gdW) gdW[i * out + c] = g;
        });
        if (ly.b >= 0) {
          const float* G = sm + ly.G;
          for (int c = tid; c < ly.out; c += kThreads) {
            double acc = 0.0;
            for (int r = 0; r < B; ++r) acc += G[r * ly.lda + c];
            const float g = float(acc);
            up(sm[ly.b + c], g, ly.b_s1 >= 0 ? sm + ly.b_s1 + c : nullptr, ly.b_s2 >= 0 ? sm + ly.b_s2 + c : nullptr);
            if (final_step) ly.gdb[c] = g;
          }
        }
      }
      if (v >= 1) {  // G_{v-1} = (G_v W_v^T) * act'_{v-1}(A_{v-1})
        const PLayer& ly = p.layer[v];
        const PLayer& below = p.layer[v - 1];
        float* Gp = sm + below.G;
        const float* Ap = sm + below.A;
        const int ldp = below.lda, act = below.act;
        product(B, ly.in, ly.out, sm + ly.G, ly.lda, 1, sm + ly.W, 1, ly.ldw, [&](int r, int i, float g) {
          Gp[r * ldp + i] = act_bwd_rt(g, Ap[r * ldp + i], act);
        });
      }
      if (j >= 1 || v >= 1) __syncthreads();
    }
  }

  for (int l = 0; l < L; ++l) copy_layer_state(sm, p.layer[l], false);
}

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess)
    throw std::runtime_error(std::string("fusednn._cuda.MlpTrainer.run (persistent): ") + what + ": CUDA error " +
                             cudaGetErrorName(e) + ": " + cudaGetErrorString(e));
}

}  // namespace

std::size_t persistent_smem_limit() {
  int dev = 0, bytes = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) return 0;
  if (cudaDeviceGetAttribute(&bytes, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) != cudaSuccess) return 0;
  return std::size_t(bytes);
}

persistent::Plan persistent_plan_for(const std::vector<DenseBuffers>& layers, const OptimizerConfig& opt,
                                     LossKind loss, int batch) {
  std::vector<int> dims{layers.front().in};
  std::vector<bool> bias;
  for (const DenseBuffers& l : layers) {
    dims.push_back(l.out);
    bias.push_back(l.b != nullptr);
  }
  const int states = opt.kind == OptKind::adam ? 2 : (layers.front().W_s1 ? 1 : 0);
  const int y_cols = loss == LossKind::xent_sparse ? 1 : layers.back().out;
  return persistent::make_plan(dims, bias, states, batch, y_cols);
}

std::int64_t train_persistent(const std::vector<DenseBuffers>& layers, const OptimizerConfig& opt, LossKind loss,
                              const TrainData& data, int batch, std::int64_t step0, std::int64_t step1,
                              std::int64_t iterations, std::int64_t* steps_done, cudaStream_t stream,
                              float* table) {
  const persistent::Plan plan = persistent_plan_for(layers, opt, loss, batch);
  const std::string why = persistent::why_not(plan, persistent_smem_limit());
  if (!why.empty()) throw std::invalid_argument("the persistent trainer cannot run this model: " + why);
  *steps_done = step1 - step0;
  if (step1 <= step0) return iterations;
  PArgs a{};
  a.L = int(layers.size());
  for (int l = 0; l < a.L; ++l) {
    const DenseBuffers& d = layers[l];
    const persistent::LayerPlan& lp = plan.layers[l];
    PLayer& q = a.layer[l];
    q.in = d.in, q.out = d.out, q.act = int(d.act), q.ldw = lp.ldw, q.lda = lp.lda;
    q.W = int(lp.W), q.b = int(lp.b), q.W_s1 = int(lp.W_s1), q.W_s2 = int(lp.W_s2);
    q.b_s1 = int(lp.b_s1), q.b_s2 = int(lp.b_s2), q.A = int(lp.A), q.G = int(lp.G);
    q.gW = d.W, q.gb = d.b, q.gdW = d.dW, q.gdb = d.db;
    q.gWs1 = d.W_s1, q.gWs2 = d.W_s2, q.gbs1 = d.b_s1, q.gbs2 = d.b_s2;
  }
  a.x = data.x, a.y = data.y, a.order = data.order, a.n = data.n;
  a.d_in = layers.front().in, a.y_cols = data.y_cols, a.ldx = plan.ldx, a.ox = int(plan.x), a.oy = int(plan.y);
  a.batch = batch, a.step0 = step0, a.step1 = step1, a.iterations = iterations;
  a.loss = int(loss), a.opt = int(opt.kind);
  // the run's step rows go to the device first, in stream order (the host rows
  // are read before cudaMemcpyAsync returns)
  check(cudaMemcpyAsync(table, opt.step_params, std::size_t(step1 - step0) * kOptParams * sizeof(float),
                        cudaMemcpyHostToDevice, stream),
        "cudaMemcpyAsync(step_params)");
  a.rows = table;
  a.nesterov = (opt.flags & optf::nesterov) != 0;
  a.step_losses = data.step_losses;
  a.counts = data.counts, a.classes = data.classes, a.sparse = data.sparse_labels, a.threshold = data.threshold;
  a.err_sums = data.err_sums;
  check(cudaFuncSetAttribute(persistent_mlp_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(plan.bytes)),
        "cudaFuncSetAttribute");
  persistent_mlp_kernel<<<1, kThreads, plan.bytes, stream>>>(a);
  check(cudaGetLastError(), "persistent_mlp_kernel");
  return iterations + (step1 - step0);
}

}  // namespace cuda
}  // namespace fusednn
