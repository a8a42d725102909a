// The distillation loss of SPEC section 2, forward and backward fused: per row,
//   L  = alpha * T^2 * KL(softmax(t/T) || softmax(s/T)) + (1 - alpha) * CE(s, y)
//   dL/ds = [alpha*T*(softmax(s/T) - softmax(t/T)) + (1-alpha)*(softmax(s) - onehot(y))] / b
// and a deterministic mean of the per-row losses. Oracle: kd::ref::softmax_kl.
// Mixup replaces onehot(y) by its mixed target (ref::HardTargetMix), the
// draw read from device memory so a captured step takes each step's weights.
//
// Numerics. The row statistics are the maxima of the raw logits (T > 0, so
// max(s/T) = max(s)/T) and three sums of exponentials relative to them, for
// s/T, s and t/T. Every exponent is (x - max) scaled afterwards, so for logits
// of +-1e4 it is a difference of nearby floats, never of two huge ones. KL is
// summed in a second sweep from log-ratios,
//   log p_t - log p_s = ((t - max_t) - (s - max_s)) / T - log(Z_t / Z_s),
// so a teacher probability that underflows adds exactly 0, C = 1 gives exactly
// 0, and a small KL (T = 50: rows near uniform) is not the difference of two
// log-sum-exps of ~log C each. What remains is the error of log(Z_t / Z_s)
// itself, which enters KL absolutely: an exponential off by d (relative) moves
// it by p * d. fp32 exponentials (exp2f, within 2 ulp, ~1e-7) average out over
// long rows (error ~1e-7 / sqrt(c)) but not over short ones: for c <= 256 the
// two temperature sums use double exp2 (a few rows' worth of FP64 work; the
// gradients still use exp2f). The block finds the row maxima before summing,
// so a thread whose slice is in registers sums relative to the row maxima
// directly (no rescale factor, whose rounding would not average out); the
// partials then add in double. What to expect against the double reference:
// about 1e-6 of the output's norm where it does not cancel, plus an absolute
// part of about 1e-7 per element (the rounding of the probabilities a
// gradient element or a KL is the difference of) that is not small relative
// to outputs that cancel to ~1e-6 (b = 1, c = 2 does so in a few percent of
// random draws). No relative-only bound holds there;
// tests/softmax_kl_gpu_test.cpp bounds both parts.
//
// Paths by class count c:
//  - c <= 32: a thread per row. A block stages 128 rows of s and t in shared
//    memory with coalesced loads (rows padded to an odd stride: conflict-free
//    per-thread row walks), each thread sweeps its row three times there, and
//    the gradients leave through shared memory with coalesced stores.
//  - c > 32: a block per row slice holding its slice of s and t in registers
//    (kSlots floats each per thread, float4 loads when c % 4 == 0 and the
//    pointers are 16-byte aligned, scalar coalesced loads otherwise), so the
//    gradient sweep reads registers, not memory. When one block cannot hold the
//    row, a thread-block cluster of up to 8 blocks splits it and the blocks
//    exchange maxima, sums and KL through distributed shared memory (sm_90). A
//    slice larger than the registers is swept in tiles and re-read (from L2
//    when it is still there): only for c > 131072 or without clusters.
//
// Every reduction runs in a fixed order (xor-butterfly shuffles, warp slots
// reduced by warp 0, cluster ranks in rank order), so reruns are bit-identical.
// No float atomics anywhere.
#include <cooperative_groups.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>

#include "kd/error.h"
#include "kd/launch.h"
#include "kd/cuda_ops.h"
#include "kd/cuda_buffer.h"

