// Compiles a shape-inferred Graph into a CpuExecutable, node by node (cpu_compiler.cc; the
// convolutions in cpu_conv.cc).
//
// Layout and precision are plan-time choices (CompileOptions): activations live in nChw16c
// on CPUs with AVX-512 and nChw8c otherwise, as float32 or, with bf16, as bfloat16 (always
// nChw16c: oneDNN has no jit bf16 kernel on nChw8c). In bf16 the first conv (it reads the
// image) and the output conv (with its sigmoid) compute in float32, and a value is converted
// between the two types once, where a consumer needs the other one.
#pragma once

#include <map>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "nn/cpu/cpu_executable.h"
#include "nn/graph.h"
#include "nn/ops/op_params.h"

namespace tr::nn::cpu {

struct CompileOptions {
  int block = 8;      // 8 or 16
  bool bf16 = false;  // activations and most convs in bfloat16
  bool profile = false;
};

class Compiler {
 public:
  Compiler(const Graph& g, CpuExecutable& ex, const CompileOptions& opts)
      : g_(g), ex_(ex), opts_(opts), act_dt_(opts.bf16 ? DataType::bf16 : DataType::f32) {}
  Status compile();

 private:
  bool is_blockable(ValueId v) const {
    const Value& val = g_.values[v];
    return val.dtype == DType::kFloat32 && val.shape.size() == 4 && !val.is_constant();
  }
  const Shape& shape(ValueId v) const { return g_.values[v].shape; }
  int cur_step() const { return static_cast<int>(ex_.steps_.size()); }
  memory::desc blocked(const Shape& s, DataType dt) const {
    return blocked_desc(s, opts_.block, dt);
  }
  DataType dt_of(int store) const { return ex_.stores_[store].md.data_type(); }

  int new_store(const Shape& s, DataType dt) {
    Store st;
    st.md = blocked(s, dt);
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
  // `impl` names the implementation for profiles ("talkrender:..." for our own kernels).
  void add_step(std::function<Status()> f, const std::vector<int>& stores_touched,
                std::string impl);
  // A reorder primitive and its implementation name.
  std::pair<dnnl::reorder, std::string> make_reorder(const memory::desc& src,
                                                     const memory::desc& dst) const;
  // A step copying/converting store `src` into store `dst` (both whole).
  void add_copy_step(int src, int dst);

  // The value's blocked store, adding an NCHW -> blocked conversion (in the plan's
  // activation type) on first need.
  int need_blocked(ValueId v);
  // The value's blocked store in type `dt`: its own, or a converted copy made once.
  int need_blocked_as(ValueId v, DataType dt);
  // The value's NCHW plain slot, adding a blocked -> NCHW conversion on first need.
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
  void plan_concat_slices();

  const Graph& g_;
  CpuExecutable& ex_;
  const CompileOptions opts_;
  const DataType act_dt_;
  std::vector<int> store_of_, plain_of_;
  // Converted copies: (alias root, type) -> store.
  std::map<std::pair<ValueId, int>, int> converted_;
  std::vector<ValueId> alias_of_;
  std::vector<size_t> last_read_;  // per alias root: index of the last reading node
  std::vector<std::vector<NodeId>> consumers_;
  std::vector<bool> is_output_;
  std::vector<bool> done_;  // nodes already emitted as part of an earlier fused step
  // Concat destination slices that a Resize writes straight into: resize output -> concat.
  std::unordered_map<ValueId, std::pair<int, int64_t>> slice_of_;  // store, element offset
  size_t scratch_bytes_ = 0;
  const Node* node_ = nullptr;  // the node being compiled, for profiles
  bool fallback_ = false;       // it runs on the reference kernels
};

}  // namespace tr::nn::cpu
