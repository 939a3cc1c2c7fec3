#include "nn/cuda/plan.h"

#include <algorithm>
#include <cstdio>
#include <map>
#include <set>

#include "nn/ops/op_params.h"

namespace tr::nn::cuda {

const char* storage_name(Storage s) {
  switch (s) {
    case Storage::kF32:
      return "fp32";
    case Storage::kF16:
      return "fp16";
    case Storage::kBF16:
      return "bf16";
  }
  return "?";
}

int storage_bytes(Storage s) { return s == Storage::kF32 ? 4 : 2; }

Result<Storage> parse_storage(const std::string& s) {
  if (s == "fp32" || s == "float32") return Storage::kF32;
  if (s == "fp16" || s == "float16" || s == "half") return Storage::kF16;
  if (s == "bf16" || s == "bfloat16") return Storage::kBF16;
  return BadInput("unknown precision '" + s + "' (fp16, bf16 or fp32)");
}

const char* step_kind_name(StepKind k) {
  switch (k) {
    case StepKind::kInput:
      return "input";
    case StepKind::kGemm:
      return "gemm";
    case StepKind::kIm2colGemm:
      return "im2col+gemm";
    case StepKind::kDepthwise:
      return "depthwise";
    case StepKind::kUpsample:
      return "upsample";
    case StepKind::kCopy:
      return "copy";
    case StepKind::kAdd:
      return "add";
    case StepKind::kActivation:
      return "activation";
    case StepKind::kOutput:
      return "output";
  }
  return "?";
}

const char* act_name(Act a) {
  switch (a) {
    case Act::kNone:
      return "none";
    case Act::kRelu:
      return "relu";
    case Act::kLeakyRelu:
      return "leaky_relu";
    case Act::kSigmoid:
      return "sigmoid";
  }
  return "?";
}

int CudaPlan::count(StepKind k) const {
  return static_cast<int>(
      std::count_if(steps.begin(), steps.end(), [k](const Step& s) { return s.kind == k; }));
}

int64_t CudaPlan::unshared_bytes() const {
  int64_t total = 0;
  for (const Buffer& b : buffers) total += b.bytes;
  return total;
}

int64_t CudaPlan::traffic_bytes() const {
  const int64_t elem = storage_bytes(storage);
  auto bytes = [&](const View& v) { return v.valid() ? v.pixels() * v.c * elem : int64_t{0}; };
  int64_t total = 0;
  for (const Step& s : steps) {
    total += bytes(s.in2) + s.weight_count * elem;
    switch (s.kind) {
      case StepKind::kInput:
        total += bytes(s.out) + shape_numel(s.nchw) * 4;
        break;
      case StepKind::kOutput:
        total += bytes(s.in) + shape_numel(s.nchw) * 4;
        break;
      case StepKind::kIm2colGemm:
        total += bytes(s.in) + 2 * s.gemm_n * s.gemm_k * elem + bytes(s.out);
        break;
      default:
        total += bytes(s.in) + bytes(s.out);
    }
  }
  return total;
}

int64_t CudaPlan::flops() const {
  int64_t total = 0;
  for (const Step& s : steps) {
    if (s.kind == StepKind::kGemm || s.kind == StepKind::kIm2colGemm) {
      total += 2 * s.gemm_m * s.gemm_n * s.gemm_k;
    } else if (s.kind == StepKind::kDepthwise) {
      total += 2 * s.out.pixels() * s.out.c * s.kh * s.kw;
    }
  }
  return total;
}

std::string CudaPlan::describe() const {
  std::string out;
  char line[512];
  std::snprintf(line, sizeof line,
                "%s: %s, %zu steps, %zu buffers, arena %.1f MB (%.1f MB unshared), "
                "traffic %.1f MB, %.2f GFLOP\n",
                model.c_str(), storage_name(storage), steps.size(), buffers.size(),
                arena_bytes / 1e6, unshared_bytes() / 1e6, traffic_bytes() / 1e6, flops() / 1e9);
  out += line;
  auto view = [&](const View& v) {
    if (!v.valid()) return std::string("-");
    char b[128];
    std::snprintf(b, sizeof b, "b%d[%lld,%lld,%lld,%lld@%lld/%lld]", v.buffer,
                  static_cast<long long>(v.n), static_cast<long long>(v.h),
                  static_cast<long long>(v.w), static_cast<long long>(v.c),
                  static_cast<long long>(v.c_offset), static_cast<long long>(v.pitch));
    return std::string(b);
  };
  for (size_t i = 0; i < steps.size(); ++i) {
    const Step& s = steps[i];
    std::snprintf(line, sizeof line, "%3zu %-11s %-9s %s -> %s%s%s  %s\n", i,
                  step_kind_name(s.kind), act_name(s.act), view(s.in).c_str(), view(s.out).c_str(),
                  s.in2.valid() ? " + " : "", s.in2.valid() ? view(s.in2).c_str() : "",
                  s.label.c_str());
    out += line;
  }
  return out;
}

namespace {

int64_t round_up(int64_t x, int64_t a) { return (x + a - 1) / a * a; }

// A value's rank-2 [N, C] or rank-4 [N, C, H, W] shape as n, c, h, w.
struct Nchw {
  int64_t n = 0, c = 0, h = 1, w = 1;
};
Result<Nchw> as_nchw(const Graph& g, ValueId v, const std::string& who) {
  const Value& val = g.values[v];
  if (!val.shape_concrete() || val.dtype != DType::kFloat32 ||
      (val.shape.size() != 4 && val.shape.size() != 2)) {
    return BadInput(g.name + ": " + who +
                    ": the cuda backend needs float32 [N,C,H,W] or [N,C] "
                    "tensors; '" +
                    val.name + "' is " + dtype_name(val.dtype) + " " +
                    (val.shape_known ? shape_str(val.shape) : std::string("(unknown shape)")));
  }
  Nchw s;
  s.n = val.shape[0];
  s.c = val.shape[1];
  if (val.shape.size() == 4) {
    s.h = val.shape[2];
    s.w = val.shape[3];
  }
  return s;
}

class Lowering {
 public:
  Lowering(const Graph& g, const PlanOptions& opts) : g_(g), opts_(opts) {
    plan_.storage = opts.storage;
    plan_.model = g.name;
    view_.resize(g.values.size());
    placed_.resize(g.values.size());
    output_act_.resize(g.values.size(), Act::kNone);
    consumers_ = g.consumers();
    uses_ = g.use_counts();
    for (ValueId v : g.outputs) is_output_.insert(v);
  }