namespace kd::cuda {
namespace {

namespace cg = cooperative_groups;

constexpr int kWarp = 32;
constexpr unsigned kFullMask = 0xffffffffu;
constexpr float kLog2e = 1.4426950408889634f;
constexpr int kSmallMaxClasses = 32;
constexpr int kSmallRows = 128;       // small path: rows (= threads) per block
constexpr int kMaxClusterBlocks = 8;  // the portable cluster size limit

// Everything a row needs besides its logits; precomputed once on the host.
struct LossParams {
  const float* s;                 // (b, c)
  const float* t;                 // (N, c) or null (then the KL term is 0 and t is never read)
  const int32_t* t_rows;          // (b) or null: row i's teacher row is t_rows[i]
  const int32_t* labels;          // (b)
  const int32_t* partner_labels;  // (b) or null: mixup's second label per row
  const MixupDraw* mix;           // device (1) or null: the weights of labels and partner_labels
  float* grad;                    // (b, c) or null
  float* row_loss;                // (b) or null
  float* row_kl;                  // (b) or null
  int b, c;
  float inv_t;           // 1 / T
  float log2e_over_t;    // exp((x - m) / T) = exp2((x - m) * log2e_over_t)
  float kl_grad_weight;  // alpha * T
  float kl_loss_weight;  // alpha * T^2
  float ce_weight;       // 1 - alpha
  float inv_b;
};

__device__ __forceinline__ int64_t teacher_row_index(const LossParams& p, int row) {
  return p.t_rows ? p.t_rows[row] : row;
}

// 2^x for x <= 0, exactly 1 at x = 0 (the row maximum): a row's largest
// weight is then exact however the hardware exponential rounds, and C = 1
// gives exactly 0 loss and gradient.
__device__ __forceinline__ float exp2_nonpositive(float x) { return x == 0.f ? 1.f : exp2f(x); }

// The terms of the temperature sums: double exp2 when the row is short (see top).
template <bool kExact>
__device__ __forceinline__ auto sum_term(float x) {
  if constexpr (kExact) return exp2(double(x));
  else return exp2_nonpositive(x);
}

// exp2((from - to) * log2_scale), 0 for an empty part (from = -inf; -inf - -inf is NaN).
__device__ __forceinline__ float rescale(float from, float to, float log2_scale) {
  return from == -INFINITY ? 0.f : exp2_nonpositive((from - to) * log2_scale);
}

// A row's (or a part's) maxima and its sums of exponentials relative to them.
struct RowSums {
  float max_s = -INFINITY;  // max s
  float max_t = -INFINITY;  // max t (stays -inf without a teacher)
  double sum_s_t = 0;       // sum exp((s - max_s) / T)
  double sum_s_1 = 0;       // sum exp(s - max_s)
  double sum_t_t = 0;       // sum exp((t - max_t) / T)
};

// Moves `part`'s sums to the maxima (new_max_s, new_max_t) >= its own.
__device__ __forceinline__ void rebase(RowSums& part, float new_max_s, float new_max_t, float log2e_over_t) {
  part.sum_s_t *= rescale(part.max_s, new_max_s, log2e_over_t);
  part.sum_s_1 *= rescale(part.max_s, new_max_s, kLog2e);
  part.sum_t_t *= rescale(part.max_t, new_max_t, log2e_over_t);
  part.max_s = new_max_s;
  part.max_t = new_max_t;
}

// Per-row constants of the gradient sweep, from the finished sums.
struct RowConsts {
  float max_s, max_t;
  float inv_sum_s_t, inv_sum_s_1, inv_sum_t_t;
  float log_ratio_t_s;  // log(sum_t_t / sum_s_t), rounded once from double
  double lse_s_1;       // log sum exp(s): CE = lse_s_1 - s_label
};
__device__ __forceinline__ RowConsts row_consts(const RowSums& r, bool has_teacher) {
  RowConsts k;
  k.max_s = r.max_s;
  k.max_t = r.max_t;
  k.inv_sum_s_t = float(1.0 / r.sum_s_t);
  k.inv_sum_s_1 = float(1.0 / r.sum_s_1);
  k.inv_sum_t_t = has_teacher ? float(1.0 / r.sum_t_t) : 0.f;
  k.log_ratio_t_s = has_teacher ? float(log(r.sum_t_t) - log(r.sum_s_t)) : 0.f;
  k.lse_s_1 = double(r.max_s) + log(r.sum_s_1);
  return k;
}

// A row's hard target: weight `own` on `label` and `partner_weight` on
// `partner` (mixup's mixed one-hot, ref::HardTargetMix). Without mixup the
// partner is the label at weight 0, so the label's target is 1 + 0 = 1 and
// every result keeps plain cross-entropy's bits.
struct HardTarget {
  int label, partner;
  float own, partner_weight;
  bool ok;  // both labels in [0, c)
};
__device__ __forceinline__ HardTarget hard_target(const LossParams& p, int row) {
  HardTarget h;
  h.label = p.labels[row];
  h.partner = p.partner_labels ? p.partner_labels[row] : h.label;
  h.own = p.mix ? p.mix->lambda : 1.f;
  h.partner_weight = p.mix ? p.mix->partner_weight : 0.f;
  h.ok = h.label >= 0 && h.label < p.c && h.partner >= 0 && h.partner < p.c;
  return h;
}
// The target probability of class j.
__device__ __forceinline__ float target_of(const HardTarget& h, int j) {
  return (j == h.label ? h.own : 0.f) + (j == h.partner ? h.partner_weight : 0.f);
}

// One class of one row: dL/ds_j before the /b, and the class's KL term
// p_t * (log p_t - log p_s) in *kl_term (left alone without a teacher).
// target: the class's hard target probability (target_of).
__device__ __forceinline__ float class_gradient(const LossParams& p, const RowConsts& k, bool has_teacher, float sj,
                                                float tj, float target, float* kl_term) {
  const float ds = sj - k.max_s;
  float g = p.ce_weight * (exp2_nonpositive(ds * kLog2e) * k.inv_sum_s_1 - target);
  if (has_teacher) {
    const float dt = tj - k.max_t;
    const float p_t = exp2_nonpositive(dt * p.log2e_over_t) * k.inv_sum_t_t;
    g += p.kl_grad_weight * (exp2_nonpositive(ds * p.log2e_over_t) * k.inv_sum_s_t - p_t);
    *kl_term = p_t * ((dt - ds) * p.inv_t - k.log_ratio_t_s);
  }
  return g;
}

// Per-row outputs; s_label, s_partner: the row's logits at h.label and
// h.partner (read only when h.ok). An out-of-range label gives a NaN loss
// (caught by the trainer's non-finite check) instead of an out-of-bounds read.
__device__ __forceinline__ void write_row_outputs(const LossParams& p, int row, const RowConsts& k, const HardTarget& h,
                                                  float s_label, float s_partner, double kl) {
  const double ce_label = k.lse_s_1 - double(s_label);
  const double ce = !h.ok ? double(NAN)
                    : h.partner_weight == 0.f
                        ? ce_label  // lambda = 1: plain CE
                        : double(h.own) * ce_label + double(h.partner_weight) * (k.lse_s_1 - double(s_partner));
  if (p.row_loss) p.row_loss[row] = float(double(p.kl_loss_weight) * kl + double(p.ce_weight) * ce);
  if (p.row_kl) p.row_kl[row] = float(kl);
}

// ------------------------------------------------------------------ c <= 32
// A thread per row over a block of kSmallRows rows staged in shared memory
// (dynamic: 2 * kSmallRows * stride floats, stride = c rounded up to odd).
__global__ void __launch_bounds__(kSmallRows) softmax_kl_small_kernel(LossParams p, int stride) {
  float* staged = dynamic_shared_memory<float>();
  float* s_tile = staged;                        // (kSmallRows, stride); gradients replace s in place
  float* t_tile = staged + kSmallRows * stride;  // (kSmallRows, stride)
  __shared__ int64_t t_offset[kSmallRows];       // element offset of each row's teacher row

  const int c = p.c;
  const int row0 = blockIdx.x * kSmallRows;
  const int rows = min(kSmallRows, p.b - row0);
  const bool has_teacher = p.t != nullptr;
  const int tid = threadIdx.x;
  if (has_teacher && tid < rows) t_offset[tid] = teacher_row_index(p, row0 + tid) * c;
  __syncthreads();
  // The block's rows of s are one contiguous span: consecutive threads load consecutive floats.
  const float* s_span = p.s + int64_t(row0) * c;
  for (int e = tid; e < rows * c; e += kSmallRows) {
    const int r = e / c, j = e - r * c;
    s_tile[r * stride + j] = s_span[e];
    if (has_teacher) t_tile[r * stride + j] = p.t[t_offset[r] + j];
  }
  __syncthreads();

  if (tid < rows) {
    float* s_row = s_tile + tid * stride;
    const float* t_row = t_tile + tid * stride;
    const int row = row0 + tid;
    const HardTarget h = hard_target(p, row);
    const float s_label = h.ok ? s_row[h.label] : 0.f, s_partner = h.ok ? s_row[h.partner] : 0.f;
    RowSums sums;
    for (int j = 0; j < c; ++j) {
      sums.max_s = fmaxf(sums.max_s, s_row[j]);
      if (has_teacher) sums.max_t = fmaxf(sums.max_t, t_row[j]);
    }
    for (int j = 0; j < c; ++j) {
      const float ds = s_row[j] - sums.max_s;
      sums.sum_s_t += sum_term<true>(ds * p.log2e_over_t);
      sums.sum_s_1 += sum_term<false>(ds * kLog2e);
      if (has_teacher) sums.sum_t_t += sum_term<true>((t_row[j] - sums.max_t) * p.log2e_over_t);
    }
    const RowConsts k = row_consts(sums, has_teacher);
    double kl = 0;
    for (int j = 0; j < c; ++j) {
      float kl_term = 0.f;
      s_row[j] = class_gradient(p, k, has_teacher, s_row[j], has_teacher ? t_row[j] : 0.f, target_of(h, j), &kl_term) *
                 p.inv_b;
      kl += kl_term;
    }
    write_row_outputs(p, row, k, h, s_label, s_partner, kl);
  }
  if (!p.grad) return;
  __syncthreads();
  float* g_span = p.grad + int64_t(row0) * c;
  for (int e = tid; e < rows * c; e += kSmallRows) {
    const int r = e / c, j = e - r * c;
    g_span[e] = s_tile[r * stride + j];
  }
}

// ------------------------------------------------------------------ c > 32
// Slot i of a thread covers element slot_element(i) of the current tile: with
// float4 loads, 4 consecutive elements per group of 4 slots, groups strided by
// the block; with scalar loads, one element per slot strided by the block.
// Either way a warp's accesses for one slot (group) are contiguous. The block
// size is a template constant so that the slot offsets are immediates, not
// kSlots live registers.
template <int kThreads, bool kVec4>
__device__ __forceinline__ int slot_element(int i, int tile_start) {
  return kVec4 ? tile_start + 4 * ((i / 4) * kThreads + int(threadIdx.x)) + i % 4
               : tile_start + i * kThreads + int(threadIdx.x);
}

// v[i] = row[slot_element(i)] for elements < end (0 beyond). With kVec4, end and
// tile_start are multiples of 4, so a group is wholly in or wholly out.
template <int kSlots, int kThreads, bool kVec4>
__device__ __forceinline__ void load_tile(const float* __restrict__ row, int tile_start, int end, float (&v)[kSlots]) {
#pragma unroll
  for (int g = 0; g < kSlots / 4; ++g) {
    if constexpr (kVec4) {
      const int e = slot_element<kThreads, true>(4 * g, tile_start);
      const float4 q = e < end ? *reinterpret_cast<const float4*>(row + e) : make_float4(0.f, 0.f, 0.f, 0.f);
      v[4 * g] = q.x;
      v[4 * g + 1] = q.y;
      v[4 * g + 2] = q.z;
      v[4 * g + 3] = q.w;
    } else {
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        const int e = slot_element<kThreads, false>(4 * g + k, tile_start);
        v[4 * g + k] = e < end ? row[e] : 0.f;
      }
    }
  }
}

// Writes the 4 values of slot group g (slots 4g .. 4g+3) that fall before `end`.
template <int kThreads, bool kVec4>
__device__ __forceinline__ void store_group(float* __restrict__ row, int tile_start, int end, int g,
                                            const float (&v)[4]) {
  if constexpr (kVec4) {
    const int e = slot_element<kThreads, true>(4 * g, tile_start);
    if (e < end) *reinterpret_cast<float4*>(row + e) = make_float4(v[0], v[1], v[2], v[3]);
  } else {
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const int e = slot_element<kThreads, false>(4 * g + k, tile_start);
      if (e < end) row[e] = v[k];
    }
  }
}

