// The cpu backend's compiled plan: a flat list of steps over one preallocated arena of
// activation buffers (Stores) in the plan's blocked layout, plus NCHW tensors for inputs,
// constants and values that run on the reference kernels. Built by Compiler
// (cpu_compiler.h); run by CpuExecutable::run.
#pragma once

#include <algorithm>
#include <climits>
#include <cstdint>
#include <functional>
#include <memory>
#include <oneapi/dnnl/dnnl.hpp>
#include <string>
#include <vector>

#include "nn/backend.h"

namespace tr::nn::cpu {

using dnnl::memory;
using Tag = memory::format_tag;
using DataType = memory::data_type;

inline memory::dims to_dims(const Shape& s) { return memory::dims(s.begin(), s.end()); }
inline memory::desc plain_desc(const Shape& s, DataType dt = DataType::f32) {
  return memory::desc(to_dims(s), dt, Tag::nchw);
}
// The activation layout of a plan: nChw8c or nChw16c.
inline memory::desc blocked_desc(const Shape& s, int block, DataType dt) {
  return memory::desc(to_dims(s), dt, block == 16 ? Tag::nChw16c : Tag::nChw8c);
}

// A buffer in the arena holding one (or, through aliases and in-place ops, several) values in
// the blocked layout (or, for a few conv inputs, NCHW).
struct Store {
  memory::desc md;
  memory mem;  // its data handle is set to the arena once the plan is known
  int first_step = INT_MAX, last_step = -1;
};

class CpuExecutable final : public Executable {
 public:
  CpuExecutable(const dnnl::engine& eng, int threads, std::string name)
      : eng_(eng), stream_(eng), threads_(threads), name_(std::move(name)) {}
  ~CpuExecutable() override;

  Result<std::vector<Tensor>> run(const std::vector<Tensor>& inputs) override;
  std::vector<LayerProfile> profile() const override;
  // The arena's extent plus the scratchpad, for the render report's memory breakdown
  // (Executable::workspace_bytes; issue 21).
  int64_t workspace_bytes() const override {
    return static_cast<int64_t>(arena_bytes_ + scratch_bytes_);
  }
  // Allocates the arena and the scratchpad on the first run, not at compile: a session that
  // releases the model's weights after compiling (SessionOptions::release_weights) then never
  // holds the weights twice and the activations at once.
  void allocate();

  // Filled by the compiler.
  dnnl::engine eng_;
  dnnl::stream stream_;
  int threads_;
  std::string name_;
  std::vector<Store> stores_;
  std::vector<Tensor> plain_;  // NCHW tensors: inputs, constants, fallback values
  std::vector<std::function<Status()>> steps_;
  // Per step: the node it runs (its op type and name) and the implementation.
  std::vector<LayerProfile> step_info_;
  // Per-step wall time summed over runs, when profiling (SessionOptions::profile, or
  // TR_CPU_PROFILE=1 which also prints it to stderr when the plan is destroyed).
  bool profiling_ = false, print_profile_ = false;
  std::vector<double> step_ms_;
  int profiled_runs_ = 0;
  std::shared_ptr<uint8_t> arena_;
  size_t arena_bytes_ = 0, scratch_bytes_ = 0;
  std::vector<size_t> arena_offsets_;  // per store
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

}  // namespace tr::nn::cpu
