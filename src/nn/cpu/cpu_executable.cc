#include "nn/cpu/cpu_executable.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>

namespace tr::nn::cpu {

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
  if (!arena_) allocate();
  std::vector<Tensor> outs;
  try {
    if (!profiling_) {
      for (auto& step : steps_) TR_RETURN_IF_ERROR(step());
    } else {
      if (step_ms_.empty()) step_ms_.assign(steps_.size(), 0.0);
      ++profiled_runs_;
      for (size_t i = 0; i < steps_.size(); ++i) {
        const auto t0 = std::chrono::steady_clock::now();
        TR_RETURN_IF_ERROR(steps_[i]());
        // oneDNN's cpu stream is in-order and synchronous, so the step is done here.
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

void CpuExecutable::allocate() {
  arena_.reset(static_cast<uint8_t*>(std::aligned_alloc(64, arena_bytes_ + 64)),
               [](uint8_t* p) { std::free(p); });
  for (size_t i = 0; i < stores_.size(); ++i)
    stores_[i].mem.set_data_handle(arena_.get() + arena_offsets_[i]);
  scratchpad_ =
      memory(memory::desc({static_cast<memory::dim>(scratch_bytes_)}, DataType::u8, Tag::x), eng_);
}

std::vector<LayerProfile> CpuExecutable::profile() const {
  std::vector<LayerProfile> out = step_info_;
  for (size_t i = 0; i < out.size(); ++i)
    out[i].ms = profiled_runs_ > 0 && i < step_ms_.size() ? step_ms_[i] / profiled_runs_ : 0.0;
  return out;
}

CpuExecutable::~CpuExecutable() {
  if (!print_profile_ || profiled_runs_ == 0) return;
  std::vector<size_t> order(steps_.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return step_ms_[a] > step_ms_[b]; });
  double total = 0;
  for (double t : step_ms_) total += t;
  std::fprintf(stderr, "[cpu] profile of %s over %d runs: %.1f ms per run\n", name_.c_str(),
               profiled_runs_, total / profiled_runs_);
  for (size_t i : order)
    std::fprintf(stderr, "[cpu] %8.2f ms %5.1f%%  %s %s [%s]\n", step_ms_[i] / profiled_runs_,
                 100 * step_ms_[i] / total, step_info_[i].op.c_str(), step_info_[i].layer.c_str(),
                 step_info_[i].impl.c_str());
}

}  // namespace tr::nn::cpu