// Folds the maxima of this thread's tile slots into (max_s, max_t).
template <int kSlots, int kThreads, bool kVec4>
__device__ __forceinline__ void tile_maxima(float& max_s, float& max_t, bool has_teacher, int tile_start, int end,
                                            const float (&sv)[kSlots], const float (&tv)[kSlots]) {
#pragma unroll
  for (int i = 0; i < kSlots; ++i) {
    if (slot_element<kThreads, kVec4>(i, tile_start) < end) {
      max_s = fmaxf(max_s, sv[i]);
      if (has_teacher) max_t = fmaxf(max_t, tv[i]);
    }
  }
}

// Adds this thread's tile slots to acc's sums, relative to acc's maxima (which
// must cover the tile). A few dozen terms are summed in float (the temperature
// sums in double when kExact), then added to the double sums.
template <int kSlots, int kThreads, bool kVec4, bool kExact>
__device__ __forceinline__ void add_tile_sums(RowSums& acc, const LossParams& p, bool has_teacher, int tile_start,
                                              int end, const float (&sv)[kSlots], const float (&tv)[kSlots]) {
  decltype(sum_term<kExact>(0.f)) sum_s_t = 0, sum_t_t = 0;
  float sum_s_1 = 0.f;
#pragma unroll
  for (int i = 0; i < kSlots; ++i) {
    if (slot_element<kThreads, kVec4>(i, tile_start) < end) {
      const float ds = sv[i] - acc.max_s;
      sum_s_t += sum_term<kExact>(ds * p.log2e_over_t);
      sum_s_1 += exp2_nonpositive(ds * kLog2e);
      if (has_teacher) sum_t_t += sum_term<kExact>((tv[i] - acc.max_t) * p.log2e_over_t);
    }
  }
  acc.sum_s_t += sum_s_t;
  acc.sum_s_1 += sum_s_1;
  acc.sum_t_t += sum_t_t;
}

