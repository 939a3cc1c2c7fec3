// Convolutions on the cpu backend: 1x1, depthwise and dense, as oneDNN primitives with bias,
// the residual (sum post-op, computed in place in the residual's buffer) and the activation
// fused; a Sigmoid/Relu that alone reads a conv becomes a post-op too, and a depthwise 3x3
// that alone reads a 1x1 conv is fused into it (append_dw).
//
// Weights are reordered once, at compile, into the layout (and, in bf16, the type) the
// primitive asks for; the executable keeps only that packed copy.
//
// Library choice, measured with bench/cpu_conv1x1_bench.cc on the generator's 1x1 shapes
// (2-core Zen 3, 2 threads): oneDNN's nChw8c jit_1x1:avx2 ran 2x-5x faster than OpenBLAS
// sgemm on NCHW plus a bias/ReLU pass, so OpenBLAS is not used. On a 2-core Zen 5 (AVX-512,
// AVX512_BF16) the same shapes ran at 180-216 GFLOP/s in nChw8c f32 (jit_1x1:avx2), 365-405
// in nChw16c f32 (jit_1x1:avx512_core) and 719-812 in nChw16c bf16 (jit_bf16_1x1), which is
// why the block and the type are chosen per CPU (cpu_backend.cc).
#include <cstdlib>
#include <cstring>
#include <string>

#include "nn/cpu/cpu_compiler.h"

