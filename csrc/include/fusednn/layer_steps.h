// The fused trainer's non-Dense layer steps (design, issue 11: "a small layer program").
//
// A model compiles to Dense blocks, each followed by an ordered list of
// LayerSteps (BatchNormalization, Activation, Dropout, in any order and number):
//   x -> dense(W, b, act) -> A -> step 0 -> Y0 -> step 1 -> Y1 ... -> next block
// Each step reads the previous buffer (the block's A, or the step before's Y) and
// writes its own Y; its gradient buffer G holds dLoss/dY. trainer.h calls three
// hooks per block: post_forward after the block's GEMM, post_backward before the
// block's activation backward (it carries the gradient from the last step's G
// down to the block's G), and post_update after the block's optimizer update; the
// next block reads post_output and the block above writes its input gradient
// into post_grad. A block without steps costs nothing (empty vector), so the
// all-Dense path runs exactly as before. Buffers, parameters, moving statistics
// and the dropout step counters all belong to the Python layers, so the per-op
// path and get_weights see the same state, and both paths call the same kernels
// in the same order (same numbers).
//
// The device policy D supplies dropout_mask, mul, batchnorm_train,
// batchnorm_backward and act_forward; a policy without them (detected below)
// compiles the hooks to nothing and its binding refuses steps. PReLU and
// LayerNormalization steps need their own kernels (has_prelu, has_layernorm): the
// CPU policy has them, a policy without them refuses those steps in its binding.
// The steps of cpu_steps_more.h (act_param: LeakyReLU/ELU/ReLU with arguments;
// softmax; gaussian_noise/gaussian_dropout, whose normals come from the layer's seed
// and counter as dropout's mask does) need D::act_param_forward/backward,
// softmax_rows(_backward), gaussian_factor, add and copy: the CPU policy's.
// The log_softmax step (a Dense with activation='log_softmax', hidden or last, and
// Activation('log_softmax')) needs D::log_softmax_rows(_backward): the CPU policy's.
// Step weights may carry Keras regularizers and constraints (gamma/beta of the
// normalisations, PReLU's alpha): post_regularize adds their penalties to the step's
// loss and gradients after the block's own (the per-op path's model order), and
// post_constrain projects them after their update, as trainer.h does for Dense W/b.
#pragma once
#include <cstdint>
#include <type_traits>
#include <utility>
#include <vector>

#include "fusednn/activation.h"
#include "fusednn/constraint.h"
#include "fusednn/cpu_steps_more.h"
#include "fusednn/optim_update.h"