  Result<CudaPlan> run() {
    TR_RETURN_IF_ERROR(place_concat_parts());
    for (size_t i = 0; i < g_.inputs.size(); ++i) TR_RETURN_IF_ERROR(lower_input(i));
    for (const Node& n : g_.nodes) {
      if (n.removed) continue;
      TR_RETURN_IF_ERROR(lower_node(n));
    }
    for (size_t i = 0; i < g_.outputs.size(); ++i) TR_RETURN_IF_ERROR(lower_output(i));
    live_ranges();
    assign_offsets();
    return std::move(plan_);
  }

 private:
  // Where a value lives when it is written straight into a concat's slice.
  struct Placement {
    ValueId concat_out = kNoId;
    int64_t c_offset = 0;
  };

  // Concat parts written in place: a part qualifies when a step of ours produces it (not a
  // constant, not an alias such as Reshape), it is in no other concat, and its slice starts
  // on an aligned channel (so GEMM outputs and vector stores stay 16-byte aligned).
  Status place_concat_parts() {
    if (!opts_.concat_in_place) return Status::Ok();
    // Reverse order: an outer concat is placed before the concats that feed it.
    for (auto it = g_.nodes.rbegin(); it != g_.nodes.rend(); ++it) {
      const Node& n = *it;
      if (n.removed || n.op != OpKind::kConcat) continue;
      const Value& out = g_.values[n.output(0)];
      if (!out.shape_concrete() || out.shape.size() != 4 || n.attr_int("axis", 0) % 4 != 1) {
        continue;
      }
      std::set<ValueId> seen;
      int64_t offset = 0;
      for (ValueId part : n.inputs) {
        const Value& pv = g_.values[part];
        const int64_t c = pv.shape_concrete() && pv.shape.size() == 4 ? pv.shape[1] : 0;
        const bool produced_by_step =
            !pv.is_constant() && (pv.producer == kNoId || writes_own_output(g_.nodes[pv.producer]));
        if (c > 0 && produced_by_step && offset % kChannelAlign == 0 && !seen.count(part) &&
            placed_[part].concat_out == kNoId) {
          placed_[part] = {n.output(0), offset};
        }
        seen.insert(part);
        offset += c;
      }
    }
    return Status::Ok();
  }

