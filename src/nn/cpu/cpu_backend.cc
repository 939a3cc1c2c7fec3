// The optimised CPU backend: compiles a shape-inferred Graph into a flat list of steps over
// one preallocated arena.
//
// Layout: every float rank-4 activation lives in oneDNN's nChw8c (channels padded to 8: one
// pixel's 8 channels are one AVX2 register), converted once where the graph's NCHW inputs
// enter and its outputs leave. Convolutions (1x1, depthwise, dense) run as oneDNN jit:avx2
// primitives with bias, the residual (sum post-op, computed in place in the residual's
// buffer) and the activation fused; a Sigmoid/Relu that alone reads a conv becomes a post-op
// too. Concat, Add and stand-alone activations are oneDNN primitives; Resize is ours
// (blocked_kernels.h), written straight into a Concat's slice when the Concat alone reads it.
//
// Library choice, measured with bench/cpu_conv1x1_bench.cc on the generator's 1x1 shapes
// (this 2-core Zen 3, 2 threads): oneDNN's nChw8c jit_1x1:avx2 ran 2x-5x faster than OpenBLAS
// sgemm on NCHW plus a bias/ReLU pass (e.g. 64->128 at 160x160: 8.3 ms vs 42.9 ms; 1024->2048
// at 10x10: 8.2 vs 44.2 ms), so OpenBLAS is not used.
//
// Ops without a native kernel here run through the reference kernels (run_ref_node) on NCHW
// tensors, so every graph the reference backend runs also runs here.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <oneapi/dnnl/dnnl.hpp>
#include <string>
#include <unordered_map>
#include <vector>

#include "nn/backend.h"
#include "nn/cpu/blocked_kernels.h"
#include "nn/cpu/memory_plan.h"
#include "nn/ops/op_params.h"
#include "nn/ref/ref_kernels.h"

namespace tr::nn {

namespace cpu {
namespace {

using dnnl::memory;
using Tag = memory::format_tag;
using DataType = memory::data_type;

memory::dims to_dims(const Shape& s) { return memory::dims(s.begin(), s.end()); }
memory::desc blocked_desc(const Shape& s) {
  return memory::desc(to_dims(s), DataType::f32, Tag::nChw8c);
}
memory::desc plain_desc(const Shape& s) {
  return memory::desc(to_dims(s), DataType::f32, Tag::nchw);
}
dnnl::reorder make_reorder(const dnnl::engine& eng, const memory::desc& src,
                           const memory::desc& dst) {
  return dnnl::reorder(dnnl::reorder::primitive_desc(eng, src, eng, dst));
}

// A buffer in the arena holding one (or, through aliases and in-place ops, several) values in
// nChw8c.
struct Store {
  memory::desc md;
  memory mem;  // its data handle is set to the arena once the plan is known
  int first_step = INT_MAX, last_step = -1;
};

class CpuExecutable final : public Executable {
 public:
  CpuExecutable(const dnnl::engine& eng, int threads, std::string name)
      : eng_(eng), stream_(eng), threads_(threads), name_(std::move(name)) {}

  Result<std::vector<Tensor>> run(const std::vector<Tensor>& inputs) override;

