#include "nn/cpu/memory_plan.h"

#include <algorithm>
#include <cstdint>
#include <numeric>

namespace tr::nn::cpu {

ArenaPlan plan_arena(const std::vector<BufferLifetime>& buffers, size_t alignment) {
  auto round_up = [alignment](size_t v) { return (v + alignment - 1) & ~(alignment - 1); };
  ArenaPlan plan;
  plan.offsets.assign(buffers.size(), 0);
  std::vector<size_t> order(buffers.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return buffers[a].bytes > buffers[b].bytes; });

  struct Placed {
    size_t begin, end;
    int first, last;
  };
  std::vector<Placed> placed;
  for (size_t id : order) {
    const BufferLifetime& buf = buffers[id];
    const size_t size = round_up(std::max<size_t>(buf.bytes, 1));
    // Byte ranges of already placed buffers that are alive at the same time, by offset.
    std::vector<std::pair<size_t, size_t>> busy;
    for (const Placed& p : placed)
      if (p.first <= buf.last_step && buf.first_step <= p.last) busy.emplace_back(p.begin, p.end);
    std::sort(busy.begin(), busy.end());
    // Best fit: the smallest gap that holds `size`; else the end of everything alive.
    size_t best = SIZE_MAX, best_gap = SIZE_MAX, cursor = 0;
    for (const auto& [b, e] : busy) {
      if (b >= cursor && b - cursor >= size && b - cursor < best_gap) {
        best = cursor;
        best_gap = b - cursor;
      }
      cursor = std::max(cursor, e);
    }
    if (best == SIZE_MAX) best = cursor;
    plan.offsets[id] = best;
    placed.push_back({best, best + size, buf.first_step, buf.last_step});
    plan.total_bytes = std::max(plan.total_bytes, best + size);
  }
  return plan;
}

}  // namespace tr::nn::cpu