  // Ops whose lowering writes a fresh output view (so it can be any slice we choose).
  static bool writes_own_output(const Node& n) {
    switch (n.op) {
      case OpKind::kConv:
      case OpKind::kFusedConv:
      case OpKind::kResize:
      case OpKind::kAdd:
      case OpKind::kRelu:
      case OpKind::kLeakyRelu:
      case OpKind::kConcat:
        return true;
      default:
        return false;  // Sigmoid may alias its input (fused into the output step)
    }
  }

  // The view a value must be written to: its concat slice, or a new buffer of its own.
  Result<View> output_view(ValueId v, const std::string& who) {
    if (view_[v].valid()) return view_[v];
    TR_ASSIGN_OR_RETURN(Nchw s, as_nchw(g_, v, who));
    View view;
    if (placed_[v].concat_out != kNoId) {
      TR_ASSIGN_OR_RETURN(View outer, output_view(placed_[v].concat_out, who));
      view = outer;
      view.c = s.c;
      view.c_offset = outer.c_offset + placed_[v].c_offset;
    } else {
      Buffer b;
      b.name = g_.values[v].name;
      b.n = s.n;
      b.h = s.h;
      b.w = s.w;
      b.pitch = round_up(s.c, kChannelAlign);
      b.bytes = b.n * b.h * b.w * b.pitch * storage_bytes(plan_.storage);
      plan_.buffers.push_back(b);
      view.buffer = static_cast<int>(plan_.buffers.size()) - 1;
      view.n = s.n;
      view.h = s.h;
      view.w = s.w;
      view.c = s.c;
      view.pitch = b.pitch;
    }
    view_[v] = view;
    return view;
  }

  Result<View> input_view(const Node& n, ValueId v) {
    if (v == kNoId || !view_[v].valid()) {
      const std::string what =
          v == kNoId ? "a missing input"
                     : (g_.values[v].is_constant() ? "constant '" : "'") + g_.values[v].name +
                           (g_.values[v].is_constant() ? "' as an activation" : "' (no producer)");
      return BadInput(g_.name + ": " + n.describe() + ": the cuda backend cannot read " + what);
    }
    return view_[v];
  }

  int64_t add_weights(const std::vector<float>& w) {
    // 8-float alignment keeps every packed matrix 16-byte aligned after conversion to fp16.
    plan_.weights.resize(round_up(static_cast<int64_t>(plan_.weights.size()), 8), 0.f);
    const int64_t off = static_cast<int64_t>(plan_.weights.size());
    plan_.weights.insert(plan_.weights.end(), w.begin(), w.end());
    return off;
  }

  Status lower_input(size_t i) {
    const ValueId v = g_.inputs[i];
    TR_ASSIGN_OR_RETURN(View out, output_view(v, "input '" + g_.values[v].name + "'"));
    Step s;
    s.kind = StepKind::kInput;
    s.label = "input:" + g_.values[v].name;
    s.out = out;
    s.io_index = static_cast<int>(i);
    s.nchw = g_.values[v].shape;
    plan_.input_shapes.push_back(s.nchw);
    plan_.steps.push_back(std::move(s));
    return Status::Ok();
  }