  // Filled by the compiler.
  dnnl::engine eng_;
  dnnl::stream stream_;
  int threads_;
  std::string name_;
  std::vector<Store> stores_;
  std::vector<Tensor> plain_;  // NCHW tensors: inputs, constants, fallback values
  std::vector<std::function<Status()>> steps_;
  // TR_CPU_PROFILE=1: per-step wall time, summed over runs and printed when destroyed.
  std::vector<std::string> step_labels_;
  std::vector<double> step_ms_;
  int profiled_runs_ = 0;
  ~CpuExecutable() override;
  std::shared_ptr<uint8_t> arena_;
  memory scratchpad_;
  struct InputSlot {
    int plain_slot;
    Shape shape;
    DType dtype;
  };
  std::vector<InputSlot> inputs_;
  struct OutputSlot {
    int store = -1;       // read from the arena when >= 0
    int plain_slot = -1;  // else from this plain slot
    Shape shape;
    dnnl::reorder to_plain;  // store -> NCHW when store >= 0
  };
  std::vector<OutputSlot> outputs_;
};

Result<std::vector<Tensor>> CpuExecutable::run(const std::vector<Tensor>& inputs) {
  if (inputs.size() != inputs_.size())
    return BadInput(name_ + ": expected " + std::to_string(inputs_.size()) + " inputs, got " +
                    std::to_string(inputs.size()));
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (inputs[i].shape() != inputs_[i].shape || inputs[i].dtype() != inputs_[i].dtype)
      return BadInput(name_ + ": input " + std::to_string(i) + " is " +
                      shape_str(inputs[i].shape()) + " " + dtype_name(inputs[i].dtype()) +
                      ", compiled for " + shape_str(inputs_[i].shape) + " " +
                      dtype_name(inputs_[i].dtype));
    plain_[inputs_[i].plain_slot] = inputs[i];
  }
  // OpenMP's thread count is per calling thread, so concurrent Executables don't interfere.
  omp_set_num_threads(threads_);
  std::vector<Tensor> outs;
  try {
    if (step_ms_.empty()) {
      for (auto& step : steps_) TR_RETURN_IF_ERROR(step());
    } else {
      ++profiled_runs_;
      for (size_t i = 0; i < steps_.size(); ++i) {
        const auto t0 = std::chrono::steady_clock::now();
        TR_RETURN_IF_ERROR(steps_[i]());
        step_ms_[i] +=
            std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
                .count();
      }
    }
    for (OutputSlot& o : outputs_) {
      if (o.store < 0) {
        outs.push_back(plain_[o.plain_slot].clone());
        continue;
      }
      Tensor t = Tensor::f32(o.shape);
      memory dst(plain_desc(o.shape), eng_, t.raw());
      o.to_plain.execute(stream_, stores_[o.store].mem, dst);
      outs.push_back(std::move(t));
    }
    stream_.wait();
  } catch (const dnnl::error& e) {
    return RuntimeError(name_ + ": oneDNN failed while running: " + e.what());
  }
  // Inputs are the caller's: drop our references.
  for (const InputSlot& in : inputs_) plain_[in.plain_slot] = Tensor();
  return outs;
}

CpuExecutable::~CpuExecutable() {
  if (profiled_runs_ == 0) return;
  std::vector<size_t> order(steps_.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return step_ms_[a] > step_ms_[b]; });
  double total = 0;
  for (double t : step_ms_) total += t;
  std::fprintf(stderr, "[cpu] profile of %s over %d runs: %.1f ms per run\n", name_.c_str(),
               profiled_runs_, total / profiled_runs_);
  for (size_t i : order)
    std::fprintf(stderr, "[cpu] %8.2f ms %5.1f%%  %s\n", step_ms_[i] / profiled_runs_,
                 100 * step_ms_[i] / total, step_labels_[i].c_str());
}

// Builds a CpuExecutable from a graph, node by node.
class Compiler {
 public:
  Compiler(const Graph& g, CpuExecutable& ex) : g_(g), ex_(ex) {}
  Status compile();

 private:
  bool is_blockable(ValueId v) const {
    const Value& val = g_.values[v];
    return val.dtype == DType::kFloat32 && val.shape.size() == 4 && !val.is_constant();
  }
  const Shape& shape(ValueId v) const { return g_.values[v].shape; }
  std::string where(const Node& n) const { return g_.name + ": " + n.describe(); }
  int cur_step() const { return static_cast<int>(ex_.steps_.size()); }

  int new_store(const Shape& s) {
    Store st;
    st.md = blocked_desc(s);
    ex_.stores_.push_back(st);
    return static_cast<int>(ex_.stores_.size()) - 1;
  }
  int new_plain(Tensor t = Tensor()) {
    ex_.plain_.push_back(std::move(t));
    return static_cast<int>(ex_.plain_.size()) - 1;
  }
  void touch(int store, int step) {
    Store& s = ex_.stores_[store];
    s.first_step = std::min(s.first_step, step);
    s.last_step = std::max(s.last_step, step);
  }
  void add_step(std::function<Status()> f, const std::vector<int>& stores_touched) {
    for (int s : stores_touched) touch(s, cur_step());
    ex_.steps_.push_back(std::move(f));
    ex_.step_labels_.push_back(label_);
  }

  // The value's nChw8c store, adding an NCHW -> nChw8c conversion on first need.
  int need_blocked(ValueId v);
  // The value's NCHW plain slot, adding an nChw8c -> NCHW conversion on first need.
  int need_plain(ValueId v);
  // Whether `node` is the last reader of `v`'s buffer (no later node or graph output reads it).
  bool last_reader(ValueId v, size_t node) const { return last_read_[alias_root(v)] == node; }
  ValueId alias_root(ValueId v) const {
    while (alias_of_[v] != kNoId) v = alias_of_[v];
    return v;
  }
  // The only node reading `v`, or kNoId when there are several, none, or v is a graph output.
  NodeId sole_reader(ValueId v) const {
    if (consumers_[v].size() != 1 || is_output_[v]) return kNoId;
    return consumers_[v][0];
  }

  Status add_dnnl_step(const Node& n, const dnnl::primitive_desc_base& pd, dnnl::primitive prim,
                       std::vector<std::pair<int, int>> store_args,
                       std::vector<std::pair<int, memory>> fixed_args);
  std::vector<NodeId> absorb_eltwise(dnnl::post_ops& po, ValueId* y) const;
  NodeId fusable_depthwise(const ConvParams& p, ValueId y) const;
  Status compile_conv(size_t index, const Node& n);
  Status compile_eltwise(size_t index, const Node& n);
  Status compile_add(size_t index, const Node& n);
  Status compile_concat(size_t index, const Node& n);
  Status compile_resize(size_t index, const Node& n);
  Status compile_fallback(size_t index, const Node& n);
  // Native handling, or false when the node must fall back.
  Result<bool> try_native(size_t index, const Node& n);

