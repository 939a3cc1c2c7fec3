// Peak arithmetic of one core, fp32 FMA against bf16 dot products: 12 independent chains
// of AVX-512 vfmadd231ps (16 multiply-adds) and of vdpbf16ps (32 bf16 products summed into
// 16 floats), 2e8 rounds each, GFLOP/s counted as 2 per multiply-add. It says whether bf16
// can pay on this CPU at all: where vdpbf16ps runs at half the rate of vfmadd231ps (Intel's
// AVX512_BF16 without AMX), bf16 convolutions cannot beat fp32 ones however they are
// written; where it runs at the same rate (AMD Zen 4/5) they can be twice as fast.
//
// Run: build/bench_fma_rate (one thread; prints a line per instruction, or says which
// instruction set this CPU lacks). Figures only; nothing is asserted.
#include <immintrin.h>

#include <chrono>
#include <cstdio>

namespace {

constexpr long kRounds = 200000000;
constexpr int kChains = 12;  // enough independent accumulators to cover the FMA latency

double since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

__attribute__((target("avx512f"))) double fp32_fma_gflops(float* sink) {
  __m512 acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = _mm512_set1_ps(i * 1e-9f);
  const __m512 a = _mm512_set1_ps(1.0f), b = _mm512_set1_ps(1e-9f);
  // (No lambda: it would not inherit this function's target attribute.)
  const auto t0 = std::chrono::steady_clock::now();
  for (long r = 0; r < kRounds; ++r) {
#pragma GCC unroll 12
    for (int j = 0; j < kChains; ++j) acc[j] = _mm512_fmadd_ps(acc[j], a, b);
  }
  const double s = since(t0);
  alignas(64) float lanes[16];
  for (int i = 0; i < kChains; ++i) {
    _mm512_store_ps(lanes, acc[i]);  // (not _mm512_reduce_add_ps: GCC 12 warns inside it)
    for (float v : lanes) *sink += v;
  }
  return kRounds * kChains * 16 * 2.0 / s / 1e9;
}

__attribute__((target("avx512f,avx512bf16"))) double bf16_dot_gflops(float* sink) {
  __m512 acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = _mm512_set1_ps(i * 1e-9f);
  const __m512bh a = (__m512bh)_mm512_set1_epi32(0x3f803f80);  // 1.0, 1.0
  const __m512bh b = (__m512bh)_mm512_set1_epi32(0x30003000);  // ~4.7e-10 twice
  const auto t0 = std::chrono::steady_clock::now();
  for (long r = 0; r < kRounds; ++r) {
#pragma GCC unroll 12
    for (int j = 0; j < kChains; ++j) acc[j] = _mm512_dpbf16_ps(acc[j], a, b);
  }
  const double s = since(t0);
  alignas(64) float lanes[16];
  for (int i = 0; i < kChains; ++i) {
    _mm512_store_ps(lanes, acc[i]);  // (not _mm512_reduce_add_ps: GCC 12 warns inside it)
    for (float v : lanes) *sink += v;
  }
  return kRounds * kChains * 32 * 2.0 / s / 1e9;
}

}  // namespace

int main() {
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("avx512f")) {
    std::printf("this CPU has no AVX-512: nothing to measure\n");
    return 0;
  }
  float sink = 0;
  const double fp32 = fp32_fma_gflops(&sink);
  std::printf("fp32 vfmadd231ps zmm: %.1f GFLOP/s (1 thread)\n", fp32);
  if (!__builtin_cpu_supports("avx512bf16")) {
    std::printf("this CPU has no AVX512_BF16: bf16 dot products not measured\n");
  } else {
    const double bf16 = bf16_dot_gflops(&sink);
    std::printf("bf16 vdpbf16ps zmm:   %.1f GFLOP/s (1 thread), %.2fx fp32\n", bf16, bf16 / fp32);
  }
  std::fprintf(stderr, "(checksum %g)\n", sink);
  return 0;
}