  Status lower_output(size_t i) {
    const ValueId v = g_.outputs[i];
    const Value& val = g_.values[v];
    if (!view_[v].valid()) {
      return BadInput(g_.name + ": output '" + val.name +
                      "' is not computed on the device (a constant?)");
    }
    Step s;
    s.kind = StepKind::kOutput;
    s.label = "output:" + val.name;
    s.in = view_[v];
    s.act = output_act_[v];
    if (s.act != Act::kNone) s.fused = {"Sigmoid"};
    s.io_index = static_cast<int>(i);
    s.nchw = val.shape;
    plan_.output_shapes.push_back(s.nchw);
    plan_.steps.push_back(std::move(s));
    return Status::Ok();
  }

  Status lower_node(const Node& n) {
    switch (n.op) {
      case OpKind::kConv:
      case OpKind::kFusedConv:
        return lower_conv(n);
      case OpKind::kConcat:
        return lower_concat(n);
      case OpKind::kResize:
        return lower_resize(n);
      case OpKind::kAdd:
        return lower_add(n);
      case OpKind::kRelu:
      case OpKind::kLeakyRelu:
      case OpKind::kSigmoid:
        return lower_activation(n);
      case OpKind::kIdentity:
      case OpKind::kReshape:
      case OpKind::kFlatten:
      case OpKind::kSqueeze:
      case OpKind::kUnsqueeze:
        return lower_alias(n);
      default:
        return BadInput(g_.name + ": " + n.describe() + ": not supported by the cuda backend");
    }
  }