struct MaxOp {
  __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};
struct SumOp {
  __device__ double operator()(double a, double b) const { return a + b; }
};

// Block-wide reduction of N values per thread in a fixed order (warp butterflies,
// then warp 0 over the warp slots); every thread gets the result, which also
// stays in `result` (shared memory, read by the other blocks of a cluster).
template <int kThreads, int N, typename T, typename Op>
__device__ void block_reduce(T (&v)[N], Op op, T identity, T (*warp_slots)[N], T* result) {
  constexpr int kWarps = kThreads / kWarp;
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
#pragma unroll
  for (int i = 0; i < N; ++i)
    for (int offset = kWarp / 2; offset > 0; offset /= 2) v[i] = op(v[i], __shfl_xor_sync(kFullMask, v[i], offset));
  if (lane == 0) {
#pragma unroll
    for (int i = 0; i < N; ++i) warp_slots[warp][i] = v[i];
  }
  __syncthreads();
  if (warp == 0) {
#pragma unroll
    for (int i = 0; i < N; ++i) {
      T w = lane < kWarps ? warp_slots[lane][i] : identity;
      for (int offset = kWarp / 2; offset > 0; offset /= 2) w = op(w, __shfl_xor_sync(kFullMask, w, offset));
      if (lane == 0) result[i] = w;
    }
  }
  __syncthreads();
#pragma unroll
  for (int i = 0; i < N; ++i) v[i] = result[i];
}