  const Graph& g_;
  CpuExecutable& ex_;
  std::vector<int> store_of_, plain_of_;
  std::vector<ValueId> alias_of_;
  std::vector<size_t> last_read_;  // per alias root: index of the last reading node
  std::vector<std::vector<NodeId>> consumers_;
  std::vector<bool> is_output_;
  std::vector<bool> done_;  // nodes already emitted as part of an earlier fused step
  // Concat destination slices that a Resize writes straight into: resize output -> concat.
  std::unordered_map<ValueId, std::pair<int, int64_t>> slice_of_;  // store, float offset
  size_t scratch_bytes_ = 0;
  std::string label_;  // the node being compiled, for profiles
};

int Compiler::need_blocked(ValueId v) {
  if (store_of_[v] >= 0) {
    touch(store_of_[v], cur_step());
    return store_of_[v];
  }
  const int slot = need_plain(v);
  const int store = new_store(shape(v));
  store_of_[v] = store;
  dnnl::reorder to_blocked = make_reorder(ex_.eng_, plain_desc(shape(v)), ex_.stores_[store].md);
  memory src(plain_desc(shape(v)), ex_.eng_, DNNL_MEMORY_NONE);
  CpuExecutable* ex = &ex_;
  add_step(
      [ex, to_blocked, src, slot, store]() mutable {
        src.set_data_handle(ex->plain_[slot].raw());
        to_blocked.execute(ex->stream_, src, ex->stores_[store].mem);
        return Status();
      },
      {store});
  return store;
}

int Compiler::need_plain(ValueId v) {
  if (plain_of_[v] >= 0) return plain_of_[v];
  // Constants get a plain slot (a reference to the graph's tensor) only when a step reads
  // them as NCHW: weights that are only reordered into a primitive's layout stay out of the
  // executable, so the graph's copy can be freed once nothing else holds it.
  if (g_.values[v].is_constant()) {
    plain_of_[v] = new_plain(g_.values[v].constant);
    return plain_of_[v];
  }
  const int store = store_of_[v];
  const int slot = new_plain(Tensor::f32(shape(v)));
  plain_of_[v] = slot;
  dnnl::reorder to_plain = make_reorder(ex_.eng_, ex_.stores_[store].md, plain_desc(shape(v)));
  memory dst(plain_desc(shape(v)), ex_.eng_, ex_.plain_[slot].raw());
  CpuExecutable* ex = &ex_;
  add_step(
      [ex, to_plain, dst, store]() mutable {
        to_plain.execute(ex->stream_, ex->stores_[store].mem, dst);
        return Status();
      },
      {store});
  return slot;
}

Status Compiler::add_dnnl_step(const Node& n, const dnnl::primitive_desc_base& pd,
                               dnnl::primitive prim, std::vector<std::pair<int, int>> store_args,
                               std::vector<std::pair<int, memory>> fixed_args) {
  scratch_bytes_ = std::max(scratch_bytes_, pd.scratchpad_desc().get_size());
  if (std::getenv("TR_CPU_VERBOSE"))
    std::fprintf(stderr, "[cpu] %s: %s\n", n.describe().c_str(), pd.impl_info_str());
  std::vector<int> touched;
  for (auto& [arg, store] : store_args) touched.push_back(store);
  CpuExecutable* ex = &ex_;
  add_step(
      [ex, prim, store_args, fixed_args]() {
        std::unordered_map<int, memory> args(fixed_args.begin(), fixed_args.end());
        for (const auto& [arg, store] : store_args) args[arg] = ex->stores_[store].mem;
        args[DNNL_ARG_SCRATCHPAD] = ex->scratchpad_;
        prim.execute(ex->stream_, args);
        return Status();
      },
      touched);
  return Status();
}

void append_activation(dnnl::post_ops& po, const ConvParams& p) {
  if (p.activation == Activation::kRelu)
    po.append_eltwise(1.f, dnnl::algorithm::eltwise_relu, 0, 0);
  if (p.activation == Activation::kLeakyRelu)
    po.append_eltwise(1.f, dnnl::algorithm::eltwise_relu, p.alpha, 0);
}

// A constant weight tensor, reordered once into the layout `md` that a primitive asks for.
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

