// The cpu backend's compiler, everything but convolutions (cpu_conv.cc): conversions between
// the blocked layout and NCHW, element-wise ops, Add, Concat, Resize, reference fallbacks and
// the arena plan.
//
// Concat, Add and stand-alone activations are oneDNN primitives; Resize is ours
// (blocked_kernels.h), written straight into a Concat's slice when the Concat alone reads it.
// Ops without a native kernel here run through the reference kernels (compile_fallback) on
// NCHW tensors, so every graph the reference backend runs also runs here.
#include "nn/cpu/cpu_compiler.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "nn/cpu/blocked_kernels.h"
#include "nn/cpu/memory_plan.h"
#include "nn/op_table.h"
#include "nn/ref/ref_kernels.h"

namespace tr::nn::cpu {

void Compiler::add_step(std::function<Status()> f, const std::vector<int>& stores_touched,
                        std::string impl) {
  for (int s : stores_touched) touch(s, cur_step());
  ex_.steps_.push_back(std::move(f));
  LayerProfile info;
  if (node_) {
    info.layer = node_->name;
    info.op = op_name(node_->op);
  } else {
    info.layer = "(graph outputs)";
    info.op = "Output";
  }
  info.impl = fallback_ ? "talkrender:reference" : std::move(impl);
  ex_.step_info_.push_back(std::move(info));
}

std::pair<dnnl::reorder, std::string> Compiler::make_reorder(const memory::desc& src,
                                                             const memory::desc& dst) const {
  dnnl::reorder::primitive_desc pd(ex_.eng_, src, ex_.eng_, dst);
  return {dnnl::reorder(pd), std::string("reorder:") + pd.impl_info_str()};
}

void Compiler::add_copy_step(int src, int dst) {
  auto [copy, impl] = make_reorder(ex_.stores_[src].md, ex_.stores_[dst].md);
  CpuExecutable* ex = &ex_;
  add_step(
      [ex, copy = copy, src, dst]() mutable {
        copy.execute(ex->stream_, ex->stores_[src].mem, ex->stores_[dst].mem);
        return Status();
      },
      {src, dst}, impl);
}

int Compiler::need_blocked(ValueId v) {
  if (store_of_[v] >= 0) {
    touch(store_of_[v], cur_step());
    return store_of_[v];
  }
  return need_blocked_as(v, act_dt_);
}

int Compiler::need_blocked_as(ValueId v, DataType dt) {
  if (store_of_[v] < 0) {
    // First use of an NCHW value: convert it straight into the type asked for.
    const int slot = need_plain(v);
    const int store = new_store(shape(v), dt);
    store_of_[v] = store;
    auto [to_blocked, impl] = make_reorder(plain_desc(shape(v)), ex_.stores_[store].md);
    memory src(plain_desc(shape(v)), ex_.eng_, DNNL_MEMORY_NONE);
    CpuExecutable* ex = &ex_;
    add_step(
        [ex, to_blocked = to_blocked, src, slot, store]() mutable {
          src.set_data_handle(ex->plain_[slot].raw());
          to_blocked.execute(ex->stream_, src, ex->stores_[store].mem);
          return Status();
        },
        {store}, impl);
    return store;
  }
  const int own = store_of_[v];
  if (dt_of(own) == dt) {
    touch(own, cur_step());
    return own;
  }
  const auto key = std::make_pair(alias_root(v), static_cast<int>(dt));
  if (auto it = converted_.find(key); it != converted_.end()) {
    touch(it->second, cur_step());
    return it->second;
  }
  const int copy = new_store(shape(v), dt);
  add_copy_step(own, copy);
  converted_[key] = copy;
  return copy;
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
  auto [to_plain, impl] = make_reorder(ex_.stores_[store].md, plain_desc(shape(v)));
  memory dst(plain_desc(shape(v)), ex_.eng_, ex_.plain_[slot].raw());
  CpuExecutable* ex = &ex_;
  add_step(
      [ex, to_plain = to_plain, dst, store]() mutable {
        to_plain.execute(ex->stream_, ex->stores_[store].mem, dst);
        return Status();
      },
      {store}, impl);
  return slot;
}

Status Compiler::add_dnnl_step(const Node& n, const dnnl::primitive_desc_base& pd,
                               dnnl::primitive prim, std::vector<std::pair<int, int>> store_args,
                               std::vector<std::pair<int, memory>> fixed_args) {
  scratch_bytes_ = std::max(scratch_bytes_, pd.scratchpad_desc().get_size());
  const std::string impl = pd.impl_info_str();
  if (std::getenv("TR_CPU_VERBOSE"))
    std::fprintf(stderr, "[cpu] %s: %s\n", n.describe().c_str(), impl.c_str());
  // No silent slow paths: oneDNN's reference conv is 100x-1000x slower than its jit kernels.
  // ("ref_fused_convolution" chains jit kernels: not slow.)
  if ((n.op == OpKind::kConv || n.op == OpKind::kFusedConv) && impl.rfind("ref", 0) == 0 &&
      impl.rfind("ref_fused", 0) != 0)
    std::fprintf(stderr,
                 "talkrender: warning: %s: %s runs on oneDNN's reference kernel (%s, layout "
                 "nChw%dc %s): expect it to be very slow\n",
                 g_.name.c_str(), n.describe().c_str(), impl.c_str(), opts_.block,
                 opts_.bf16 ? "bf16" : "fp32");
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
      touched, impl);
  return Status();
}