// One block per row (kCluster = false) or a cluster of `ranks` blocks per row,
// block `rank` owning elements [rank * slice, min(c, (rank + 1) * slice)).
// Launched with kThreads (a multiple of 32, <= 512) threads; `slice` a multiple
// of 4 when kVec4. The launch bounds allow up to 128 registers: the slots
// must stay in registers, and without the bound ptxas squeezes 256-thread
// blocks to 64 registers and spills.
template <int kSlots, int kThreads, bool kVec4, bool kCluster>
__global__ void __launch_bounds__(kThreads, 512 / kThreads) softmax_kl_rows_kernel(LossParams p, int ranks, int slice) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 900
  if constexpr (kCluster) {
    __trap();  // the host launches cluster kernels only on sm_90+
  } else
#endif
  {
    constexpr int kWarps = kThreads / kWarp;
    constexpr bool kExactSums = kSlots * kThreads <= 256;  // short rows: see the top of the file
    __shared__ float max_slots[kWarps][2];
    __shared__ float block_max[2];  // (max_s, max_t) of this block's slice
    __shared__ double sum_slots[kWarps][3];
    __shared__ double block_sums[3];  // (sum_s_t, sum_s_1, sum_t_t) relative to the row maxima
    __shared__ double kl_slots[kWarps][1];
    __shared__ double block_kl[1];

    const int row = blockIdx.x / ranks;
    const int rank = blockIdx.x % ranks;
    const float* s_row = p.s + int64_t(row) * p.c;
    const bool has_teacher = p.t != nullptr;
    const float* t_row = has_teacher ? p.t + teacher_row_index(p, row) * p.c : nullptr;
    const HardTarget h = hard_target(p, row);
    const int begin = rank * slice;
    const int end = min(p.c, begin + slice);
    constexpr int tile = kSlots * kThreads;
    const bool resident = end - begin <= tile;  // the gradient sweep then reads registers only

    float sv[kSlots] = {}, tv[kSlots] = {};  // tv stays 0 without a teacher (never used then)
    RowSums own;                             // this thread's part of the row
    if (resident) {
      // One tile: its maxima now, its sums once the row maxima are known.
      load_tile<kSlots, kThreads, kVec4>(s_row, begin, end, sv);
      if (has_teacher) load_tile<kSlots, kThreads, kVec4>(t_row, begin, end, tv);
      tile_maxima<kSlots, kThreads, kVec4>(own.max_s, own.max_t, has_teacher, begin, end, sv, tv);
    } else {
      // Online over the tiles: each tile summed relative to its own maxima, then
      // both moved to the larger ones.
      for (int tile_start = begin; tile_start < end; tile_start += tile) {
        load_tile<kSlots, kThreads, kVec4>(s_row, tile_start, end, sv);
        if (has_teacher) load_tile<kSlots, kThreads, kVec4>(t_row, tile_start, end, tv);
        RowSums part;
        tile_maxima<kSlots, kThreads, kVec4>(part.max_s, part.max_t, has_teacher, tile_start, end, sv, tv);
        add_tile_sums<kSlots, kThreads, kVec4, kExactSums>(part, p, has_teacher, tile_start, end, sv, tv);
        const float max_s = fmaxf(own.max_s, part.max_s), max_t = fmaxf(own.max_t, part.max_t);
        rebase(own, max_s, max_t, p.log2e_over_t);
        rebase(part, max_s, max_t, p.log2e_over_t);
        own.sum_s_t += part.sum_s_t;
        own.sum_s_1 += part.sum_s_1;
        own.sum_t_t += part.sum_t_t;
      }
    }

    // The row maxima, then every thread's sums relative to them: summed there
    // directly when resident (no rescaling at all), else moved there once.
    float maxima[2] = {own.max_s, own.max_t};
    block_reduce<kThreads>(maxima, MaxOp{}, -INFINITY, max_slots, block_max);
    if constexpr (kCluster) {
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 900
      cg::cluster_group cluster = cg::this_cluster();
      cluster.sync();  // every block's block_max is written
      for (int r = 0; r < ranks; ++r) {
        const float* remote = cluster.map_shared_rank(block_max, r);
        maxima[0] = fmaxf(maxima[0], remote[0]);
        maxima[1] = fmaxf(maxima[1], remote[1]);
      }
#endif
    }
    if (resident) {
      own.max_s = maxima[0];
      own.max_t = maxima[1];
      add_tile_sums<kSlots, kThreads, kVec4, kExactSums>(own, p, has_teacher, begin, end, sv, tv);
    } else {
      rebase(own, maxima[0], maxima[1], p.log2e_over_t);
    }
    double sums[3] = {own.sum_s_t, own.sum_s_1, own.sum_t_t};
    block_reduce<kThreads>(sums, SumOp{}, 0.0, sum_slots, block_sums);
    if constexpr (kCluster) {
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 900
      cg::cluster_group cluster = cg::this_cluster();
      cluster.sync();  // every block's block_sums is written
      sums[0] = sums[1] = sums[2] = 0.0;
      for (int r = 0; r < ranks; ++r) {  // rank order: the same sum in every block
        const double* remote = cluster.map_shared_rank(block_sums, r);
        sums[0] += remote[0];
        sums[1] += remote[1];
        sums[2] += remote[2];
      }
#endif
    }
    RowSums row_sums;
    row_sums.max_s = maxima[0];
    row_sums.max_t = maxima[1];
    row_sums.sum_s_t = sums[0];
    row_sums.sum_s_1 = sums[1];
    row_sums.sum_t_t = sums[2];
    const RowConsts k = row_consts(row_sums, has_teacher);

    double kl[1] = {0.0};
    for (int tile_start = begin; tile_start < end; tile_start += tile) {
      if (!resident) {
        load_tile<kSlots, kThreads, kVec4>(s_row, tile_start, end, sv);
        if (has_teacher) load_tile<kSlots, kThreads, kVec4>(t_row, tile_start, end, tv);
      }
      float tile_kl = 0.f;
#pragma unroll
      for (int g = 0; g < kSlots / 4; ++g) {  // a group at a time: 4 gradients live, not kSlots
        float grad4[4];
#pragma unroll
        for (int q = 0; q < 4; ++q) {
          const int i = 4 * g + q;
          const int e = slot_element<kThreads, kVec4>(i, tile_start);
          float kl_term = 0.f;
          grad4[q] =
              e < end ? class_gradient(p, k, has_teacher, sv[i], tv[i], target_of(h, e), &kl_term) * p.inv_b : 0.f;
          tile_kl += kl_term;
        }
        if (p.grad) store_group<kThreads, kVec4>(p.grad + int64_t(row) * p.c, tile_start, end, g, grad4);
      }
      kl[0] += tile_kl;
    }
    block_reduce<kThreads>(kl, SumOp{}, 0.0, kl_slots, block_kl);

    bool writer = threadIdx.x == 0;
    if constexpr (kCluster) {
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 900
      cg::cluster_group cluster = cg::this_cluster();
      cluster.sync();  // every block's block_kl is written
      writer = writer && rank == 0;
      if (writer) {
        kl[0] = 0.0;
        for (int r = 0; r < ranks; ++r) kl[0] += *cluster.map_shared_rank(block_kl, r);
      }
      cluster.sync();  // no block leaves while rank 0 still reads its shared memory
#endif
    }
    if (writer) {
      write_row_outputs(p, row, k, h, h.ok ? s_row[h.label] : 0.f, h.ok ? s_row[h.partner] : 0.f, kl[0]);
    }
  }
}