  dnnl::post_ops po;
  if (residual != kNoId) po.append_sum(1.f);
  append_activation(po, p);
  // With `padded_src`, the input arrives already zero-padded (see below).
  Shape padded_shape = shape(x);
  padded_shape[2] += p.pad_top + p.pad_bottom;
  padded_shape[3] += p.pad_left + p.pad_right;
  // `plain_src`: the input in plain NCHW, which oneDNN's jit kernels take for convs with a
  // few input channels (the audio encoder's 1-channel first layer); with nChw8c input they
  // have no jit kernel for it and fall back to a naive loop that took 88% of the encoder.
  auto make_pd = [&](const dnnl::post_ops& ops, const Shape& dst_shape, bool padded_src,
                     bool plain_src = false) {
    dnnl::primitive_attr attr;
    attr.set_post_ops(ops);
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    const memory::desc w_any(user_weights_desc(p).dims(), DataType::f32, Tag::any);
    const memory::desc bias_md({p.out_c}, DataType::f32, Tag::x);
    const memory::dims pad_l =
        padded_src ? memory::dims{0, 0} : memory::dims{p.pad_top, p.pad_left};
    const memory::dims pad_r =
        padded_src ? memory::dims{0, 0} : memory::dims{p.pad_bottom, p.pad_right};
    dnnl::convolution_forward::desc desc(
        dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct,
        plain_src ? plain_desc(shape(x)) : blocked_desc(padded_src ? padded_shape : shape(x)),
        w_any, bias_md, blocked_desc(dst_shape), {p.stride_h, p.stride_w}, pad_l, pad_r);
    return dnnl::convolution_forward::primitive_desc(desc, attr, ex_.eng_);
  };

  std::vector<std::pair<int, memory>> fixed_args;
  dnnl::convolution_forward::primitive_desc pd;
  ValueId y = n.output(0);
  bool fused = false;
  std::vector<NodeId> absorbed;
  // 1x1 -> depthwise fusion: the expanded tensor never goes to memory. (Not with a residual:
  // the sum post-op would read the depthwise output buffer.)
  if (const NodeId dw_id = residual == kNoId ? fusable_depthwise(p, y) : kNoId; dw_id != kNoId) {
    const Node& dw = g_.nodes[dw_id];
    const ConvParams q = *conv_params(dw, shape(y), shape(dw.input(1)));
    dnnl::post_ops fused_po = po;
    fused_po.append_dw(DataType::f32, DataType::f32, DataType::f32, 3, q.stride_h, 1, 0, {});
    append_activation(fused_po, q);
    ValueId fused_y = dw.output(0);
    std::vector<NodeId> fused_absorbed = absorb_eltwise(fused_po, &fused_y);
    try {
      pd = make_pd(fused_po, shape(y), false);
      if (pd.dst_desc() == blocked_desc(shape(fused_y))) {
        const int dw_arg = DNNL_ARG_ATTR_POST_OP_DW;
        const memory::desc dw_md = pd.query_md(dnnl::query::exec_arg_md, dw_arg | DNNL_ARG_WEIGHTS);
        fixed_args.push_back(
            {dw_arg | DNNL_ARG_WEIGHTS, reordered_weights(ex_.eng_, g_.values[dw.input(1)].constant,
                                                          user_weights_desc(q), dw_md)});
        fixed_args.push_back(
            {dw_arg | DNNL_ARG_BIAS, bias_memory(ex_.eng_, g_, dw.input(2), q.out_c)});
        fused = true;
        y = fused_y;
        absorbed = fused_absorbed;
        absorbed.push_back(dw_id);
      }
    } catch (const dnnl::error&) {
      // oneDNN has no fused implementation for this shape: run the two convs apart.
    }
  }
  bool pad_explicitly = false;
  bool src_plain = false;
  if (!fused) {
    absorbed = absorb_eltwise(po, &y);
    pd = make_pd(po, shape(y), false);
    if (p.in_c < 8 && std::string(pd.impl_info_str()).rfind("ref", 0) == 0) {
      auto plain_pd = make_pd(po, shape(y), false, true);
      if (std::string(plain_pd.impl_info_str()).rfind("ref", 0) != 0) {
        pd = plain_pd;
        src_plain = true;
      }
    }
    // oneDNN's jit kernels refuse padding wider than the kernel allows (the audio path's
    // 3x3 stride-2 pad-3 conv): its fallback is a naive loop, ~100x slower than padding
    // the input ourselves and running the jit kernel with no padding.
    const bool has_pad = p.pad_top || p.pad_left || p.pad_bottom || p.pad_right;
    if (!src_plain && has_pad && std::string(pd.impl_info_str()).rfind("ref", 0) == 0) {
      pd = make_pd(po, shape(y), true);
      pad_explicitly = true;
    }
  }
  for (NodeId r : absorbed) done_[r] = true;
  fixed_args.push_back(
      {DNNL_ARG_WEIGHTS, reordered_weights(ex_.eng_, g_.values[w].constant, user_weights_desc(p),
                                           pd.weights_desc())});
  fixed_args.push_back({DNNL_ARG_BIAS, bias_memory(ex_.eng_, g_, b, p.out_c)});

