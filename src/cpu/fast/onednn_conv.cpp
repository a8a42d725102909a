// oneDNN convolutions for the fast CPU ops: primitive descriptors and
// primitives built once per shape and layout pair, the caller's layouts at the
// boundary, oneDNN's inside, reorders only where they differ.
#include "onednn_conv.h"

#include <string>

#include "kd/error.h"

namespace kd::fast {

using tag = dnnl::memory::format_tag;
using dt = dnnl::memory::data_type;

Staged::Staged(const dnnl::engine& engine, const dnnl::memory::desc& outer, const dnnl::memory::desc& inner,
               bool to_inner)
    : outer_(outer, engine, DNNL_MEMORY_NONE), same_(outer == inner) {
  if (same_) return;
  inner_ = dnnl::memory(inner, engine);  // scratch in the primitive's layout, allocated once
  reorder_ = to_inner ? dnnl::reorder(outer_, inner_) : dnnl::reorder(inner_, outer_);
}

dnnl::memory& Staged::load(dnnl::stream& stream, const void* ptr) {
  outer_.set_data_handle(const_cast<void*>(ptr));  // read only: the reorder or primitive only reads it
  if (same_) return outer_;
  reorder_.execute(stream, outer_, inner_);
  return inner_;
}

dnnl::memory& Staged::current() { return same_ ? outer_ : inner_; }

dnnl::memory& Staged::target(void* ptr) {
  outer_.set_data_handle(ptr);
  return same_ ? outer_ : inner_;
}

void Staged::store(dnnl::stream& stream) {
  if (!same_) reorder_.execute(stream, inner_, outer_);
}

dnnl::algorithm OnednnConv::algorithm_for(const ref::ConvShape& s) {
  // Winograd F(4x4, 3x3) needs 16 multiplies per output where direct needs 36
  // (3x3 kernels, stride 1), but its input/output transforms are per channel:
  // with one input channel (the teacher's conv1) they cost more than they
  // save. Measured at the teacher's shapes in bench/RESULTS.md.
  const bool wino = s.k == 3 && s.stride == 1 && s.in_c >= 16 && s.out_c >= 16;
  return wino ? dnnl::algorithm::convolution_winograd : dnnl::algorithm::convolution_direct;
}

namespace {

dnnl::memory::desc f32_desc(const dnnl::memory::dims& dims, tag layout) { return {dims, dt::f32, layout}; }

tag activation_tag(ActLayout layout) { return layout == ActLayout::Nchw16c ? tag::nChw16c : tag::nchw; }

// Builds the three primitive descriptors for `s` with algorithm `alg`
// (throws dnnl::error when oneDNN has no implementation).
struct Pds {
  dnnl::convolution_forward::primitive_desc fwd;
  dnnl::convolution_backward_data::primitive_desc bwd_data;
  dnnl::convolution_backward_weights::primitive_desc bwd_weights;
  dnnl::algorithm alg;
};
Pds make_pds(const dnnl::engine& engine, const ref::ConvShape& s, dnnl::algorithm alg) {
  const dnnl::memory::dims x{s.n, s.in_c, s.h, s.w}, w{s.out_c, s.in_c, s.k, s.k}, b{s.out_c},
      y{s.n, s.out_c, s.out_h(), s.out_w()}, strides{s.stride, s.stride}, pad{s.pad, s.pad};
  const dnnl::memory::desc x_any(x, dt::f32, tag::any), w_any(w, dt::f32, tag::any), y_any(y, dt::f32, tag::any),
      b_plain(b, dt::f32, tag::x);
  Pds p;
  p.alg = alg;
  p.fwd = dnnl::convolution_forward::primitive_desc(
      dnnl::convolution_forward::desc(dnnl::prop_kind::forward_training, alg, x_any, w_any, b_plain, y_any, strides,
                                      pad, pad),
      engine);
  p.bwd_data = dnnl::convolution_backward_data::primitive_desc(
      dnnl::convolution_backward_data::desc(alg, x_any, w_any, y_any, strides, pad, pad), engine, p.fwd);
  p.bwd_weights = dnnl::convolution_backward_weights::primitive_desc(
      dnnl::convolution_backward_weights::desc(alg, x_any, w_any, b_plain, y_any, strides, pad, pad), engine, p.fwd);
  return p;
}

Pds make_pds_with_fallback(const dnnl::engine& engine, const ref::ConvShape& s) {
  const dnnl::algorithm alg = OnednnConv::algorithm_for(s);
  if (alg == dnnl::algorithm::convolution_direct) return make_pds(engine, s, alg);
  try {
    return make_pds(engine, s, alg);
  } catch (const dnnl::error&) {  // no Winograd kernel on this CPU (it needs AVX-512): direct is always there
    return make_pds(engine, s, dnnl::algorithm::convolution_direct);
  }
}

}  // namespace

OnednnConv::OnednnConv(const dnnl::engine& engine, const ref::ConvShape& s, ActLayout xl, ActLayout yl)
    : shape_(s), xl_(xl), yl_(yl), engine_(engine) {
  if ((xl == ActLayout::Nchw16c && s.in_c % 16) || (yl == ActLayout::Nchw16c && s.out_c % 16))
    fail(
        "OnednnConv: the Nchw16c layout needs a channel count divisible by 16 (a caller bug: CpuModel asks "
        "for it only then)");
  Pds pds = make_pds_with_fallback(engine, s);
  fwd_pd_ = pds.fwd;
  bwd_data_pd_ = pds.bwd_data;
  bwd_weights_pd_ = pds.bwd_weights;
  fwd_ = dnnl::convolution_forward(fwd_pd_);
  {
    // The fused ReLU variant, pinned to the layouts the plain forward chose so
    // both share the staging buffers and the backward primitives.
    dnnl::post_ops ops;
    ops.append_eltwise(1.0f, dnnl::algorithm::eltwise_relu, 0.0f, 0.0f);
    dnnl::primitive_attr attr;
    attr.set_post_ops(ops);
    const dnnl::memory::dims strides{s.stride, s.stride}, pad{s.pad, s.pad};
    fwd_relu_ = dnnl::convolution_forward(dnnl::convolution_forward::primitive_desc(
        dnnl::convolution_forward::desc(dnnl::prop_kind::forward_training, pds.alg, fwd_pd_.src_desc(),
                                        fwd_pd_.weights_desc(), fwd_pd_.bias_desc(), fwd_pd_.dst_desc(), strides, pad,
                                        pad),
        attr, engine));
  }
  fwd_x_ = Staged(engine, x_outer(), fwd_pd_.src_desc(), true);
  fwd_w_ = Staged(engine, w_outer(), fwd_pd_.weights_desc(), true);
  fwd_y_ = Staged(engine, y_outer(), fwd_pd_.dst_desc(), false);
  bias_ = dnnl::memory(fwd_pd_.bias_desc(), engine, DNNL_MEMORY_NONE);
}

dnnl::memory::desc OnednnConv::x_outer() const {
  return f32_desc({shape_.n, shape_.in_c, shape_.h, shape_.w}, activation_tag(xl_));
}
dnnl::memory::desc OnednnConv::w_outer() const {
  return f32_desc({shape_.out_c, shape_.in_c, shape_.k, shape_.k}, tag::oihw);
}
dnnl::memory::desc OnednnConv::y_outer() const {
  return f32_desc({shape_.n, shape_.out_c, shape_.out_h(), shape_.out_w()}, activation_tag(yl_));
}

// The backward primitives and their staging buffers, on the first backward:
// shapes only ever run in inference (evaluation and latency batch sizes) never
// allocate them (at batch 1000 they would hold ~0.7 GB for the teacher's conv2).
void OnednnConv::prepare_backward() {
  if (backward_ready_) return;
  bwd_data_ = dnnl::convolution_backward_data(bwd_data_pd_);
  bwd_weights_ = dnnl::convolution_backward_weights(bwd_weights_pd_);
  bww_x_ = Staged(engine_, x_outer(), bwd_weights_pd_.src_desc(), true);
  bww_dy_ = Staged(engine_, y_outer(), bwd_weights_pd_.diff_dst_desc(), true);
  bww_dw_ = Staged(engine_, w_outer(), bwd_weights_pd_.diff_weights_desc(), false);
  if (!(bwd_data_pd_.diff_dst_desc() == bwd_weights_pd_.diff_dst_desc()))
    bwd_dy_ = Staged(engine_, y_outer(), bwd_data_pd_.diff_dst_desc(), true);
  bwd_w_ = Staged(engine_, w_outer(), bwd_data_pd_.weights_desc(), true);
  bwd_dx_ = Staged(engine_, x_outer(), bwd_data_pd_.diff_src_desc(), false);
  diff_bias_ = dnnl::memory(bwd_weights_pd_.diff_bias_desc(), engine_, DNNL_MEMORY_NONE);
  backward_ready_ = true;
}

void OnednnConv::forward(dnnl::stream& stream, const float* x, const float* w, const float* b, float* y, bool relu) {
  bias_.set_data_handle(const_cast<float*>(b));
  dnnl::memory& dst = fwd_y_.target(y);
  last_x_ = nullptr;  // until the load below has completed
  (relu ? fwd_relu_ : fwd_)
      .execute(stream, {{DNNL_ARG_SRC, fwd_x_.load(stream, x)},
                        {DNNL_ARG_WEIGHTS, fwd_w_.load(stream, w)},
                        {DNNL_ARG_BIAS, bias_},
                        {DNNL_ARG_DST, dst}});
  fwd_y_.store(stream);
  stream.wait();
  last_x_ = x;
}

void OnednnConv::backward(dnnl::stream& stream, const float* x, const float* w, const float* dy, float* dx, float* dw,
                          float* db) {
  prepare_backward();
  diff_bias_.set_data_handle(db);
  dnnl::memory& diff_weights = bww_dw_.target(dw);
  dnnl::memory& diff_dst = bww_dy_.load(stream, dy);
  // Backward-weights usually wants x in the forward's layout: reuse the forward's copy.
  const bool reuse_x = x == last_x_ && bwd_weights_pd_.src_desc() == fwd_pd_.src_desc();
  bwd_weights_.execute(stream, {{DNNL_ARG_SRC, reuse_x ? fwd_x_.current() : bww_x_.load(stream, x)},
                                {DNNL_ARG_DIFF_DST, diff_dst},
                                {DNNL_ARG_DIFF_WEIGHTS, diff_weights},
                                {DNNL_ARG_DIFF_BIAS, diff_bias_}});
  bww_dw_.store(stream);
  if (dx) {
    // Both backward primitives usually want dy in the same layout: reorder it once.
    const bool shared_dy = bwd_data_pd_.diff_dst_desc() == bwd_weights_pd_.diff_dst_desc();
    dnnl::memory& src_grad = bwd_dx_.target(dx);
    bwd_data_.execute(stream, {{DNNL_ARG_DIFF_DST, shared_dy ? diff_dst : bwd_dy_.load(stream, dy)},
                               {DNNL_ARG_WEIGHTS, bwd_w_.load(stream, w)},
                               {DNNL_ARG_DIFF_SRC, src_grad}});
    bwd_dx_.store(stream);
  }
  stream.wait();
}

std::string OnednnConv::describe() const {
  return std::string("fwd=") + fwd_pd_.impl_info_str() + " bwd_data=" + bwd_data_pd_.impl_info_str() +
         " bwd_weights=" + bwd_weights_pd_.impl_info_str();
}

}  // namespace kd::fast