// ------------------------------------------------------------------ host side
int round_up(int x, int m) { return (x + m - 1) / m * m; }
bool aligned16(const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; }

void launch_small(const LossParams& p, cudaStream_t stream) {
  const int stride = p.c | 1;  // odd: thread i's row starts in bank (i * stride) % 32, all different
  const size_t smem = 2 * size_t(kSmallRows) * stride * sizeof(float);
  const int blocks = (p.b + kSmallRows - 1) / kSmallRows;
  launch(softmax_kl_small_kernel, blocks, kSmallRows, smem, stream, p, stride);
  KD_CUDA_CHECK_LAUNCH(softmax_kl_small_kernel);
}

bool device_supports_clusters() {
  static const bool supported = [] {
    int device = 0, major = 0;
    KD_CUDA_CHECK(cudaGetDevice(&device));
    KD_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
    return major >= 9;
  }();
  return supported;
}

template <int kSlots, int kThreads, bool kVec4>
void launch_rows(const LossParams& p, cudaStream_t stream) {
  launch(softmax_kl_rows_kernel<kSlots, kThreads, kVec4, false>, p.b, kThreads, 0, stream, p, 1, p.c);
  KD_CUDA_CHECK_LAUNCH(softmax_kl_rows_kernel);
}

// A launch configuration of `blocks` blocks in clusters of `ranks` along x.
struct ClusterLaunch {
  cudaLaunchAttribute attribute[1] = {};
  cudaLaunchConfig_t config = {};
  ClusterLaunch(unsigned blocks, int threads, int ranks, cudaStream_t stream) {
    attribute[0].id = cudaLaunchAttributeClusterDimension;
    attribute[0].val.clusterDim.x = unsigned(ranks);
    attribute[0].val.clusterDim.y = 1;
    attribute[0].val.clusterDim.z = 1;
    config.gridDim = dim3(blocks);
    config.blockDim = dim3(unsigned(threads));
    config.dynamicSmemBytes = 0;
    config.stream = stream;
    config.attrs = attribute;
    config.numAttrs = 1;
  }
  ClusterLaunch(const ClusterLaunch&) = delete;  // config.attrs points into this object
  ClusterLaunch& operator=(const ClusterLaunch&) = delete;
};