  Status lower_conv(const Node& n) {
    const ValueId x = n.input(0), w = n.input(1), b = n.input(2), res = n.input(3);
    if (w == kNoId || !g_.values[w].is_constant() || (b != kNoId && !g_.values[b].is_constant())) {
      return BadInput(g_.name + ": " + n.describe() + ": cuda needs constant weights and bias");
    }
    const Tensor& wt = g_.values[w].constant;
    TR_ASSIGN_OR_RETURN(ConvParams p, conv_params(n, g_.values[x].shape, wt.shape()));
    if (p.spatial != 2) {
      return BadInput(g_.name + ": " + n.describe() + ": cuda supports 2-D convolution only");
    }
    Step s;
    s.label = n.name;
    s.fused = {op_name(n.op)};
    TR_ASSIGN_OR_RETURN(s.in, input_view(n, x));
    if (res != kNoId) {
      TR_ASSIGN_OR_RETURN(s.in2, input_view(n, res));
      s.fused.push_back("Add");
    }
    const std::string act = n.attr_string("activation", "");
    if (act == "Relu") {
      s.act = Act::kRelu;
    } else if (act == "LeakyRelu") {
      s.act = Act::kLeakyRelu;
      s.alpha = n.attr_float("alpha", 0.01f);
    } else if (!act.empty()) {
      return BadInput(g_.name + ": " + n.describe() + ": activation '" + act + "' not supported");
    }
    if (s.act != Act::kNone) s.fused.push_back(act);
    s.kh = p.kernel_h;
    s.kw = p.kernel_w;
    s.stride_h = p.stride_h;
    s.stride_w = p.stride_w;
    s.dil_h = p.dilation_h;
    s.dil_w = p.dilation_w;
    s.pad_top = p.pad_top;
    s.pad_left = p.pad_left;
    s.has_bias = b != kNoId;
    if (s.has_bias) {
      const Tensor& bt = g_.values[b].constant;
      s.bias_offset = add_weights(std::vector<float>(bt.data<float>(), bt.data<float>() + p.out_c));
    }
    TR_ASSIGN_OR_RETURN(s.out, output_view(n.output(0), n.describe()));
    const float* wp = wt.data<float>();
    const int64_t taps = p.kernel_h * p.kernel_w;
    if (p.is_depthwise() && p.group > 1) {
      s.kind = StepKind::kDepthwise;
      std::vector<float> packed(taps * p.out_c);
      for (int64_t c = 0; c < p.out_c; ++c) {
        for (int64_t t = 0; t < taps; ++t) packed[t * p.out_c + c] = wp[c * taps + t];
      }
      s.weight_offset = add_weights(packed);
      s.weight_count = static_cast<int64_t>(packed.size());
      plan_.steps.push_back(std::move(s));
      return Status::Ok();
    }
    if (p.group != 1) {
      return BadInput(g_.name + ": " + n.describe() + ": grouped convolution (group " +
                      std::to_string(p.group) + ", not depthwise) is not supported by cuda");
    }
    const bool direct = taps == 1 && p.stride_h == 1 && p.stride_w == 1 && p.pad_top == 0 &&
                        p.pad_left == 0 && p.pad_bottom == 0 && p.pad_right == 0;
    s.kind = direct ? StepKind::kGemm : StepKind::kIm2colGemm;
    s.gemm_m = p.out_c;
    s.gemm_n = s.out.pixels();
    s.gemm_k = taps * p.in_c;
    s.k_pitch = round_up(s.gemm_k, kChannelAlign);
    // Weight k index = (ky * kw + kx) * cin + ci, the order im2col gathers in; for 1x1 it is
    // just ci, i.e. the NHWC channel order.
    std::vector<float> packed(s.gemm_m * s.k_pitch, 0.f);
    for (int64_t co = 0; co < p.out_c; ++co) {
      for (int64_t ci = 0; ci < p.in_c; ++ci) {
        for (int64_t t = 0; t < taps; ++t) {
          packed[co * s.k_pitch + t * p.in_c + ci] = wp[(co * p.in_c + ci) * taps + t];
        }
      }
    }
    s.weight_offset = add_weights(packed);
    s.weight_count = static_cast<int64_t>(packed.size());
    if (!direct) {
      Buffer sb;
      sb.name = n.name + ":im2col";
      sb.n = s.out.n;
      sb.h = s.out.h;
      sb.w = s.out.w;
      sb.pitch = s.k_pitch;
      sb.bytes = s.gemm_n * s.k_pitch * storage_bytes(plan_.storage);
      sb.scratch = true;
      plan_.buffers.push_back(sb);
      s.scratch = static_cast<int>(plan_.buffers.size()) - 1;
      plan_.scratch_bytes_max = std::max(plan_.scratch_bytes_max, sb.bytes);
    }
    const bool leaky = s.act == Act::kLeakyRelu;
    if (leaky) s.act = Act::kNone;  // cuBLASLt has no LeakyRelu epilogue: a step after
    const View out = s.out;
    const float alpha = s.alpha;
    plan_.steps.push_back(std::move(s));
    if (leaky) {
      Step a;
      a.kind = StepKind::kActivation;
      a.label = n.name + ":leaky_relu";
      a.act = Act::kLeakyRelu;
      a.alpha = alpha;
      a.in = out;
      a.out = out;
      plan_.steps.push_back(std::move(a));
    }
    return Status::Ok();
  }

  Status lower_concat(const Node& n) {
    const ValueId y = n.output(0);
    const Value& yv = g_.values[y];
    if (!yv.shape_concrete() || yv.shape.size() != 4 || n.attr_int("axis", 0) % 4 != 1) {
      return BadInput(g_.name + ": " + n.describe() +
                      ": cuda supports Concat of [N,C,H,W] tensors on the channel axis only");
    }
    TR_ASSIGN_OR_RETURN(View out, output_view(y, n.describe()));
    int64_t offset = 0;
    for (ValueId part : n.inputs) {
      TR_ASSIGN_OR_RETURN(View in, input_view(n, part));
      const bool in_place = in.buffer == out.buffer && in.c_offset == out.c_offset + offset;
      if (!in_place) {
        Step s;
        s.kind = StepKind::kCopy;
        s.label = n.name + ":" + g_.values[part].name;
        s.fused = {"Concat"};
        s.in = in;
        s.out = out;
        s.out.c = in.c;
        s.out.c_offset = out.c_offset + offset;
        plan_.steps.push_back(std::move(s));
      }
      offset += in.c;
    }
    return Status::Ok();
  }

