// The floor under a model's convolutions on this CPU: every conv layer of a model run
// alone, as one oneDNN primitive (bias + ReLU fused) with its weights and activations hot
// in cache, best of 15 runs, summed. A plan that runs the layers one after another cannot
// be faster than this sum (less what fusion saves), so it says how far any speed target is
// from what the library's kernels can do here.
//
// Input (stdin or the file named by the first argument), one conv per line, as
// bench/conv_floor.py writes it from an ONNX model:
//   batch in_c out_c height width kernel stride pad group name
// Prints per layer (with --verbose) and in total the ms of each activation layout:
// nChw16c (the cpu backend's on AVX-512), nChw8c (on AVX2) and nhwc. Threads from
// OMP_NUM_THREADS. Figures only; nothing is asserted.
#include <omp.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <oneapi/dnnl/dnnl.hpp>
#include <random>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>

namespace {

using dnnl::memory;
using Tag = memory::format_tag;

struct ConvShape {
  int batch, in_c, out_c, height, width, kernel, stride, pad, group;
  std::string name;
};

void fill_random(const memory& m, std::mt19937& rng) {
  // Small values with no denormals: uninitialised buffers made some kernels 10x slower.
  std::uniform_real_distribution<float> dist(-0.5f, 0.5f);
  const size_t n = m.get_desc().get_size() / sizeof(float);
  auto* p = static_cast<float*>(m.get_data_handle());
  for (size_t i = 0; i < n; ++i) p[i] = dist(rng);
}

// The conv as it is timed. oneDNN's jit kernels refuse padding of a kernel's size or more
// (the audio encoder's 3x3 stride-2 pad-3 conv): the runtime pads the input itself then, so
// it is timed that way, on the padded input with no padding (the output is the same size).
struct Geometry {
  int height, width, pad, out_height, out_width;
};

Geometry geometry(const ConvShape& c) {
  const bool prepad = c.pad >= c.kernel;
  Geometry g;
  g.height = prepad ? c.height + 2 * c.pad : c.height;
  g.width = prepad ? c.width + 2 * c.pad : c.width;
  g.pad = prepad ? 0 : c.pad;
  g.out_height = (g.height + 2 * g.pad - c.kernel) / c.stride + 1;
  g.out_width = (g.width + 2 * g.pad - c.kernel) / c.stride + 1;
  return g;
}

double flops(const ConvShape& c) {
  const Geometry g = geometry(c);
  return 2.0 * c.batch * c.out_c * g.out_height * g.out_width * (c.in_c / c.group) * c.kernel *
         c.kernel;
}

// Best of `runs` executions of one conv in layout `tag`, in ms; -1 when oneDNN has no
// primitive. `impl` receives oneDNN's implementation name.
double time_conv(const dnnl::engine& eng, const ConvShape& c, Tag tag, int runs,
                 std::string* impl) {
  const Geometry g = geometry(c);
  const int pad = g.pad;
  const memory::desc src({c.batch, c.in_c, g.height, g.width}, memory::data_type::f32, tag);
  const memory::desc dst({c.batch, c.out_c, g.out_height, g.out_width}, memory::data_type::f32,
                         tag);
  const memory::dims wdims =
      c.group > 1 ? memory::dims{c.group, c.out_c / c.group, c.in_c / c.group, c.kernel, c.kernel}
                  : memory::dims{c.out_c, c.in_c, c.kernel, c.kernel};
  const memory::desc weights(wdims, memory::data_type::f32, Tag::any);
  const memory::desc bias({c.out_c}, memory::data_type::f32, Tag::x);
  dnnl::post_ops po;
  po.append_eltwise(1.f, dnnl::algorithm::eltwise_relu, 0.f, 0.f);
  dnnl::primitive_attr attr;
  attr.set_post_ops(po);
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  dnnl::convolution_forward::primitive_desc pd;
  try {
    pd = dnnl::convolution_forward::primitive_desc(
        dnnl::convolution_forward::desc(dnnl::prop_kind::forward_inference,
                                        dnnl::algorithm::convolution_direct, src, weights, bias,
                                        dst, {c.stride, c.stride}, {pad, pad}, {pad, pad}),
        attr, eng);
  } catch (const dnnl::error&) {
    return -1;
  }
  *impl = pd.impl_info_str();
  std::mt19937 rng(1);
  memory s(pd.src_desc(), eng), d(pd.dst_desc(), eng), wt(pd.weights_desc(), eng), b(bias, eng),
      scratch(pd.scratchpad_desc(), eng);
  fill_random(s, rng);
  fill_random(wt, rng);
  fill_random(b, rng);
  dnnl::convolution_forward conv(pd);
  dnnl::stream strm(eng);
  std::unordered_map<int, memory> args = {{DNNL_ARG_SRC, s},
                                          {DNNL_ARG_WEIGHTS, wt},
                                          {DNNL_ARG_BIAS, b},
                                          {DNNL_ARG_DST, d},
                                          {DNNL_ARG_SCRATCHPAD, scratch}};
  for (int i = 0; i < 3; ++i) conv.execute(strm, args);
  strm.wait();
  double best = 1e30;
  for (int r = 0; r < runs; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    conv.execute(strm, args);
    strm.wait();
    best = std::min(
        best,
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  bool verbose = false;
  std::string path;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--verbose"))
      verbose = true;
    else
      path = argv[i];
  }
  std::ifstream file;
  if (!path.empty()) {
    file.open(path);
    if (!file) {
      std::fprintf(stderr, "conv_floor_bench: cannot read %s\n", path.c_str());
      return 2;
    }
  }
  std::istream& in = path.empty() ? std::cin : file;
  std::vector<ConvShape> convs;
  for (std::string line; std::getline(in, line);) {
    std::istringstream ss(line);
    ConvShape c;
    if (ss >> c.batch >> c.in_c >> c.out_c >> c.height >> c.width >> c.kernel >> c.stride >>
        c.pad >> c.group >> c.name)
      convs.push_back(c);
  }
  if (convs.empty()) {
    std::fprintf(stderr, "conv_floor_bench: no conv lines in the input\n");
    return 2;
  }
  const dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  const std::vector<std::pair<Tag, const char*>> layouts = {
      {Tag::nChw16c, "nChw16c"}, {Tag::nChw8c, "nChw8c"}, {Tag::nhwc, "nhwc"}};
  std::vector<double> total(layouts.size(), 0.0);
  std::vector<int> missing(layouts.size(), 0);
  double total_flops = 0;
  for (const ConvShape& c : convs) {
    const double f = flops(c);
    total_flops += f;
    if (verbose) std::printf("%8.1f MFLOP", f / 1e6);
    for (size_t l = 0; l < layouts.size(); ++l) {
      std::string impl;
      const double ms = time_conv(eng, c, layouts[l].first, 15, &impl);
      if (ms < 0) {
        ++missing[l];
        if (verbose) std::printf(" | %s none", layouts[l].second);
        continue;
      }
      total[l] += ms;
      if (verbose) std::printf(" | %s %.3f ms %s", layouts[l].second, ms, impl.c_str());
    }
    if (verbose) std::printf(" | %s\n", c.name.c_str());
  }
  const int batch = convs.front().batch;
  std::printf("%zu convs, %.3f GFLOP per frame, batch %d, %d threads\n", convs.size(),
              total_flops / 1e9 / batch, batch, omp_get_max_threads());
  for (size_t l = 0; l < layouts.size(); ++l)
    std::printf("floor %s: %.2f ms per frame (%.1f GFLOP/s)%s\n", layouts[l].second,
                total[l] / batch, total_flops / total[l] / 1e6,
                missing[l]
                    ? (" [" + std::to_string(missing[l]) + " layers had no primitive]").c_str()
                    : "");
  return 0;
}
