// Static memory planning for the cpu backend: every activation buffer gets an offset in one
// arena, chosen at compile time so that buffers whose lifetimes overlap never share bytes and
// buffers whose lifetimes have ended are reused.
#pragma once

#include <cstddef>
#include <vector>

namespace tr::nn::cpu {

struct BufferLifetime {
  size_t bytes = 0;
  int first_step = 0;  // the step that writes it first
  int last_step = 0;   // the last step that reads it (inclusive)
};

struct ArenaPlan {
  std::vector<size_t> offsets;  // one per buffer, multiples of `alignment`
  size_t total_bytes = 0;
};

// Greedy best-fit by decreasing size (the usual heuristic for static planning: within a few
// percent of optimal on CNNs). `alignment` must be a power of two.
ArenaPlan plan_arena(const std::vector<BufferLifetime>& buffers, size_t alignment = 64);

}  // namespace tr::nn::cpu