Status Compiler::compile_eltwise(size_t index, const Node& n) {
  const ValueId x = n.input(0), y = n.output(0);
  dnnl::algorithm alg = dnnl::algorithm::eltwise_relu;
  float alpha = 0.f;
  if (n.op == OpKind::kSigmoid) alg = dnnl::algorithm::eltwise_logistic;
  if (n.op == OpKind::kLeakyRelu) alpha = n.attr_float("alpha", 0.01f);
  const int src = need_blocked(x);
  const int dst = last_reader(x, index) ? src : new_store(shape(y), dt_of(src));
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
  const int sa = need_blocked(a);
  const DataType dt = dt_of(sa);
  const int sb = need_blocked_as(b, dt);
  int dst;
  if (last_reader(a, index) && alias_root(a) != alias_root(b))
    dst = sa;
  else if (last_reader(b, index) && alias_root(a) != alias_root(b) && sb == store_of_[b])
    dst = sb;
  else
    dst = new_store(shape(y), dt);
  store_of_[y] = dst;
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  const memory::desc md = blocked(shape(y), dt);
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
  if (dst < 0) dst = new_store(shape(y), act_dt_);
  store_of_[y] = dst;
  const DataType dt = dt_of(dst);
  std::vector<memory::desc> src_mds;
  std::vector<std::pair<int, int>> store_args;
  for (ValueId v : n.inputs) {
    if (!slice_of_.count(v)) {
      store_args.push_back(
          {DNNL_ARG_MULTIPLE_SRC + static_cast<int>(src_mds.size()), need_blocked_as(v, dt)});
      src_mds.push_back(ex_.stores_[store_args.back().second].md);
    }
  }
  store_args.push_back({DNNL_ARG_DST, dst});
  if (src_mds.size() == n.inputs.size()) {
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    dnnl::concat::primitive_desc pd(ex_.stores_[dst].md, 1, src_mds, ex_.eng_, attr);
    return add_dnnl_step(n, pd, dnnl::concat(pd), store_args, {});
  }
  // Some inputs are in place: copy the others into their channel slices one by one.
  int64_t channel = 0;
  size_t k = 0;
  for (size_t i = 0; i < n.inputs.size(); ++i) {
    const ValueId v = n.inputs[i];
    const Shape& s = shape(v);
    const bool last = i + 1 == n.inputs.size();
    if (!slice_of_.count(v) && channel % opts_.block == 0 && (last || s[1] % opts_.block == 0)) {
      // A slice on block boundaries is, per sample, one contiguous run of whole blocks in
      // both tensors: a memcpy (oneDNN's reorder for a sub-memory is its generic
      // simple:any loop). The source's padded channels are zero, as the destination's
      // must be.
      const int src = store_args[k++].second;
      const memory::dims full = ex_.stores_[dst].md.dims();
      const size_t elem = memory::data_type_size(dt);
      const size_t plane = static_cast<size_t>(full[2] * full[3] * opts_.block) * elem;
      const size_t src_bytes = channel_blocks(s[1], opts_.block) * plane;
      const size_t dst_stride = channel_blocks(full[1], opts_.block) * plane;
      const size_t offset = (channel / opts_.block) * plane;
      const int64_t batch = s[0];
      CpuExecutable* ex = &ex_;
      add_step(
          [ex, src, dst, src_bytes, dst_stride, offset, batch]() {
            const auto* in = static_cast<const uint8_t*>(ex->stores_[src].mem.get_data_handle());
            auto* out = static_cast<uint8_t*>(ex->stores_[dst].mem.get_data_handle());
            // In chunks, so that every thread copies at batch 1 too (one thread alone took
            // 2.8 ms for the 320 generator's last skip, 13 MB).
            constexpr size_t kChunk = size_t(256) << 10;
            const int64_t chunks = static_cast<int64_t>((src_bytes + kChunk - 1) / kChunk);
#pragma omp parallel for schedule(static)
            for (int64_t i = 0; i < batch * chunks; ++i) {
              const int64_t b = i / chunks;
              const size_t begin = static_cast<size_t>(i % chunks) * kChunk;
              std::memcpy(out + b * dst_stride + offset + begin, in + b * src_bytes + begin,
                          std::min(kChunk, src_bytes - begin));
            }
            return Status();
          },
          {src, dst}, "talkrender:concat_slice_memcpy");
    } else if (!slice_of_.count(v)) {
      const memory::desc slice_md =
          ex_.stores_[dst].md.submemory_desc(to_dims(s), {0, channel, 0, 0});
      const int src = store_args[k++].second;
      auto [copy, impl] = make_reorder(ex_.stores_[src].md, slice_md);
      CpuExecutable* ex = &ex_;
      add_step(
          [ex, copy = copy, src, dst, slice_md]() mutable {
            memory slice(slice_md, ex->eng_, ex->stores_[dst].mem.get_data_handle());
            copy.execute(ex->stream_, ex->stores_[src].mem, slice);
            return Status();
          },
          {src, dst}, impl);
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
  int src, dst;
  int64_t offset = 0, batch_stride = 0;
  auto slice = slice_of_.find(y);
  if (slice != slice_of_.end()) {
    dst = slice->second.first;
    src = need_blocked_as(x, dt_of(dst));
    offset = slice->second.second;
    const memory::dims full = ex_.stores_[dst].md.dims();
    batch_stride = channel_blocks(full[1], opts_.block) * opts_.block * full[2] * full[3];
  } else {
    src = need_blocked(x);
    dst = new_store(shape(y), dt_of(src));
    store_of_[y] = dst;
  }
  const bool bf16 = dt_of(dst) == DataType::bf16;
  const int64_t block = opts_.block;
  const size_t elem = bf16 ? 2 : 4;
  CpuExecutable* ex = &ex_;
  add_step(
      [ex, p, src, dst, offset, batch_stride, bf16, block, elem]() {
        const void* in = ex->stores_[src].mem.get_data_handle();
        void* out = static_cast<uint8_t*>(ex->stores_[dst].mem.get_data_handle()) + offset * elem;
        resize_blocked(p, block, bf16, in, out, batch_stride);
        return Status();
      },
      {src, dst},
      "talkrender:resize_nChw" + std::to_string(block) + "c_" + (bf16 ? "bf16" : "f32"));
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
  fallback_ = true;
  add_step(
      [ex, node, in_slots, out_slots]() -> Status {
        std::vector<const Tensor*> in;
        for (int s : in_slots) in.push_back(s < 0 ? nullptr : &ex->plain_[s]);
        TR_ASSIGN_OR_RETURN(std::vector<Tensor> out, run_ref_node(node, in));
        for (size_t i = 0; i < out_slots.size() && i < out.size(); ++i)
          if (out_slots[i] >= 0) ex->plain_[out_slots[i]] = std::move(out[i]);
        return Status();
      },
      {}, "");
  fallback_ = false;
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

// Resize outputs that only a channel-Concat reads are written into the Concat's buffer.
void Compiler::plan_concat_slices() {
  for (const Node& n : g_.nodes) {
    if (n.op != OpKind::kConcat || shape(n.output(0)).size() != 4 ||
        n.attr_int("axis", 0) % 4 != 1 || !is_blockable(n.output(0)))
      continue;
    if (!std::all_of(n.inputs.begin(), n.inputs.end(),
                     [&](ValueId v) { return v != kNoId && is_blockable(v); }))
      continue;
    // Slices must start on a channel block (a Resize writes whole blocks).
    if (!std::all_of(n.inputs.begin(), n.inputs.end() - 1,
                     [&](ValueId v) { return shape(v)[1] % opts_.block == 0; }))
      continue;
    int64_t channel = 0;
    int dst = -1;
    for (ValueId v : n.inputs) {
      const Value& val = g_.values[v];
      const bool from_resize = val.producer != kNoId &&
                               g_.nodes[val.producer].op == OpKind::kResize &&
                               sole_reader(v) != kNoId;
      if (from_resize) {
        if (dst < 0) dst = new_store(shape(n.output(0)), act_dt_);
        const Shape& s = shape(n.output(0));
        slice_of_[v] = {dst, channel * s[2] * s[3]};
      }
      channel += val.shape[1];
    }
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

  try {
    if (!std::getenv("TR_CPU_NO_CONCAT_INPLACE")) plan_concat_slices();
    for (size_t i = 0; i < g_.nodes.size(); ++i) {
      const Node& n = g_.nodes[i];
      if (done_[i]) continue;
      node_ = &n;
      TR_ASSIGN_OR_RETURN(bool native, try_native(i, n));
      if (!native) TR_RETURN_IF_ERROR(compile_fallback(i, n));
    }
    node_ = nullptr;
    for (ValueId v : g_.outputs) {
      CpuExecutable::OutputSlot o;
      o.shape = shape(v);
      if (plain_of_[v] >= 0 || store_of_[v] < 0) {
        // A graph output that is a constant gets its (lazy) plain slot here.
        o.plain_slot = g_.values[v].is_constant() ? need_plain(v) : plain_of_[v];
      } else {
        o.store = store_of_[v];
        touch(o.store, cur_step());
        o.to_plain = make_reorder(ex_.stores_[o.store].md, plain_desc(o.shape)).first;
      }
      ex_.outputs_.push_back(std::move(o));
    }
    ex_.profiling_ = opts_.profile || std::getenv("TR_CPU_PROFILE");
    ex_.print_profile_ = std::getenv("TR_CPU_PROFILE") != nullptr;
    // Plan the arena and point every store at its place.
    std::vector<BufferLifetime> lifetimes;
    for (const Store& s : ex_.stores_)
      lifetimes.push_back(
          {s.md.get_size(), s.first_step == INT_MAX ? 0 : s.first_step, std::max(s.last_step, 0)});
    const ArenaPlan plan = plan_arena(lifetimes);
    ex_.arena_bytes_ = plan.total_bytes;
    ex_.arena_offsets_ = plan.offsets;
    ex_.scratch_bytes_ = scratch_bytes_ + 64;
    // Handles are set by CpuExecutable::allocate() on the first run.
    for (Store& s : ex_.stores_) s.mem = memory(s.md, ex_.eng_, DNNL_MEMORY_NONE);
    if (std::getenv("TR_CPU_VERBOSE"))
      std::fprintf(stderr, "[cpu] nChw%dc %s: %zu steps, arena %.1f MB, scratchpad %.1f MB\n",
                   opts_.block, opts_.bf16 ? "bf16" : "fp32", ex_.steps_.size(),
                   plan.total_bytes / 1e6, scratch_bytes_ / 1e6);
  } catch (const dnnl::error& e) {
    return RuntimeError(g_.name + ": oneDNN could not build a primitive" +
                        (node_ ? " for " + node_->describe() : std::string()) + " (nChw" +
                        std::to_string(opts_.block) + "c " + (opts_.bf16 ? "bf16" : "fp32") +
                        "): " + e.what());
  }
  return Status();
}

}  // namespace tr::nn::cpu