// Whether clusters of `ranks` blocks of this kernel can be resident at all
// (asked once per configuration; a failed query counts as no).
template <int kSlots, int kThreads, bool kVec4>
bool cluster_fits(int ranks) {
  static std::mutex mutex;
  static std::map<int, bool> known;
  const std::lock_guard<std::mutex> lock(mutex);
  const auto it = known.find(ranks);
  if (it != known.end()) return it->second;
  const ClusterLaunch launch(unsigned(ranks), kThreads, ranks, nullptr);
  int clusters = 0;
  const cudaError_t status =
      cudaOccupancyMaxActiveClusters(&clusters, softmax_kl_rows_kernel<kSlots, kThreads, kVec4, true>, &launch.config);
  if (status != cudaSuccess) cudaGetLastError();  // clear it: "does not fit" is an answer, not a failure
  return known[ranks] = status == cudaSuccess && clusters > 0;
}

template <int kSlots, int kThreads, bool kVec4>
void launch_rows_cluster(const LossParams& p, int ranks, int slice, cudaStream_t stream) {
  const ClusterLaunch launch(unsigned(p.b) * unsigned(ranks), kThreads, ranks, stream);
  KD_CUDA_CHECK(
      cudaLaunchKernelEx(&launch.config, softmax_kl_rows_kernel<kSlots, kThreads, kVec4, true>, p, ranks, slice));
}