  int src_store = need_blocked(x);
  if (src_plain) {
    const int plain = new_store(shape(x));
    ex_.stores_[plain].md = plain_desc(shape(x));
    dnnl::reorder copy = make_reorder(ex_.eng_, ex_.stores_[src_store].md, ex_.stores_[plain].md);
    CpuExecutable* ex = &ex_;
    add_step(
        [ex, copy, src_store, plain]() mutable {
          copy.execute(ex->stream_, ex->stores_[src_store].mem, ex->stores_[plain].mem);
          return Status();
        },
        {src_store, plain});
    src_store = plain;
  }
  if (pad_explicitly) {
    const int padded = new_store(padded_shape);
    const memory::desc inner =
        ex_.stores_[padded].md.submemory_desc(to_dims(shape(x)), {0, 0, p.pad_top, p.pad_left});
    dnnl::reorder copy = make_reorder(ex_.eng_, ex_.stores_[src_store].md, inner);
    CpuExecutable* ex = &ex_;
    add_step(
        [ex, copy, inner, src_store, padded]() mutable {
          // The arena is shared: the border must be zeroed on every run.
          memory& dst = ex->stores_[padded].mem;
          std::memset(dst.get_data_handle(), 0, dst.get_desc().get_size());
          memory inner_mem(inner, ex->eng_, dst.get_data_handle());
          copy.execute(ex->stream_, ex->stores_[src_store].mem, inner_mem);
          return Status();
        },
        {src_store, padded});
    src_store = padded;
  }
  int dst_store;
  if (residual != kNoId) {
    const int res_store = need_blocked(residual);
    if (last_reader(residual, index) && alias_root(residual) != alias_root(x)) {
      dst_store = res_store;  // accumulate in place: the residual dies here
    } else {
      dst_store = new_store(shape(y));
      dnnl::reorder copy =
          make_reorder(ex_.eng_, ex_.stores_[res_store].md, ex_.stores_[dst_store].md);
      CpuExecutable* ex = &ex_;
      add_step(
          [ex, copy, res_store, dst_store]() mutable {
            copy.execute(ex->stream_, ex->stores_[res_store].mem, ex->stores_[dst_store].mem);
            return Status();
          },
          {res_store, dst_store});
    }
  } else {
    dst_store = new_store(shape(y));
  }
  store_of_[y] = dst_store;
  return add_dnnl_step(n, pd, dnnl::convolution_forward(pd),
                       {{DNNL_ARG_SRC, src_store}, {DNNL_ARG_DST, dst_store}}, fixed_args);
}

Status Compiler::compile_eltwise(size_t index, const Node& n) {
  const ValueId x = n.input(0), y = n.output(0);
  dnnl::algorithm alg = dnnl::algorithm::eltwise_relu;
  float alpha = 0.f;
  if (n.op == OpKind::kSigmoid) alg = dnnl::algorithm::eltwise_logistic;
  if (n.op == OpKind::kLeakyRelu) alpha = n.attr_float("alpha", 0.01f);
  const int src = need_blocked(x);
  const int dst = last_reader(x, index) ? src : new_store(shape(y));
  store_of_[y] = dst;
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  dnnl::eltwise_forward::primitive_desc pd(
      {dnnl::prop_kind::forward_inference, alg, ex_.stores_[src].md, alpha, 0.f}, attr, ex_.eng_);
  return add_dnnl_step(n, pd, dnnl::eltwise_forward(pd), {{DNNL_ARG_SRC, src}, {DNNL_ARG_DST, dst}},
                       {});
}

Status Compiler::compile_add(size_t index, const Node& n) {
  const ValueId a = n.input(0), b = n.input(1), y = n.output(0);
  const int sa = need_blocked(a), sb = need_blocked(b);
  int dst;
  if (last_reader(a, index) && alias_root(a) != alias_root(b))
    dst = sa;
  else if (last_reader(b, index) && alias_root(a) != alias_root(b))
    dst = sb;
  else
    dst = new_store(shape(y));
  store_of_[y] = dst;
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  const memory::desc md = blocked_desc(shape(y));
  dnnl::binary::primitive_desc pd({dnnl::algorithm::binary_add, md, md, md}, attr, ex_.eng_);
  return add_dnnl_step(n, pd, dnnl::binary(pd),
                       {{DNNL_ARG_SRC_0, sa}, {DNNL_ARG_SRC_1, sb}, {DNNL_ARG_DST, dst}}, {});
}