  Status lower_resize(const Node& n) {
    const ValueId x = n.input(0);
    auto constant = [&](size_t i) -> const Tensor* {
      const ValueId v = n.input(i);
      if (v == kNoId || !g_.values[v].is_constant() || g_.values[v].constant.numel() == 0) {
        return nullptr;
      }
      return &g_.values[v].constant;
    };
    TR_ASSIGN_OR_RETURN(ResizeParams p,
                        resize_params(n, g_.values[x].shape, constant(2), constant(3)));
    if (p.mode != ResizeMode::kLinear || p.in_shape.size() != 4 ||
        p.out_shape[0] != p.in_shape[0] || p.out_shape[1] != p.in_shape[1]) {
      return BadInput(g_.name + ": " + n.describe() +
                      ": cuda supports only linear Resize of the spatial axes");
    }
    Step s;
    s.kind = StepKind::kUpsample;
    s.label = n.name;
    s.fused = {"Resize"};
    TR_ASSIGN_OR_RETURN(s.in, input_view(n, x));
    TR_ASSIGN_OR_RETURN(s.out, output_view(n.output(0), n.describe()));
    // Every coordinate transform of linear resize is affine in the output index.
    s.y_add = p.source_coord(2, 0);
    s.y_mul = p.out_shape[2] > 1 ? p.source_coord(2, 1) - s.y_add : 0.f;
    s.x_add = p.source_coord(3, 0);
    s.x_mul = p.out_shape[3] > 1 ? p.source_coord(3, 1) - s.x_add : 0.f;
    plan_.steps.push_back(std::move(s));
    return Status::Ok();
  }

  Status lower_add(const Node& n) {
    const ValueId a = n.input(0), b = n.input(1), y = n.output(0);
    if (a == kNoId || b == kNoId || g_.values[a].shape != g_.values[y].shape ||
        g_.values[b].shape != g_.values[y].shape) {
      return BadInput(g_.name + ": " + n.describe() + ": cuda supports Add without broadcasting");
    }
    Step s;
    s.kind = StepKind::kAdd;
    s.label = n.name;
    s.fused = {"Add"};
    TR_ASSIGN_OR_RETURN(s.in, input_view(n, a));
    TR_ASSIGN_OR_RETURN(s.in2, input_view(n, b));
    TR_ASSIGN_OR_RETURN(s.out, output_view(y, n.describe()));
    plan_.steps.push_back(std::move(s));
    return Status::Ok();
  }

  Status lower_activation(const Node& n) {
    const ValueId x = n.input(0), y = n.output(0);
    TR_ASSIGN_OR_RETURN(View in, input_view(n, x));
    // The generator's last Sigmoid: fused into the output conversion when it alone reads
    // its input and only the graph output reads it.
    if (n.op == OpKind::kSigmoid && opts_.fuse_output_activation && uses_[x] == 1 &&
        !is_output_.count(x) && is_output_.count(y) && consumers_[y].empty() &&
        placed_[y].concat_out == kNoId &&
        std::count(g_.outputs.begin(), g_.outputs.end(), y) == 1) {
      view_[y] = in;
      output_act_[y] = Act::kSigmoid;
      return Status::Ok();
    }
    Step s;
    s.kind = StepKind::kActivation;
    s.label = n.name;
    s.fused = {op_name(n.op)};
    s.act = n.op == OpKind::kRelu ? Act::kRelu
                                  : (n.op == OpKind::kSigmoid ? Act::kSigmoid : Act::kLeakyRelu);
    s.alpha = n.attr_float("alpha", 0.01f);
    s.in = in;
    TR_ASSIGN_OR_RETURN(s.out, output_view(y, n.describe()));
    plan_.steps.push_back(std::move(s));
    return Status::Ok();
  }