namespace tr::nn::cpu {

namespace {

void append_activation(dnnl::post_ops& po, const ConvParams& p) {
  if (p.activation == Activation::kRelu)
    po.append_eltwise(1.f, dnnl::algorithm::eltwise_relu, 0, 0);
  if (p.activation == Activation::kLeakyRelu)
    po.append_eltwise(1.f, dnnl::algorithm::eltwise_relu, p.alpha, 0);
}

// A constant weight tensor, reordered (and converted) once into the layout `md` that a
// primitive asks for.
memory reordered_weights(const dnnl::engine& eng, const Tensor& w, const memory::desc& user_md,
                         const memory::desc& md) {
  memory out(md, eng);
  memory user(user_md, eng, const_cast<void*>(w.raw()));
  dnnl::stream s(eng);
  dnnl::reorder(user, out).execute(s, user, out);
  s.wait();
  return out;
}

memory bias_memory(const dnnl::engine& eng, const Graph& g, ValueId b, int64_t channels) {
  memory out(memory::desc({channels}, DataType::f32, Tag::x), eng);
  float* bias = static_cast<float*>(out.get_data_handle());
  if (b != kNoId)
    std::memcpy(bias, g.values[b].constant.raw(), sizeof(float) * channels);
  else
    std::fill_n(bias, channels, 0.f);
  return out;
}

memory::desc user_weights_desc(const ConvParams& p) {
  if (p.group == 1)
    return memory::desc({p.out_c, p.in_c, p.kernel_h, p.kernel_w}, DataType::f32, Tag::oihw);
  return memory::desc({p.group, p.out_c_per_group(), p.in_c_per_group(), p.kernel_h, p.kernel_w},
                      DataType::f32, Tag::goihw);
}

// oneDNN's naive loops ("ref:any"); not "ref_fused_convolution", which chains jit kernels.
bool is_ref(const dnnl::primitive_desc_base& pd) {
  const std::string impl = pd.impl_info_str();
  return impl.rfind("ref", 0) == 0 && impl.rfind("ref_fused", 0) != 0;
}

}  // namespace

// Appends the element-wise nodes that alone read `*y` (a Relu / LeakyRelu / Sigmoid chain)
// to `po`, moving `*y` to the chain's end; returns the nodes absorbed.
std::vector<NodeId> Compiler::absorb_eltwise(dnnl::post_ops& po, ValueId* y) const {
  std::vector<NodeId> absorbed;
  for (NodeId r = sole_reader(*y); r != kNoId; r = sole_reader(*y)) {
    const Node& next = g_.nodes[r];
    if (next.op == OpKind::kRelu) {
      po.append_eltwise(1.f, dnnl::algorithm::eltwise_relu, 0, 0);
    } else if (next.op == OpKind::kLeakyRelu) {
      po.append_eltwise(1.f, dnnl::algorithm::eltwise_relu, next.attr_float("alpha", 0.01f), 0);
    } else if (next.op == OpKind::kSigmoid) {
      po.append_eltwise(1.f, dnnl::algorithm::eltwise_logistic, 0, 0);
    } else {
      break;
    }
    absorbed.push_back(r);
    *y = next.output(0);
  }
  return absorbed;
}

// The depthwise 3x3 conv that alone reads a 1x1 conv's output `y` and that oneDNN can fuse
// into it (the append_dw post-op: pad 1, stride 1 or 2, no residual); kNoId when none.
NodeId Compiler::fusable_depthwise(const ConvParams& p, ValueId y) const {
  static const bool enabled = [] {
    const char* e = std::getenv("TR_CPU_FUSE_DW");
    return !e || std::string(e) != "0";
  }();
  if (!enabled || p.group != 1 || p.kernel_h != 1 || p.kernel_w != 1 || p.stride_h != 1 ||
      p.stride_w != 1 || p.pad_top || p.pad_left || p.pad_bottom || p.pad_right)
    return kNoId;
  const NodeId r = sole_reader(y);
  if (r == kNoId) return kNoId;
  const Node& dw = g_.nodes[r];
  if ((dw.op != OpKind::kConv && dw.op != OpKind::kFusedConv) || dw.input(0) != y ||
      (dw.op == OpKind::kFusedConv && dw.input(3) != kNoId) ||
      !g_.values[dw.input(1)].is_constant() ||
      (dw.input(2) != kNoId && !g_.values[dw.input(2)].is_constant()))
    return kNoId;
  auto q = conv_params(dw, shape(y), shape(dw.input(1)));
  if (!q.ok() || q->is_dilated() || !q->is_depthwise() || q->kernel_h != 3 || q->kernel_w != 3 ||
      q->stride_h != q->stride_w || q->stride_h > 2 || q->pad_top != 1 || q->pad_left != 1 ||
      q->pad_bottom != 1 || q->pad_right != 1)
    return kNoId;
  return r;
}

// Conv / FusedConv (+ the element-wise nodes that alone read it, + a depthwise conv that
// alone reads a 1x1 conv) as one oneDNN convolution.
Status Compiler::compile_conv(size_t index, const Node& n) {
  const ValueId x = n.input(0), w = n.input(1), b = n.input(2);
  const ValueId residual = n.op == OpKind::kFusedConv ? n.input(3) : kNoId;
  TR_ASSIGN_OR_RETURN(ConvParams p, conv_params(n, shape(x), shape(w)));

  // dnnl::post_ops is a shared handle (copies alias): each variant is built afresh.
  auto base_po = [&]() {
    dnnl::post_ops ops;
    if (residual != kNoId) ops.append_sum(1.f);
    append_activation(ops, p);
    return ops;
  };
  dnnl::post_ops po;
  ValueId y = n.output(0);
  std::vector<NodeId> absorbed;
  dnnl::post_ops plain_po = base_po();
  ValueId plain_y = y;
  std::vector<NodeId> plain_absorbed = absorb_eltwise(plain_po, &plain_y);

  // Types. In bf16, the conv that reads a graph input (the image) and the one that writes a
  // graph output (the output conv and its sigmoid) compute in float32: they set the output's
  // quality and are a small share of the time. TR_CPU_BF16_ALL=1 converts them too (for
  // measuring what keeping them costs in quality).
  static const bool bf16_all = std::getenv("TR_CPU_BF16_ALL") != nullptr;
  const bool reads_input = g_.values[alias_root(x)].producer == kNoId;
  const bool writes_output = is_output_[plain_y];
  const bool conv_bf16 = opts_.bf16 && (bf16_all || (!reads_input && !writes_output));
  DataType src_dt = conv_bf16 ? DataType::bf16 : DataType::f32;
  // The output in the plan's activation type, except graph outputs (always float32).
  DataType dst_dt = writes_output ? DataType::f32 : act_dt_;

  // With `padded_src`, the input arrives already zero-padded (see below).
  Shape padded_shape = shape(x);
  padded_shape[2] += p.pad_top + p.pad_bottom;
  padded_shape[3] += p.pad_left + p.pad_right;
  // `plain_src`: the input in plain NCHW, which oneDNN's jit kernels take for convs with a
  // few input channels (the audio encoder's 1-channel first layer); with blocked input they
  // have no jit kernel for it and fall back to a naive loop that took 88% of the encoder.
  auto make_pd = [&](const dnnl::post_ops& ops, const Shape& dst_shape, DataType ddt,
                     bool padded_src, bool plain_src = false) {
    dnnl::primitive_attr attr;
    attr.set_post_ops(ops);
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    const memory::desc w_any(user_weights_desc(p).dims(), src_dt, Tag::any);
    const memory::desc bias_md({p.out_c}, DataType::f32, Tag::x);
    const memory::dims pad_l =
        padded_src ? memory::dims{0, 0} : memory::dims{p.pad_top, p.pad_left};
    const memory::dims pad_r =
        padded_src ? memory::dims{0, 0} : memory::dims{p.pad_bottom, p.pad_right};
    dnnl::convolution_forward::desc desc(
        dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct,
        plain_src ? plain_desc(shape(x), src_dt)
                  : blocked(padded_src ? padded_shape : shape(x), src_dt),
        w_any, bias_md, blocked(dst_shape, ddt), {p.stride_h, p.stride_w}, pad_l, pad_r);
    return dnnl::convolution_forward::primitive_desc(desc, attr, ex_.eng_);
  };

  std::vector<std::pair<int, memory>> fixed_args;
  dnnl::convolution_forward::primitive_desc pd;
  bool fused = false;
  // 1x1 -> depthwise fusion: the expanded tensor never goes to memory. (Not with a residual:
  // the sum post-op would read the depthwise output buffer.)
  if (const NodeId dw_id = residual == kNoId ? fusable_depthwise(p, y) : kNoId; dw_id != kNoId) {
    const Node& dw = g_.nodes[dw_id];
    const ConvParams q = *conv_params(dw, shape(y), shape(dw.input(1)));
    dnnl::post_ops fused_po = base_po();
    ValueId fused_y = dw.output(0);
    // The fused depthwise writes the final output; the 1x1 part computes in src_dt.
    fused_po.append_dw(src_dt, DataType::f32, act_dt_, 3, q.stride_h, 1, 0, {});
    append_activation(fused_po, q);
    std::vector<NodeId> fused_absorbed = absorb_eltwise(fused_po, &fused_y);
    try {
      if (!is_output_[fused_y]) {
        pd = make_pd(fused_po, shape(y), src_dt, false);
        if (pd.dst_desc() == blocked(shape(fused_y), act_dt_) && !is_ref(pd)) {
          const int dw_arg = DNNL_ARG_ATTR_POST_OP_DW;
          const memory::desc dw_md =
              pd.query_md(dnnl::query::exec_arg_md, dw_arg | DNNL_ARG_WEIGHTS);
          fixed_args.push_back({dw_arg | DNNL_ARG_WEIGHTS,
                                reordered_weights(ex_.eng_, g_.values[dw.input(1)].constant,
                                                  user_weights_desc(q), dw_md)});
          fixed_args.push_back(
              {dw_arg | DNNL_ARG_BIAS, bias_memory(ex_.eng_, g_, dw.input(2), q.out_c)});
          fused = true;
          y = fused_y;
          absorbed = fused_absorbed;
          absorbed.push_back(dw_id);
          dst_dt = act_dt_;
        }
      }
    } catch (const dnnl::error&) {
      // oneDNN has no fused implementation for this shape: run the two convs apart.
    }
  }
  bool pad_explicitly = false;
  bool src_plain = false;
  // The unfused conv in the current src_dt / dst_dt: the jit kernel if oneDNN has one.
  auto choose_unfused = [&]() {
    pad_explicitly = src_plain = false;
    // A float32 conv writing bf16 may have no kernel, or only a naive one: write float32
    // then, and let the consumer convert.
    bool have_pd = false;
    if (dst_dt != src_dt) {
      try {
        pd = make_pd(po, shape(y), dst_dt, false);
        have_pd = !is_ref(pd);
      } catch (const dnnl::error&) {
      }
    }
    if (!have_pd) {
      dst_dt = src_dt;
      pd = make_pd(po, shape(y), dst_dt, false);
    }
    if (p.in_c < 8 && is_ref(pd)) {
      auto plain_pd = make_pd(po, shape(y), dst_dt, false, true);
      if (!is_ref(plain_pd)) {
        pd = plain_pd;
        src_plain = true;
      }
    }
    // oneDNN's jit kernels refuse padding wider than the kernel allows (the audio path's
    // 3x3 stride-2 pad-3 conv): its fallback is a naive loop, ~100x slower than padding
    // the input ourselves and running the jit kernel with no padding.
    const bool has_pad = p.pad_top || p.pad_left || p.pad_bottom || p.pad_right;
    if (!src_plain && has_pad && is_ref(pd)) {
      pd = make_pd(po, shape(y), dst_dt, true);
      pad_explicitly = true;
    }
  };
  if (!fused) {
    po = plain_po;
    y = plain_y;
    absorbed = plain_absorbed;
    bool ok = false;
    try {
      choose_unfused();
      ok = src_dt == DataType::f32 || !is_ref(pd);
    } catch (const dnnl::error&) {
      if (src_dt == DataType::f32) throw;
    }
    // A bf16 conv with no jit kernel (e.g. a few input channels) computes in float32.
    if (!ok) {
      src_dt = DataType::f32;
      dst_dt = writes_output ? DataType::f32 : act_dt_;
      choose_unfused();
    }
  }
  for (NodeId r : absorbed) done_[r] = true;
  fixed_args.push_back(
      {DNNL_ARG_WEIGHTS, reordered_weights(ex_.eng_, g_.values[w].constant, user_weights_desc(p),
                                           pd.weights_desc())});
  fixed_args.push_back({DNNL_ARG_BIAS, bias_memory(ex_.eng_, g_, b, p.out_c)});

  int src_store = need_blocked_as(x, src_dt);
  if (src_plain) {
    const int plain = new_store(shape(x), src_dt);
    ex_.stores_[plain].md = plain_desc(shape(x), src_dt);
    add_copy_step(src_store, plain);
    src_store = plain;
  }
  if (pad_explicitly) {
    const int padded = new_store(padded_shape, src_dt);
    const memory::desc inner =
        ex_.stores_[padded].md.submemory_desc(to_dims(shape(x)), {0, 0, p.pad_top, p.pad_left});
    auto [copy, impl] = make_reorder(ex_.stores_[src_store].md, inner);
    CpuExecutable* ex = &ex_;
    add_step(
        [ex, copy = copy, inner, src_store, padded]() mutable {
          // The arena is shared: the border must be zeroed on every run.
          memory& dst = ex->stores_[padded].mem;
          std::memset(dst.get_data_handle(), 0, dst.get_desc().get_size());
          memory inner_mem(inner, ex->eng_, dst.get_data_handle());
          copy.execute(ex->stream_, ex->stores_[src_store].mem, inner_mem);
          return Status();
        },
        {src_store, padded}, impl);
    src_store = padded;
  }
  int dst_store;
  if (residual != kNoId) {
    // The sum post-op accumulates in the destination's type.
    const int res_store = need_blocked_as(residual, dst_dt);
    if (last_reader(residual, index) && alias_root(residual) != alias_root(x)) {
      dst_store = res_store;  // accumulate in place: the residual dies here
    } else {
      dst_store = new_store(shape(y), dst_dt);
      add_copy_step(res_store, dst_store);
    }
  } else {
    dst_store = new_store(shape(y), dst_dt);
  }
  store_of_[y] = dst_store;
  return add_dnnl_step(n, pd, dnnl::convolution_forward(pd),
                       {{DNNL_ARG_SRC, src_store}, {DNNL_ARG_DST, dst_store}}, fixed_args);
}

}  // namespace tr::nn::cpu