// Row sizes and what holds them (slots x threads = elements per block):
//   c <= 256:    one block, 4 x 64
//   c <= 1024:   one block, 4 x 256
//   c <= 4096:   one block, 16 x 256
//   c <= 32768:  a cluster of ceil(c / 4096) blocks of 16 x 256
//   larger:      a cluster of up to 8 blocks of 32 x 512 (resident up to c = 131072)
//   no clusters: one block of 32 x 512, tiles re-read beyond c = 16384
template <bool kVec4>
void dispatch_rows(const LossParams& p, cudaStream_t stream) {
  const int c = p.c;
  if (c <= 4 * 64) return launch_rows<4, 64, kVec4>(p, stream);
  if (c <= 4 * 256) return launch_rows<4, 256, kVec4>(p, stream);
  if (c <= 16 * 256) return launch_rows<16, 256, kVec4>(p, stream);
  const auto slice_for = [c](int ranks) { return round_up((c + ranks - 1) / ranks, 4); };
  if (device_supports_clusters()) {
    if (c <= kMaxClusterBlocks * 16 * 256) {
      const int ranks = (c + 16 * 256 - 1) / (16 * 256);
      if (cluster_fits<16, 256, kVec4>(ranks))
        return launch_rows_cluster<16, 256, kVec4>(p, ranks, slice_for(ranks), stream);
    } else {
      const int ranks = std::min(kMaxClusterBlocks, (c + 32 * 512 - 1) / (32 * 512));
      if (cluster_fits<32, 512, kVec4>(ranks))
        return launch_rows_cluster<32, 512, kVec4>(p, ranks, slice_for(ranks), stream);
    }
  }
  launch_rows<32, 512, kVec4>(p, stream);
}

// Kernel for mean_reduce: one block, each thread sums a fixed strided subset in
// double, then a fixed tree over the block. x: (n) -> out: (1).
constexpr int kMeanThreads = 512;
__global__ void __launch_bounds__(kMeanThreads) mean_reduce_kernel(const float* __restrict__ x, int n, float* out) {
  __shared__ double partial[kMeanThreads];
  double acc = 0;
  for (int i = threadIdx.x; i < n; i += kMeanThreads) acc += x[i];
  partial[threadIdx.x] = acc;
  __syncthreads();
  for (int stride = kMeanThreads / 2; stride > 0; stride /= 2) {
    if (int(threadIdx.x) < stride) partial[threadIdx.x] += partial[threadIdx.x + stride];
    __syncthreads();
  }
  if (threadIdx.x == 0) *out = float(partial[0] / n);
}

}  // namespace

void softmax_kl(const SoftmaxKlArgs& a, cudaStream_t stream) {
  if (a.b < 0 || a.c < 1)
    fail("softmax_kl: need b >= 0 and c >= 1 classes, got b = " + std::to_string(a.b) + ", c = " + std::to_string(a.c));
  if (!(a.temperature > 0.0f) || !std::isfinite(a.temperature))
    fail("softmax_kl: temperature must be a finite number > 0, got " + std::to_string(a.temperature));
  if (!(a.alpha >= 0.0f && a.alpha <= 1.0f))
    fail("softmax_kl: alpha must be in [0, 1], got " + std::to_string(a.alpha));
  if (a.b == 0) return;
  if (!a.s || !a.labels) fail("softmax_kl: student logits and labels must not be null");
  if (!a.t && a.alpha != 0.0f)
    fail("softmax_kl: teacher logits are null but alpha = " + std::to_string(a.alpha) +
         "; pass the teacher's logits or use alpha = 0");
  if ((a.partner_labels == nullptr) != (a.mix == nullptr))
    fail("softmax_kl: mixup needs both partner_labels and mix, or neither");

  LossParams p;
  p.s = a.s;
  p.t = a.t;
  p.t_rows = a.t_rows;
  p.labels = a.labels;
  p.partner_labels = a.partner_labels;
  p.mix = a.mix;
  p.grad = a.grad;
  p.row_loss = a.row_loss;
  p.row_kl = a.row_kl;
  p.b = a.b;
  p.c = a.c;
  p.inv_t = 1.0f / a.temperature;
  p.log2e_over_t = kLog2e / a.temperature;
  p.kl_grad_weight = a.alpha * a.temperature;
  p.kl_loss_weight = a.alpha * a.temperature * a.temperature;
  p.ce_weight = 1.0f - a.alpha;
  p.inv_b = 1.0f / float(a.b);

  if (a.c <= kSmallMaxClasses) return launch_small(p, stream);
  const bool vec4 = a.c % 4 == 0 && aligned16(a.s) && (!a.t || aligned16(a.t)) && (!a.grad || aligned16(a.grad));
  if (vec4) dispatch_rows<true>(p, stream);
  else dispatch_rows<false>(p, stream);
}

void mean_reduce(const float* x, int n, float* out, cudaStream_t stream) {
  if (n < 1) fail("mean_reduce: need n >= 1 values, got " + std::to_string(n));
  launch(mean_reduce_kernel, 1, kMeanThreads, 0, stream, x, n, out);
  KD_CUDA_CHECK_LAUNCH(mean_reduce_kernel);
}

}  // namespace kd::cuda