Status Compiler::compile_concat(size_t index, const Node& n) {
  const ValueId y = n.output(0);
  // Inputs that a Resize already wrote into our destination need no copy.
  int dst = -1;
  for (ValueId v : n.inputs)
    if (auto it = slice_of_.find(v); it != slice_of_.end()) dst = it->second.first;
  if (dst < 0) dst = new_store(shape(y));
  store_of_[y] = dst;
  std::vector<memory::desc> src_mds;
  std::vector<std::pair<int, int>> store_args;
  int64_t channel = 0;
  for (ValueId v : n.inputs) {
    const int64_t c = shape(v)[1];
    if (!slice_of_.count(v)) {
      store_args.push_back(
          {DNNL_ARG_MULTIPLE_SRC + static_cast<int>(src_mds.size()), need_blocked(v)});
      src_mds.push_back(ex_.stores_[store_args.back().second].md);
    }
    channel += c;
  }
  store_args.push_back({DNNL_ARG_DST, dst});
  if (src_mds.size() == n.inputs.size()) {
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    dnnl::concat::primitive_desc pd(ex_.stores_[dst].md, 1, src_mds, ex_.eng_, attr);
    return add_dnnl_step(n, pd, dnnl::concat(pd), store_args, {});
  }
  // Some inputs are in place: copy the others into their channel slices one by one.
  channel = 0;
  size_t k = 0;
  for (ValueId v : n.inputs) {
    const Shape& s = shape(v);
    if (!slice_of_.count(v)) {
      const memory::desc slice_md =
          ex_.stores_[dst].md.submemory_desc(to_dims(s), {0, channel, 0, 0});
      const int src = store_args[k++].second;
      dnnl::reorder copy = make_reorder(ex_.eng_, ex_.stores_[src].md, slice_md);
      CpuExecutable* ex = &ex_;
      add_step(
          [ex, copy, src, dst, slice_md]() mutable {
            memory slice(slice_md, ex->eng_, ex->stores_[dst].mem.get_data_handle());
            copy.execute(ex->stream_, ex->stores_[src].mem, slice);
            return Status();
          },
          {src, dst});
    } else {
      touch(dst, cur_step());
    }
    channel += s[1];
  }
  return Status();
}

Status Compiler::compile_resize(size_t index, const Node& n) {
  const ValueId x = n.input(0), y = n.output(0);
  const Tensor* scales = n.input(2) != kNoId ? &g_.values[n.input(2)].constant : nullptr;
  const Tensor* sizes = n.input(3) != kNoId ? &g_.values[n.input(3)].constant : nullptr;
  if (scales && scales->empty()) scales = nullptr;
  if (sizes && sizes->empty()) sizes = nullptr;
  TR_ASSIGN_OR_RETURN(ResizeParams p, resize_params(n, shape(x), scales, sizes));
  const int src = need_blocked(x);
  int dst;
  int64_t offset = 0, batch_stride = 0;
  auto slice = slice_of_.find(y);
  if (slice != slice_of_.end()) {
    dst = slice->second.first;
    offset = slice->second.second;
    const memory::dims full = ex_.stores_[dst].md.dims();
    batch_stride = channel_blocks(full[1]) * kBlock * full[2] * full[3];
  } else {
    dst = new_store(shape(y));
    store_of_[y] = dst;
  }
  CpuExecutable* ex = &ex_;
  add_step(
      [ex, p, src, dst, offset, batch_stride]() {
        const float* in = static_cast<const float*>(ex->stores_[src].mem.get_data_handle());
        float* out = static_cast<float*>(ex->stores_[dst].mem.get_data_handle()) + offset;
        resize_nchw8c(p, in, out, batch_stride);
        return Status();
      },
      {src, dst});
  return Status();
}

Status Compiler::compile_fallback(size_t index, const Node& n) {
  // A fallback Resize can't write into a Concat's slice: the Concat copies its output.
  for (ValueId v : n.outputs) slice_of_.erase(v);
  std::vector<int> in_slots;
  for (ValueId v : n.inputs) in_slots.push_back(v == kNoId ? -1 : need_plain(v));
  std::vector<int> out_slots;
  for (ValueId v : n.outputs) {
    out_slots.push_back(v == kNoId ? -1 : new_plain());
    if (v != kNoId) plain_of_[v] = out_slots.back();
  }
  CpuExecutable* ex = &ex_;
  const Node node = n;
  add_step(
      [ex, node, in_slots, out_slots]() -> Status {
        std::vector<const Tensor*> in;
        for (int s : in_slots) in.push_back(s < 0 ? nullptr : &ex->plain_[s]);
        TR_ASSIGN_OR_RETURN(std::vector<Tensor> out, run_ref_node(node, in));
        for (size_t i = 0; i < out_slots.size() && i < out.size(); ++i)
          if (out_slots[i] >= 0) ex->plain_[out_slots[i]] = std::move(out[i]);
        return Status();
      },
      {});
  return Status();
}