  // Reshape-like ops are free when NHWC and NCHW agree on the memory order: no spatial
  // extent (the encoder's [N,512,1,1] -> [N,512]) and a view that owns its buffer.
  Status lower_alias(const Node& n) {
    const ValueId x = n.input(0), y = n.output(0);
    TR_ASSIGN_OR_RETURN(View in, input_view(n, x));
    const Value& yv = g_.values[y];
    if (n.op == OpKind::kIdentity && yv.shape == g_.values[x].shape) {
      view_[y] = in;
      return Status::Ok();
    }
    auto ys = as_nchw(g_, y, n.describe());
    if (!ys.ok() || in.h * in.w != 1 || in.c_offset != 0 || ys->h * ys->w != 1 || ys->n != in.n ||
        ys->c != in.c) {
      return BadInput(g_.name + ": " + n.describe() +
                      ": cuda supports reshapes only between [N,C,1,1] and [N,C]");
    }
    view_[y] = in;
    return Status::Ok();
  }

  void live_ranges() {
    for (Buffer& b : plan_.buffers) {
      b.first_step = INT32_MAX;
      b.last_step = -1;
    }
    for (size_t i = 0; i < plan_.steps.size(); ++i) {
      const Step& s = plan_.steps[i];
      for (const View* v : {&s.in, &s.in2, &s.out}) {
        if (!v->valid()) continue;
        Buffer& b = plan_.buffers[v->buffer];
        b.first_step = std::min(b.first_step, static_cast<int>(i));
        b.last_step = std::max(b.last_step, static_cast<int>(i));
      }
      if (s.scratch >= 0) {
        plan_.buffers[s.scratch].first_step = static_cast<int>(i);
        plan_.buffers[s.scratch].last_step = static_cast<int>(i);
      }
    }
  }

  // Greedy first fit, largest buffers first: a buffer may share bytes with any buffer whose
  // live range it does not overlap. One stream runs the steps in order, so that is safe.
  void assign_offsets() {
    std::vector<int> order(plan_.buffers.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int>(i);
    std::stable_sort(order.begin(), order.end(),
                     [&](int a, int b) { return plan_.buffers[a].bytes > plan_.buffers[b].bytes; });
    std::vector<int> placed;
    int64_t arena = 0;
    for (int i : order) {
      Buffer& b = plan_.buffers[i];
      if (b.last_step < 0) continue;  // never touched (cannot happen for a valid plan)
      std::vector<std::pair<int64_t, int64_t>> busy;
      for (int j : placed) {
        const Buffer& o = plan_.buffers[j];
        if (o.first_step <= b.last_step && b.first_step <= o.last_step) {
          busy.emplace_back(o.offset, o.offset + o.bytes);
        }
      }
      std::sort(busy.begin(), busy.end());
      int64_t off = 0;
      for (const auto& [lo, hi] : busy) {
        if (off + b.bytes <= lo) break;
        off = std::max(off, round_up(hi, kArenaAlign));
      }
      b.offset = off;
      arena = std::max(arena, off + b.bytes);
      placed.push_back(i);
    }
    plan_.arena_bytes = round_up(arena, kArenaAlign);
  }

  const Graph& g_;
  PlanOptions opts_;
  CudaPlan plan_;
  std::vector<View> view_;
  std::vector<Placement> placed_;
  std::vector<Act> output_act_;
  std::vector<std::vector<NodeId>> consumers_;
  std::vector<int> uses_;
  std::set<ValueId> is_output_;
};

}  // namespace

Result<CudaPlan> build_cuda_plan(const Graph& g, const PlanOptions& opts) {
  return Lowering(g, opts).run();
}

}  // namespace tr::nn::cuda
