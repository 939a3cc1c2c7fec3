// 1x1 convolution (+bias +ReLU) on the generator's real layer shapes: oneDNN (nChw8c,
// jit:avx2) against OpenBLAS sgemm on NCHW (W[cout,cin] x X[cin,H*W] per image, then a
// bias+ReLU pass). This decided which library the cpu backend uses for 1x1 convs.
//
// Run: build-x/bench_cpu_conv1x1 (threads from TR_BENCH_THREADS, default 2).
#include <benchmark/benchmark.h>
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <oneapi/dnnl/dnnl.hpp>
#include <random>
#include <vector>

namespace {

int bench_threads() {
  const char* t = std::getenv("TR_BENCH_THREADS");
  return t ? std::max(1, std::atoi(t)) : 2;
}

std::vector<float> random_vector(size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.f, 1.f);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

// args: batch, cin, cout, spatial size
void BM_Conv1x1_OneDnn(benchmark::State& state) {
  using namespace dnnl;
  const int n = state.range(0), cin = state.range(1), cout = state.range(2), hw = state.range(3);
  omp_set_num_threads(bench_threads());
  engine eng(engine::kind::cpu, 0);
  stream strm(eng);
  memory::desc src_md({n, cin, hw, hw}, memory::data_type::f32, memory::format_tag::nChw8c);
  memory::desc dst_md({n, cout, hw, hw}, memory::data_type::f32, memory::format_tag::nChw8c);
  memory::desc wei_any({cout, cin, 1, 1}, memory::data_type::f32, memory::format_tag::any);
  memory::desc bias_md({cout}, memory::data_type::f32, memory::format_tag::x);
  post_ops po;
  po.append_eltwise(1.f, algorithm::eltwise_relu, 0.f, 0.f);
  primitive_attr attr;
  attr.set_post_ops(po);
  convolution_forward::primitive_desc pd({prop_kind::forward_inference,
                                          algorithm::convolution_direct,
                                          src_md,
                                          wei_any,
                                          bias_md,
                                          dst_md,
                                          {1, 1},
                                          {0, 0},
                                          {0, 0}},
                                         attr, eng);
  memory src(src_md, eng), dst(dst_md, eng), bias(bias_md, eng), wei(pd.weights_desc(), eng);
  auto s = random_vector(src_md.get_size() / 4, 1);
  std::copy(s.begin(), s.end(), static_cast<float*>(src.get_data_handle()));
  std::fill_n(static_cast<float*>(wei.get_data_handle()), pd.weights_desc().get_size() / 4, 0.01f);
  std::fill_n(static_cast<float*>(bias.get_data_handle()), cout, 0.1f);
  convolution_forward conv(pd);
  for (auto _ : state) {
    conv.execute(
        strm,
        {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wei}, {DNNL_ARG_BIAS, bias}, {DNNL_ARG_DST, dst}});
    strm.wait();
  }
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * n * cin * cout * hw * hw,
                                                 benchmark::Counter::kIsIterationInvariantRate,
                                                 benchmark::Counter::kIs1000);
  state.SetLabel(pd.impl_info_str());
}

void BM_Conv1x1_OpenBlas(benchmark::State& state) {
  const int n = state.range(0), cin = state.range(1), cout = state.range(2), hw = state.range(3);
  openblas_set_num_threads(bench_threads());
  const int pix = hw * hw;
  auto x = random_vector(size_t(n) * cin * pix, 1);
  auto w = random_vector(size_t(cout) * cin, 2);
  std::vector<float> bias(cout, 0.1f), y(size_t(n) * cout * pix);
  for (auto _ : state) {
    for (int b = 0; b < n; ++b) {
      float* yb = y.data() + size_t(b) * cout * pix;
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, cout, pix, cin, 1.f, w.data(), cin,
                  x.data() + size_t(b) * cin * pix, pix, 0.f, yb, pix);
#pragma omp parallel for num_threads(bench_threads())
      for (int c = 0; c < cout; ++c)
        for (int p = 0; p < pix; ++p)
          yb[size_t(c) * pix + p] = std::max(yb[size_t(c) * pix + p] + bias[c], 0.f);
    }
  }
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * n * cin * cout * hw * hw,
                                                 benchmark::Counter::kIsIterationInvariantRate,
                                                 benchmark::Counter::kIs1000);
}

// The generator's 1x1 shapes (S = 320): {cin, cout, spatial}, from big-and-thin to deep-and-small.
void Shapes(benchmark::internal::Benchmark* b) {
  for (int batch : {1, 4})
    for (auto s : std::vector<std::vector<int>>{{32, 64, 320},
                                                {128, 16, 320},
                                                {64, 128, 160},
                                                {128, 32, 160},
                                                {128, 256, 80},
                                                {256, 128, 40},
                                                {256, 512, 20},
                                                {1024, 2048, 10},
                                                {2048, 512, 10}})
      b->Args({batch, s[0], s[1], s[2]});
  b->Unit(benchmark::kMillisecond)->UseRealTime();
}

BENCHMARK(BM_Conv1x1_OneDnn)->Apply(Shapes);
BENCHMARK(BM_Conv1x1_OpenBlas)->Apply(Shapes);

}  // namespace

BENCHMARK_MAIN();