Result<bool> Compiler::try_native(size_t index, const Node& n) {
  const ValueId x = n.input(0);
  switch (n.op) {
    case OpKind::kConv:
    case OpKind::kFusedConv: {
      const ValueId w = n.input(1), b = n.input(2);
      if (!is_blockable(x) || !g_.values[w].is_constant() || shape(w).size() != 4 ||
          g_.values[w].dtype != DType::kFloat32 || (b != kNoId && !g_.values[b].is_constant()))
        return false;
      if (n.op == OpKind::kFusedConv && n.input(3) != kNoId && !is_blockable(n.input(3)))
        return false;
      // Dilated convolutions run on the reference kernel (compile_conv ignores dilation).
      if (auto cp = conv_params(n, shape(x), shape(w)); cp.ok() && cp->is_dilated()) return false;
      TR_RETURN_IF_ERROR(compile_conv(index, n));
      return true;
    }
    case OpKind::kRelu:
    case OpKind::kSigmoid:
    case OpKind::kLeakyRelu:
      if (!is_blockable(x)) return false;
      TR_RETURN_IF_ERROR(compile_eltwise(index, n));
      return true;
    case OpKind::kAdd:
      if (!is_blockable(x) || !is_blockable(n.input(1)) || shape(x) != shape(n.input(1)))
        return false;
      TR_RETURN_IF_ERROR(compile_add(index, n));
      return true;
    case OpKind::kConcat: {
      if (n.inputs.empty() || shape(n.output(0)).size() != 4) return false;
      TR_ASSIGN_OR_RETURN(int64_t axis, normalize_axis(n, n.attr_int("axis", 0), 4));
      if (axis != 1) return false;
      for (ValueId v : n.inputs)
        if (v == kNoId || !is_blockable(v)) return false;
      TR_RETURN_IF_ERROR(compile_concat(index, n));
      return true;
    }
    case OpKind::kResize: {
      if (!is_blockable(x)) return false;
      for (size_t i = 1; i < n.inputs.size(); ++i)
        if (n.input(i) != kNoId && !g_.values[n.input(i)].is_constant()) return false;
      const Shape& out = shape(n.output(0));
      if (out[0] != shape(x)[0] || out[1] != shape(x)[1]) return false;
      const std::string mode = n.attr_string("mode", "nearest");
      if (mode != "linear" && mode != "nearest") return false;
      TR_RETURN_IF_ERROR(compile_resize(index, n));
      return true;
    }
    case OpKind::kIdentity:
    case OpKind::kPad: {
      if (!is_blockable(x) || store_of_[x] < 0) return false;
      if (n.op == OpKind::kPad) {
        const ValueId pads = n.input(1), value = n.input(2);
        if (pads == kNoId && !n.has_attr("pads")) return false;
        if (pads != kNoId && !g_.values[pads].is_constant()) return false;
        if (value != kNoId && !g_.values[value].is_constant()) return false;
        if (n.attr_string("mode", "constant") != "constant") return false;
        auto pp = pad_params(n, shape(x), pads != kNoId ? &g_.values[pads].constant : nullptr,
                             value != kNoId ? &g_.values[value].constant : nullptr);
        if (!pp.ok() || !pp->is_noop()) return false;
      }
      // A no-op: the output is the input's buffer.
      store_of_[n.output(0)] = store_of_[x];
      touch(store_of_[x], cur_step());
      return true;
    }
    default:
      return false;
  }
}