namespace fusednn {

enum class StepKind : int {
  activation = 0,
  dropout = 1,
  batchnorm = 2,
  prelu = 3,
  layernorm = 4,
  act_param = 5,        // LeakyReLU, ELU, ReLU with arguments (aparam)
  softmax = 6,          // the Softmax layer: a row softmax
  gaussian_noise = 7,   // GaussianNoise: Y = x + M, M = noise_scale * z (z: Philox normals at counter[0])
  gaussian_dropout = 8,  // GaussianDropout: Y = x * M, M = 1 + noise_scale * z
  log_softmax = 9        // a row log-softmax: Y = x - max - log(sum exp(x - max)) per row
};

struct LayerStep {
  StepKind kind = StepKind::activation;
  int cols = 0;
  float* Y = nullptr;  // batch×cols: the step's output
  float* G = nullptr;  // batch×cols: gradient w.r.t. the output
  // activation
  Act act = Act::linear;
  // dropout: mask M (batch×cols) holds 1/(1-rate) or 0; the draw of step t uses
  // counter[0], which is then incremented (the layer's own host counter)
  float rate = 0.f;
  std::uint64_t seed = 0;
  std::int64_t* counter = nullptr;
  bool row_b = false, col_b = false;
  float* M = nullptr;
  // batch normalisation (gamma/beta null without scale/center)
  float *gamma = nullptr, *beta = nullptr, *dgamma = nullptr, *dbeta = nullptr;
  float *moving_mean = nullptr, *moving_var = nullptr;
  float *xhat = nullptr, *invstd = nullptr;  // batch×cols and cols: kept for backward
  float* scratch = nullptr;                  // 3*cols of device scratch (the CUDA kernels' column sums)
  float eps = 1e-3f, momentum = 0.99f;
  // optimizer state of gamma and beta (optim_update.h says which kind uses which) and their
  // moving averages (use_ema); whether weight decay applies to them
  float *gamma_s[3] = {nullptr, nullptr, nullptr}, *beta_s[3] = {nullptr, nullptr, nullptr};
  float *gamma_ema = nullptr, *beta_ema = nullptr;
  bool gamma_decay = true, beta_decay = true;
  // PReLU: its slope alpha (alpha_n = cols, or 1 shared), gradient, optimizer state and EMA
  float *alpha = nullptr, *dalpha = nullptr;
  float* alpha_s[3] = {nullptr, nullptr, nullptr};
  float* alpha_ema = nullptr;
  int alpha_n = 0;
  bool alpha_decay = true;
  // a frozen batch normalisation (Keras' trainable=False): inference mode with the moving
  // statistics in training too, no parameter gradient or update; its backward is the
  // inference map with a zero mean and no beta (zeros: cols zeros), dx = dy * gamma / sqrt(var + eps)
  bool frozen = false;
  float* zeros = nullptr;
  // layer normalisation uses gamma/beta/dgamma/dbeta, their optimizer state and eps as
  // batch normalisation does; its xhat is batch×cols and its invstd holds one value per row
  // (batch), no moving statistics
  // act_param: the activation's parameters; gaussian_*: the normals' scale (seed, counter and M as dropout's)
  ActParam aparam;
  float noise_scale = 0.f;
  // Keras L1/L2 regularizer factors (0: none) and constraints of gamma, beta (batch/layer
  // normalisation) and alpha (PReLU); a frozen step has none (Keras: trainable weights only)
  float gamma_l1 = 0.f, gamma_l2 = 0.f, beta_l1 = 0.f, beta_l2 = 0.f, alpha_l1 = 0.f, alpha_l2 = 0.f;
  Constraint gamma_con, beta_con, alpha_con;
};

// The steps of cpu_steps_more.h (act_param, softmax, gaussian_noise, gaussian_dropout) need
// D::act_param_forward and D::gaussian_factor; a policy without them
// compiles them to nothing and its binding refuses them.
template <class D, class = void>
struct has_steps_more : std::false_type {};
template <class D>
struct has_steps_more<D, std::void_t<decltype(&D::act_param_forward), decltype(&D::gaussian_factor)>>
    : std::true_type {};

// Devices that run frozen batch-normalisation steps (batchnorm_infer): the CPU's and CUDA's.
template <class D, class = void>
struct has_batchnorm_infer : std::false_type {};
template <class D>
struct has_batchnorm_infer<D, std::void_t<decltype(&D::batchnorm_infer)>> : std::true_type {};

// Devices that run log_softmax steps (log_softmax_rows): the CPU's.
template <class D, class = void>
struct has_log_softmax_step : std::false_type {};
template <class D>
struct has_log_softmax_step<D, std::void_t<decltype(&D::log_softmax_rows), decltype(&D::log_softmax_rows_backward)>>
    : std::true_type {};

template <class D, class = void>
struct has_layer_steps : std::false_type {};
template <class D>
struct has_layer_steps<D, std::void_t<decltype(&D::dropout_mask), decltype(&D::batchnorm_train)>>
    : std::true_type {};

// PReLU steps need D::prelu_forward/prelu_backward; a policy without them compiles
// the step to nothing and its binding refuses it.
// LayerNormalization steps need D::layernorm_forward/layernorm_backward (the CPU's and CUDA's);
// without them the step compiles to nothing and the binding refuses it.
template <class D, class = void>
struct has_layernorm : std::false_type {};
template <class D>
struct has_layernorm<D, std::void_t<decltype(&D::layernorm_forward), decltype(&D::layernorm_backward)>>
    : std::true_type {};

template <class D, class = void>
struct has_prelu : std::false_type {};
template <class D>
struct has_prelu<D, std::void_t<decltype(&D::prelu_forward), decltype(&D::prelu_backward)>> : std::true_type {};

inline const float* post_output(const std::vector<LayerStep>& post, const float* A) {
  return post.empty() ? A : post.back().Y;
}
inline float* post_grad(std::vector<LayerStep>& post, float* G) { return post.empty() ? G : post.back().G; }

template <class D>
const float* post_forward(const D& dev, std::vector<LayerStep>& post, const float* A, int B) {
  if constexpr (has_layer_steps<D>::value) {
    const float* x = A;
    for (LayerStep& s : post) {
      const std::int64_t n = std::int64_t(B) * s.cols;
      switch (s.kind) {
        case StepKind::activation:
          dev.act_forward(s.Y, x, n, s.act);
          break;
        case StepKind::dropout:
          dev.dropout_mask(s.M, B, s.cols, s.rate, s.seed, std::uint64_t(*s.counter), s.row_b, s.col_b);
          ++*s.counter;
          dev.mul(s.Y, x, s.M, n);
          break;
        case StepKind::batchnorm:
          if (s.frozen) {
            if constexpr (has_batchnorm_infer<D>::value)
              dev.batchnorm_infer(s.Y, x, s.gamma, s.beta, s.moving_mean, s.moving_var, B, s.cols, s.eps);
            break;
          }
          dev.batchnorm_train(s.Y, s.xhat, s.invstd, x, s.gamma, s.beta, B, s.cols, s.eps, s.moving_mean,
                              s.moving_var, s.momentum, s.scratch);
          break;
        case StepKind::prelu:
          if constexpr (has_prelu<D>::value) dev.prelu_forward(s.Y, x, s.alpha, B, s.cols, s.alpha_n);
          break;
        case StepKind::layernorm:
          if constexpr (has_layernorm<D>::value)
            dev.layernorm_forward(s.Y, s.xhat, s.invstd, x, s.gamma, s.beta, B, s.cols, s.eps);
          break;
        case StepKind::act_param:
          if constexpr (has_steps_more<D>::value) dev.act_param_forward(s.Y, x, n, s.aparam);
          break;
        case StepKind::softmax:
          if constexpr (has_steps_more<D>::value) dev.softmax_rows(s.Y, x, B, s.cols);
          break;
        case StepKind::log_softmax:
          if constexpr (has_log_softmax_step<D>::value) dev.log_softmax_rows(s.Y, x, B, s.cols);
          break;
        case StepKind::gaussian_noise:
        case StepKind::gaussian_dropout:
          if constexpr (has_steps_more<D>::value) {
            const bool mul = s.kind == StepKind::gaussian_dropout;
            dev.gaussian_factor(s.M, B, s.cols, s.seed, std::uint64_t(*s.counter), s.noise_scale, mul);
            ++*s.counter;
            if (mul)
              dev.mul(s.Y, x, s.M, n);
            else
              dev.add(s.Y, x, s.M, n);
          }
          break;
      }
      x = s.Y;
    }
  }
  return post_output(post, A);
}

template <class D>
void post_backward(const D& dev, std::vector<LayerStep>& post, const float* A, float* G, int B) {
  if constexpr (has_layer_steps<D>::value) {
    for (int k = int(post.size()) - 1; k >= 0; --k) {
      LayerStep& s = post[std::size_t(k)];
      float* dx = k > 0 ? post[std::size_t(k) - 1].G : G;
      const std::int64_t n = std::int64_t(B) * s.cols;
      switch (s.kind) {
        case StepKind::activation:
          // the step's input for the activations whose derivative needs it (gelu, swish, ...)
          dev.act_backward(dx, s.G, act_backward_needs_input(s.act) ? (k > 0 ? post[std::size_t(k) - 1].Y : A) : s.Y,
                           n, s.act);
          break;
        case StepKind::dropout:
          dev.mul(dx, s.G, s.M, n);
          break;
        case StepKind::batchnorm:
          if (s.frozen) {
            if constexpr (has_batchnorm_infer<D>::value)
              dev.batchnorm_infer(dx, s.G, s.gamma, nullptr, s.zeros, s.moving_var, B, s.cols, s.eps);
            break;
          }
          dev.batchnorm_backward(dx, s.dgamma, s.dbeta, s.G, s.xhat, s.invstd, s.gamma, B, s.cols, s.scratch);
          break;
        case StepKind::prelu:  // the step's input: the step before's output, or the block's
          if constexpr (has_prelu<D>::value)
            dev.prelu_backward(dx, s.dalpha, s.G, k > 0 ? post[std::size_t(k) - 1].Y : A, s.alpha, B, s.cols,
                               s.alpha_n);
          break;
        case StepKind::layernorm:
          if constexpr (has_layernorm<D>::value)
            dev.layernorm_backward(dx, s.dgamma, s.dbeta, s.G, s.xhat, s.invstd, s.gamma, B, s.cols);
          break;
        case StepKind::act_param:  // from the step's input and output
          if constexpr (has_steps_more<D>::value)
            dev.act_param_backward(dx, s.G, k > 0 ? post[std::size_t(k) - 1].Y : A, s.Y, n, s.aparam);
          break;
        case StepKind::softmax:
          if constexpr (has_steps_more<D>::value) dev.softmax_rows_backward(dx, s.G, s.Y, B, s.cols);
          break;
        case StepKind::log_softmax:
          if constexpr (has_log_softmax_step<D>::value) dev.log_softmax_rows_backward(dx, s.G, s.Y, B, s.cols);
          break;
        case StepKind::gaussian_noise:  // the identity
          if constexpr (has_steps_more<D>::value) dev.copy(dx, s.G, n);
          break;
        case StepKind::gaussian_dropout:  // times the same factor
          if constexpr (has_steps_more<D>::value) dev.mul(dx, s.G, s.M, n);
          break;
      }
    }
  }
}

// Add the steps' parameter gradients to the device's norm accumulator (global clipping).
template <class D>
void post_norm_add(const D& dev, std::vector<LayerStep>& post) {
  for (LayerStep& s : post) {
    if (s.kind == StepKind::prelu) dev.norm_add(s.dalpha, s.alpha_n);
    if ((s.kind != StepKind::batchnorm && s.kind != StepKind::layernorm) || s.frozen) continue;
    if (s.gamma) dev.norm_add(s.dgamma, s.cols);
    if (s.beta) dev.norm_add(s.dbeta, s.cols);
  }
}

// The optimizer update of the steps' parameters (Batch/LayerNormalization's gamma, then
// beta; PReLU's alpha), after the block's own, with the step's row P of optimizer parameters.
template <class D, class Opt>
void post_update(const D& dev, std::vector<LayerStep>& post, const Opt& opt, const float* P) {
  for (LayerStep& s : post) {
    if (s.kind == StepKind::prelu) {  // alpha, updated like any weight
      if (opt.flags & optf::clip_norm) {
        dev.norm_reset();
        dev.norm_add(s.dalpha, s.alpha_n);
      }
      const int flags = s.alpha_decay ? opt.flags : (opt.flags & ~optf::weight_decay);
      dev.opt_update(opt.kind, flags, P, s.alpha, s.dalpha, s.alpha_s[0], s.alpha_s[1], s.alpha_s[2], s.alpha_ema,
                     s.alpha_n);
      continue;
    }
    if ((s.kind != StepKind::batchnorm && s.kind != StepKind::layernorm) || s.frozen) continue;
    struct Param {
      float *w, *g, **st, *ema;
      bool decay;
    };
    const Param params[2] = {{s.gamma, s.dgamma, s.gamma_s, s.gamma_ema, s.gamma_decay},
                             {s.beta, s.dbeta, s.beta_s, s.beta_ema, s.beta_decay}};
    for (const Param& q : params) {
      if (!q.w) continue;
      if (opt.flags & optf::clip_norm) {
        dev.norm_reset();
        dev.norm_add(q.g, s.cols);
      }
      const int flags = q.decay ? opt.flags : (opt.flags & ~optf::weight_decay);
      dev.opt_update(opt.kind, flags, P, q.w, q.g, q.st[0], q.st[1], q.st[2], q.ema, s.cols);
    }
  }
}

// The weight penalties of the steps' parameters (gamma then beta, alpha), in step order,
// factors scaled by ps: added to *loss and to the parameter gradients (before the update).
template <class D>
void post_regularize(const D& dev, std::vector<LayerStep>& post, float ps, float* loss) {
  for (LayerStep& s : post) {
    if (s.frozen) continue;
    if (s.kind == StepKind::prelu && (s.alpha_l1 != 0.f || s.alpha_l2 != 0.f))
      dev.regularize(s.dalpha, s.alpha, s.alpha_n, ps * s.alpha_l1, ps * s.alpha_l2, loss);
    if (s.kind != StepKind::batchnorm && s.kind != StepKind::layernorm) continue;
    if (s.gamma && (s.gamma_l1 != 0.f || s.gamma_l2 != 0.f))
      dev.regularize(s.dgamma, s.gamma, s.cols, ps * s.gamma_l1, ps * s.gamma_l2, loss);
    if (s.beta && (s.beta_l1 != 0.f || s.beta_l2 != 0.f))
      dev.regularize(s.dbeta, s.beta, s.cols, ps * s.beta_l1, ps * s.beta_l2, loss);
  }
}

// Keras: the steps' parameters projected onto their constraints after their update (a
// 1-D weight is one column of `cols` rows, as the per-op binding views it).
template <class D>
void post_constrain(const D& dev, std::vector<LayerStep>& post) {
  if constexpr (has_constrain<D>::value) {
    for (LayerStep& s : post) {
      if (s.frozen) continue;
      if (s.kind == StepKind::prelu && s.alpha_con.kind != ConstraintKind::none)
        dev.constrain(s.alpha, s.alpha_n, 1, s.alpha_con);
      if (s.kind != StepKind::batchnorm && s.kind != StepKind::layernorm) continue;
      if (s.gamma && s.gamma_con.kind != ConstraintKind::none) dev.constrain(s.gamma, s.cols, 1, s.gamma_con);
      if (s.beta && s.beta_con.kind != ConstraintKind::none) dev.constrain(s.beta, s.cols, 1, s.beta_con);
    }
  }
}

}  // namespace fusednn
