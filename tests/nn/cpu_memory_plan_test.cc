// The cpu backend's arena planner: buffers alive at the same time never share bytes, dead
// buffers are reused, offsets are aligned.
#include <gtest/gtest.h>

#include <random>

#include "nn/cpu/memory_plan.h"

namespace tr::nn::cpu {
namespace {

bool overlap_in_time(const BufferLifetime& a, const BufferLifetime& b) {
  return a.first_step <= b.last_step && b.first_step <= a.last_step;
}

TEST(CpuMemoryPlan, LiveBuffersNeverOverlapAndDeadOnesAreReused) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 50; ++trial) {
    std::vector<BufferLifetime> bufs;
    size_t sum = 0;
    for (int i = 0; i < 40; ++i) {
      const int first = static_cast<int>(rng() % 60);
      const int len = static_cast<int>(rng() % 8);
      bufs.push_back({1 + rng() % 100000, first, first + len});
      sum += bufs.back().bytes;
    }
    const ArenaPlan plan = plan_arena(bufs, 64);
    ASSERT_EQ(plan.offsets.size(), bufs.size());
    for (size_t i = 0; i < bufs.size(); ++i) {
      EXPECT_EQ(plan.offsets[i] % 64, 0u);
      EXPECT_LE(plan.offsets[i] + bufs[i].bytes, plan.total_bytes);
      for (size_t j = i + 1; j < bufs.size(); ++j) {
        if (!overlap_in_time(bufs[i], bufs[j])) continue;
        const bool disjoint = plan.offsets[i] + bufs[i].bytes <= plan.offsets[j] ||
                              plan.offsets[j] + bufs[j].bytes <= plan.offsets[i];
        EXPECT_TRUE(disjoint) << "buffers " << i << " and " << j << " share bytes";
      }
    }
    // Short lifetimes spread over 60 steps: reuse must make the arena smaller than the sum.
    EXPECT_LT(plan.total_bytes, sum);
  }
}

TEST(CpuMemoryPlan, SequentialBuffersShareOnePlace) {
  const ArenaPlan plan = plan_arena({{1000, 0, 1}, {1000, 2, 3}, {1000, 4, 5}}, 64);
  EXPECT_EQ(plan.offsets[0], plan.offsets[1]);
  EXPECT_EQ(plan.offsets[1], plan.offsets[2]);
  EXPECT_EQ(plan.total_bytes, 1024u);
}

}  // namespace
}  // namespace tr::nn::cpu