Status Compiler::compile() {
  const size_t nv = g_.values.size();
  store_of_.assign(nv, -1);
  plain_of_.assign(nv, -1);
  alias_of_.assign(nv, kNoId);
  is_output_.assign(nv, false);
  done_.assign(g_.nodes.size(), false);
  consumers_ = g_.consumers();
  for (ValueId v : g_.outputs) is_output_[v] = true;
  for (const Value& v : g_.values)
    if (!v.shape_concrete())
      return BadInput(g_.name + ": value '" + v.name + "' has no concrete shape");

  // No-op nodes alias their input (they never copy); lifetimes are tracked per alias root.
  for (const Node& n : g_.nodes)
    if ((n.op == OpKind::kIdentity || n.op == OpKind::kPad) && n.input(0) != kNoId)
      alias_of_[n.output(0)] = n.input(0);
  last_read_.assign(nv, 0);
  for (size_t i = 0; i < g_.nodes.size(); ++i)
    for (ValueId v : g_.nodes[i].inputs)
      if (v != kNoId) last_read_[alias_root(v)] = std::max(last_read_[alias_root(v)], i);
  for (ValueId v : g_.outputs) last_read_[alias_root(v)] = SIZE_MAX;

  for (size_t i = 0; i < g_.inputs.size(); ++i) {
    const ValueId v = g_.inputs[i];
    plain_of_[v] = new_plain();
    ex_.inputs_.push_back({plain_of_[v], shape(v), g_.values[v].dtype});
  }

  // Resize outputs that only a channel-Concat reads are written into the Concat's buffer.
  if (!std::getenv("TR_CPU_NO_CONCAT_INPLACE")) {
    for (const Node& n : g_.nodes) {
      if (n.op != OpKind::kConcat || shape(n.output(0)).size() != 4 ||
          n.attr_int("axis", 0) % 4 != 1 || !is_blockable(n.output(0)))
        continue;
      if (!std::all_of(n.inputs.begin(), n.inputs.end(),
                       [&](ValueId v) { return v != kNoId && is_blockable(v); }))
        continue;
      // Slices must start on an 8-channel block (a Resize writes whole blocks).
      if (!std::all_of(n.inputs.begin(), n.inputs.end() - 1,
                       [&](ValueId v) { return shape(v)[1] % kBlock == 0; }))
        continue;
      int64_t channel = 0;
      int dst = -1;
      for (ValueId v : n.inputs) {
        const Value& val = g_.values[v];
        const bool from_resize = val.producer != kNoId &&
                                 g_.nodes[val.producer].op == OpKind::kResize &&
                                 sole_reader(v) != kNoId;
        if (from_resize) {
          if (dst < 0) dst = new_store(shape(n.output(0)));
          const Shape& s = shape(n.output(0));
          slice_of_[v] = {dst, channel * s[2] * s[3]};
        }
        channel += val.shape[1];
      }
    }
  }

  try {
    for (size_t i = 0; i < g_.nodes.size(); ++i) {
      const Node& n = g_.nodes[i];
      if (done_[i]) continue;
      label_ = n.describe();
      TR_ASSIGN_OR_RETURN(bool native, try_native(i, n));
      if (!native) {
        label_ += " (reference kernel)";
        TR_RETURN_IF_ERROR(compile_fallback(i, n));
      }
    }
    if (std::getenv("TR_CPU_PROFILE")) ex_.step_ms_.assign(ex_.steps_.size(), 0.0);
    for (ValueId v : g_.outputs) {
      CpuExecutable::OutputSlot o;
      o.shape = shape(v);
      if (plain_of_[v] >= 0 || store_of_[v] < 0) {
        // A graph output that is a constant gets its (lazy) plain slot here.
        o.plain_slot = g_.values[v].is_constant() ? need_plain(v) : plain_of_[v];
      } else {
        o.store = store_of_[v];
        touch(o.store, cur_step());
        o.to_plain = make_reorder(ex_.eng_, ex_.stores_[o.store].md, plain_desc(o.shape));
      }
      ex_.outputs_.push_back(std::move(o));
    }
    // Plan the arena and point every store at its place.
    std::vector<BufferLifetime> lifetimes;
    for (const Store& s : ex_.stores_)
      lifetimes.push_back(
          {s.md.get_size(), s.first_step == INT_MAX ? 0 : s.first_step, std::max(s.last_step, 0)});
    const ArenaPlan plan = plan_arena(lifetimes);
    ex_.arena_.reset(static_cast<uint8_t*>(std::aligned_alloc(64, plan.total_bytes + 64)),
                     [](uint8_t* p) { std::free(p); });
    for (size_t i = 0; i < ex_.stores_.size(); ++i)
      ex_.stores_[i].mem = memory(ex_.stores_[i].md, ex_.eng_, ex_.arena_.get() + plan.offsets[i]);
    ex_.scratchpad_ =
        memory(memory::desc({static_cast<memory::dim>(scratch_bytes_ + 64)}, DataType::u8, Tag::x),
               ex_.eng_);
    if (std::getenv("TR_CPU_VERBOSE"))
      std::fprintf(stderr, "[cpu] %zu steps, arena %.1f MB, scratchpad %.1f MB\n",
                   ex_.steps_.size(), plan.total_bytes / 1e6, scratch_bytes_ / 1e6);
  } catch (const dnnl::error& e) {
    return RuntimeError(g_.name + ": oneDNN could not build a primitive: " + e.what());
  }
  return Status();
}

class CpuBackend final : public Backend {
 public:
  CpuBackend() : eng_(dnnl::engine::kind::cpu, 0) {}
  const char* name() const override { return "cpu"; }
  Result<std::unique_ptr<Executable>> compile(const Graph& g, int threads) override {
    if (threads <= 0) threads = omp_get_num_procs();
    auto ex = std::make_unique<CpuExecutable>(eng_, threads, g.name);
    // Weight reorders and primitive creation use the threads of the Session too.
    omp_set_num_threads(threads);
    Compiler c(g, *ex);
    TR_RETURN_IF_ERROR(c.compile());
    return std::unique_ptr<Executable>(std::move(ex));
  }

 private:
  dnnl::engine eng_;
};

}  // namespace
}  // namespace cpu

std::unique_ptr<Backend> make_cpu_backend() { return std::make_unique<cpu::CpuBackend>(); }

}  // namespace tr::nn
