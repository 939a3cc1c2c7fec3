// The cpu backend against the reference backend, op by op, over a matrix of shapes (kernel
// sizes, strides, groups, batch 1 and 3, odd sizes, channel counts that are not multiples of
// the 8-channel block), with fixed seeds and a tolerance per op.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "nn/backend.h"
#include "nn/ops/infer.h"
#include "test_util.h"

namespace tr::nn {
namespace {

using test::Builder;
using test::max_abs_diff;
using test::random_tensor;
using Ints = std::vector<int64_t>;

// The activation layout's channel block, forced through TALKRENDER_CPU_BLOCK while in scope:
// every case runs in nChw8c and in nChw16c whatever the CPU offers.
class ForceBlock {
 public:
  explicit ForceBlock(int block) {
    const char* old = std::getenv("TALKRENDER_CPU_BLOCK");
    had_ = old != nullptr;
    if (had_) old_ = old;
    setenv("TALKRENDER_CPU_BLOCK", std::to_string(block).c_str(), 1);
  }
  ~ForceBlock() {
    if (had_)
      setenv("TALKRENDER_CPU_BLOCK", old_.c_str(), 1);
    else
      unsetenv("TALKRENDER_CPU_BLOCK");
  }

 private:
  bool had_ = false;
  std::string old_;
};
constexpr int kBlocks[] = {8, 16};
// The precision run_cpu compiles for (the bf16 tests set it).
Precision g_precision = Precision::kFloat32;

// Runs `g` on the cpu backend (shapes inferred on a copy) with 2 threads, in the layout the
// CPU gets (or the one ForceBlock sets).
std::vector<Tensor> run_cpu(const Graph& graph, const std::vector<Tensor>& inputs) {
  Graph g = graph;
  for (size_t i = 0; i < g.inputs.size(); ++i) {
    g.values[g.inputs[i]].shape = inputs[i].shape();
    g.values[g.inputs[i]].shape_known = true;
  }
  Status st = infer_shapes(g);
  EXPECT_TRUE(st.ok()) << st.error().message;
  if (!st.ok()) return {};
  auto exe = make_cpu_backend(g_precision, false)->compile(g, 2);
  EXPECT_TRUE(exe.ok()) << exe.error().message;
  if (!exe.ok()) return {};
  auto out = (*exe)->run(inputs);
  EXPECT_TRUE(out.ok()) << out.error().message;
  if (!out.ok()) return {};
  // A second run reuses the arena and must give the same result.
  auto again = (*exe)->run(inputs);
  EXPECT_TRUE(again.ok());
  if (again.ok())
    for (size_t i = 0; i < out->size(); ++i) EXPECT_EQ(max_abs_diff((*out)[i], (*again)[i]), 0.f);
  return *out;
}

void expect_matches_reference(const Graph& g, const std::vector<Tensor>& inputs, float tol) {
  std::vector<Tensor> want = test::run_reference(g, inputs);
  ASSERT_FALSE(want.empty()) << "the reference backend failed";
  for (int block : kBlocks) {
    ForceBlock force(block);
    std::vector<Tensor> got = run_cpu(g, inputs);
    ASSERT_EQ(got.size(), want.size()) << "nChw" << block << "c";
    for (size_t i = 0; i < want.size(); ++i) {
      EXPECT_EQ(got[i].shape(), want[i].shape()) << "output " << i << ", nChw" << block << "c";
      EXPECT_LE(max_abs_diff(got[i], want[i]), tol) << "output " << i << ", nChw" << block << "c";
    }
  }
}

struct ConvCase {
  int64_t batch, cin, cout, h, w, kernel, stride, group;
  Ints pads;  // top, left, bottom, right
  bool bias;
  std::string activation;  // FusedConv activation; "" = plain Conv
  bool residual;
};

std::string describe(const ConvCase& c) {
  return "n" + std::to_string(c.batch) + " c" + std::to_string(c.cin) + "->" +
         std::to_string(c.cout) + " " + std::to_string(c.h) + "x" + std::to_string(c.w) + " k" +
         std::to_string(c.kernel) + " s" + std::to_string(c.stride) + " g" +
         std::to_string(c.group) + " act '" + c.activation + "'" + (c.residual ? " +res" : "");
}

class CpuConvTest : public ::testing::TestWithParam<ConvCase> {};

TEST_P(CpuConvTest, MatchesReference) {
  const ConvCase& c = GetParam();
  SCOPED_TRACE(describe(c));
  Builder b;
  ValueId x = b.input("x", {c.batch, c.cin, c.h, c.w});
  ValueId w = b.constant(
      "w", random_tensor({c.cout, c.cin / c.group, c.kernel, c.kernel}, 11, -0.5f, 0.5f));
  std::vector<ValueId> ins = {x, w};
  if (c.bias || c.residual)
    ins.push_back(c.bias ? b.constant("b", random_tensor({c.cout}, 12)) : kNoId);
  const int64_t oh = (c.h + c.pads[0] + c.pads[2] - c.kernel) / c.stride + 1;
  const int64_t ow = (c.w + c.pads[1] + c.pads[3] - c.kernel) / c.stride + 1;
  std::vector<Tensor> inputs = {random_tensor({c.batch, c.cin, c.h, c.w}, 13)};
  if (c.residual) {
    ins.push_back(b.input("r", {c.batch, c.cout, oh, ow}));
    inputs.push_back(random_tensor({c.batch, c.cout, oh, ow}, 14));
  }
  std::map<std::string, AttrValue> attrs = {{"kernel_shape", Ints{c.kernel, c.kernel}},
                                            {"strides", Ints{c.stride, c.stride}},
                                            {"pads", c.pads},
                                            {"group", c.group}};
  const bool fused = !c.activation.empty() || c.residual;
  if (fused) attrs["activation"] = c.activation == "none" ? std::string() : c.activation;
  if (c.activation == "LeakyRelu") attrs["alpha"] = 0.1f;
  b.output(b.op(fused ? OpKind::kFusedConv : OpKind::kConv, ins, attrs));
  expect_matches_reference(b.g, inputs, 1e-4f);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, CpuConvTest,
    ::testing::Values(
        // 1x1 (the generator's expand/project convs), odd sizes, ragged channel counts
        ConvCase{1, 16, 32, 9, 7, 1, 1, 1, {0, 0, 0, 0}, false, "", false},
        ConvCase{3, 6, 12, 11, 13, 1, 1, 1, {0, 0, 0, 0}, true, "Relu", false},
        ConvCase{1, 20, 3, 8, 8, 1, 1, 1, {0, 0, 0, 0}, true, "", false},
        ConvCase{3, 32, 16, 5, 5, 1, 1, 1, {0, 0, 0, 0}, false, "none", true},
        ConvCase{1, 24, 24, 6, 9, 1, 1, 1, {0, 0, 0, 0}, true, "Relu", true},
        ConvCase{2, 16, 8, 7, 7, 1, 2, 1, {0, 0, 0, 0}, true, "", false},
        // depthwise 3x3, stride 1 and 2 (even and odd sizes), ragged channels
        ConvCase{1, 64, 64, 10, 10, 3, 1, 64, {1, 1, 1, 1}, false, "Relu", false},
        ConvCase{3, 12, 12, 9, 11, 3, 2, 12, {1, 1, 1, 1}, true, "Relu", false},
        ConvCase{1, 40, 40, 16, 16, 3, 2, 40, {1, 1, 1, 1}, true, "LeakyRelu", false},
        // dense 3x3 (the audio path), padding 3 and asymmetric padding, grouped
        ConvCase{1, 32, 64, 16, 16, 3, 1, 1, {1, 1, 1, 1}, true, "Relu", false},
        ConvCase{3, 16, 32, 16, 16, 3, 2, 1, {3, 3, 3, 3}, true, "Relu", false},
        ConvCase{1, 8, 8, 7, 9, 3, 1, 1, {0, 1, 2, 1}, false, "", false},
        ConvCase{1, 16, 16, 8, 8, 3, 1, 2, {1, 1, 1, 1}, true, "", false},
        ConvCase{3, 1, 32, 20, 16, 3, 1, 1, {1, 1, 1, 1}, true, "Relu", false},
        ConvCase{1, 5, 7, 9, 6, 5, 1, 1, {2, 2, 2, 2}, true, "none", true}));

// Resize into a Concat (the decoder's upsample + skip), the in-place path and the copy path.
struct ResizeConcatCase {
  int64_t batch, c_up, c_skip, h, w;
  std::string mode, coord;
};

class CpuResizeConcatTest : public ::testing::TestWithParam<ResizeConcatCase> {};

TEST_P(CpuResizeConcatTest, MatchesReference) {
  const ResizeConcatCase& c = GetParam();
  SCOPED_TRACE(c.mode + " " + c.coord + " c_up " + std::to_string(c.c_up));
  Builder b;
  ValueId x = b.input("x", {c.batch, c.c_up, c.h, c.w});
  ValueId skip = b.input("skip", {c.batch, c.c_skip, 2 * c.h, 2 * c.w});
  ValueId scales = b.constant("scales", Tensor::f32({4}, {1.f, 1.f, 2.f, 2.f}));
  ValueId up = b.op(OpKind::kResize, {x, kNoId, scales},
                    {{"mode", c.mode}, {"coordinate_transformation_mode", c.coord}});
  b.output(b.op(OpKind::kConcat, {up, skip}, {{"axis", int64_t{1}}}));
  expect_matches_reference(b.g,
                           {random_tensor({c.batch, c.c_up, c.h, c.w}, 21),
                            random_tensor({c.batch, c.c_skip, 2 * c.h, 2 * c.w}, 22)},
                           1e-5f);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, CpuResizeConcatTest,
    ::testing::Values(ResizeConcatCase{1, 16, 16, 5, 5, "linear", "align_corners"},
                      ResizeConcatCase{3, 8, 16, 4, 7, "linear", "align_corners"},
                      ResizeConcatCase{2, 12, 8, 5, 3, "linear", "align_corners"},
                      ResizeConcatCase{1, 8, 5, 6, 6, "linear", "half_pixel"},
                      ResizeConcatCase{3, 16, 8, 3, 5, "nearest", "asymmetric"}));

// The generator's bottleneck block: 1x1 expand + ReLU -> 3x3 depthwise (stride 1 or 2) +
// ReLU -> 1x1 project (+ residual), which the backend fuses (1x1 -> depthwise post-op,
// residual accumulated in place), followed by the final 1x1 + Sigmoid.
struct BottleneckCase {
  int64_t batch, c, h, w, stride;
};

class CpuBottleneckTest : public ::testing::TestWithParam<BottleneckCase> {};

TEST_P(CpuBottleneckTest, MatchesReference) {
  const BottleneckCase& c = GetParam();
  SCOPED_TRACE("n" + std::to_string(c.batch) + " c" + std::to_string(c.c) + " " +
               std::to_string(c.h) + "x" + std::to_string(c.w) + " s" + std::to_string(c.stride));
  Builder b;
  const int64_t hidden = 2 * c.c;
  ValueId x = b.input("x", {c.batch, c.c, c.h, c.w});
  auto conv = [&](ValueId in, int64_t cin, int64_t cout, int64_t k, int64_t stride, int64_t group,
                  const std::string& act, ValueId residual, uint32_t seed) {
    ValueId w = b.constant("w" + std::to_string(seed),
                           random_tensor({cout, cin / group, k, k}, seed, -0.4f, 0.4f));
    ValueId bias = b.constant("b" + std::to_string(seed), random_tensor({cout}, seed + 100));
    const int64_t pad = k / 2;
    return b.op(OpKind::kFusedConv, {in, w, bias, residual},
                {{"kernel_shape", Ints{k, k}},
                 {"strides", Ints{stride, stride}},
                 {"pads", Ints{pad, pad, pad, pad}},
                 {"group", group},
                 {"activation", act}});
  };
  ValueId e = conv(x, c.c, hidden, 1, 1, 1, "Relu", kNoId, 1);
  ValueId d = conv(e, hidden, hidden, 3, c.stride, hidden, "Relu", kNoId, 2);
  ValueId y = conv(d, hidden, c.c, 1, 1, 1, "", kNoId, 3);
  if (c.stride == 1) {
    // A second, residual block reading y twice (expand and residual).
    ValueId e2 = conv(y, c.c, hidden, 1, 1, 1, "Relu", kNoId, 4);
    ValueId d2 = conv(e2, hidden, hidden, 3, 1, hidden, "Relu", kNoId, 5);
    y = conv(d2, hidden, c.c, 1, 1, 1, "", y, 6);
  }
  ValueId out = conv(y, c.c, 3, 1, 1, 1, "", kNoId, 7);
  b.output(b.op(OpKind::kSigmoid, {out}));
  expect_matches_reference(b.g, {random_tensor({c.batch, c.c, c.h, c.w}, 41)}, 1e-4f);
}

INSTANTIATE_TEST_SUITE_P(Shapes, CpuBottleneckTest,
                         ::testing::Values(BottleneckCase{1, 16, 20, 20, 1},
                                           BottleneckCase{3, 8, 9, 13, 1},
                                           BottleneckCase{1, 32, 40, 40, 2},
                                           BottleneckCase{3, 12, 11, 7, 2},
                                           BottleneckCase{1, 6, 33, 33, 1}));

// Element-wise ops, conversions in and out of the blocked layout, a fallback op in the middle
// of native ones, in-place reuse and a value read after its in-place candidate.
TEST(CpuGraphTest, MixedNativeAndFallbackOps) {
  Builder b;
  ValueId x = b.input("x", {3, 12, 7, 5});
  ValueId y = b.input("y", {3, 12, 7, 5});
  ValueId sum = b.op(OpKind::kAdd, {x, y});
  ValueId act = b.op(OpKind::kRelu, {sum});
  ValueId neg = b.op(OpKind::kMul, {act, b.constant("k", Tensor::f32({1}, {-0.5f}))});
  ValueId w = b.constant("w", random_tensor({12, 12, 1, 1}, 31));
  // act is read by this conv's residual and by the Add below: no in-place accumulation.
  ValueId conv = b.op(OpKind::kFusedConv, {neg, w, kNoId, act}, {{"activation", std::string()}});
  ValueId sig = b.op(OpKind::kSigmoid, {conv});
  ValueId pads = b.constant("pads", Tensor::i64({8}, {0, 0, 0, 0, 0, 0, 0, 0}));
  ValueId same = b.op(OpKind::kPad, {sig, pads});
  ValueId total = b.op(OpKind::kAdd, {same, act});
  ValueId padded =
      b.op(OpKind::kPad, {total, b.constant("p2", Tensor::i64({8}, {0, 0, 1, 0, 0, 0, 0, 2}))});
  b.output(total);
  b.output(b.op(OpKind::kLeakyRelu, {padded}, {{"alpha", 0.2f}}));
  expect_matches_reference(
      b.g, {random_tensor({3, 12, 7, 5}, 32), random_tensor({3, 12, 7, 5}, 33)}, 1e-5f);
}

// Two Executables of one graph, each run from its own thread at the same time (one
// Executable per Session per thread), give the reference's results.
TEST(CpuGraphTest, ExecutablesRunConcurrently) {
  Builder b;
  ValueId x = b.input("x", {2, 16, 24, 24});
  ValueId w = b.constant("w", random_tensor({32, 16, 1, 1}, 51));
  ValueId e = b.op(OpKind::kFusedConv, {x, w}, {{"activation", std::string("Relu")}});
  ValueId dw = b.constant("dw", random_tensor({32, 1, 3, 3}, 52));
  ValueId d = b.op(OpKind::kFusedConv, {e, dw},
                   {{"kernel_shape", Ints{3, 3}},
                    {"pads", Ints{1, 1, 1, 1}},
                    {"group", int64_t{32}},
                    {"activation", std::string("Relu")}});
  b.output(b.op(OpKind::kSigmoid, {d}));
  Graph g = b.g;
  ASSERT_TRUE(infer_shapes(g).ok());
  const Tensor input = random_tensor({2, 16, 24, 24}, 53);
  const std::vector<Tensor> want = test::run_reference(b.g, {input});
  ASSERT_EQ(want.size(), 1u);
  auto backend = make_cpu_backend(Precision::kFloat32, false);
  std::vector<std::unique_ptr<Executable>> exes;
  for (int i = 0; i < 2; ++i) {
    auto exe = backend->compile(g, 1);
    ASSERT_TRUE(exe.ok()) << exe.error().message;
    exes.push_back(std::move(*exe));
  }
  std::vector<float> worst(exes.size(), 0.f);
  std::vector<std::thread> threads;
  for (size_t t = 0; t < exes.size(); ++t)
    threads.emplace_back([&, t] {
      for (int run = 0; run < 20; ++run) {
        auto out = exes[t]->run({input});
        worst[t] = std::max(worst[t], out.ok() ? max_abs_diff((*out)[0], want[0]) : 1e9f);
      }
    });
  for (auto& th : threads) th.join();
  for (float w : worst) EXPECT_LE(w, 1e-5f);
}

// A 1x1 conv with a residual feeding a depthwise conv: not fusable (the residual belongs to
// the 1x1's output), must still be right.
TEST(CpuGraphTest, ResidualOneByOneThenDepthwise) {
  Builder b;
  ValueId x = b.input("x", {3, 8, 9, 10});
  ValueId r = b.input("r", {3, 16, 9, 10});
  ValueId e =
      b.op(OpKind::kFusedConv, {x, b.constant("w", random_tensor({16, 8, 1, 1}, 61)), kNoId, r},
           {{"activation", std::string("Relu")}});
  b.output(b.op(OpKind::kFusedConv, {e, b.constant("dw", random_tensor({16, 1, 3, 3}, 62))},
                {{"kernel_shape", Ints{3, 3}},
                 {"strides", Ints{2, 2}},
                 {"pads", Ints{1, 1, 1, 1}},
                 {"group", int64_t{16}},
                 {"activation", std::string("Relu")}}));
  expect_matches_reference(
      b.g, {random_tensor({3, 8, 9, 10}, 63), random_tensor({3, 16, 9, 10}, 64)}, 1e-4f);
}

TEST(CpuGraphTest, WrongInputShapeIsAnError) {
  Builder b;
  ValueId x = b.input("x", {1, 8, 4, 4});
  b.output(b.op(OpKind::kRelu, {x}));
  Graph g = b.g;
  ASSERT_TRUE(infer_shapes(g).ok());
  auto exe = make_cpu_backend(Precision::kFloat32, false)->compile(g, 1);
  ASSERT_TRUE(exe.ok());
  auto out = (*exe)->run({random_tensor({1, 8, 4, 5}, 1)});
  ASSERT_FALSE(out.ok());
  EXPECT_NE(out.error().message.find("[1, 8, 4, 5]"), std::string::npos) << out.error().message;
}

}  // namespace
}  // namespace tr::nn

namespace tr::nn {
namespace {

// bf16 (where the CPU computes it natively): the resize + concat slices and the bottleneck
// block with bf16 activations in nChw16c, the first and last convs in fp32. The tolerance is
// bf16's: 8 bits of mantissa through a few layers.
TEST(CpuBf16Test, ResizeConcatAndBottleneck) {
  if (!cpu_info().native_bf16)
    GTEST_SKIP() << "SKIPPED: this CPU has no native bf16 (oneDNN ISA " << cpu_info().isa << ")";
  g_precision = Precision::kBFloat16;
  {
    Builder b;
    ValueId x = b.input("x", {2, 16, 5, 6});
    ValueId skip = b.input("skip", {2, 24, 10, 12});
    ValueId scales = b.constant("scales", Tensor::f32({4}, {1.f, 1.f, 2.f, 2.f}));
    ValueId up = b.op(OpKind::kResize, {x, kNoId, scales},
                      {{"mode", std::string("linear")},
                       {"coordinate_transformation_mode", std::string("align_corners")}});
    b.output(b.op(OpKind::kConcat, {up, skip}, {{"axis", int64_t{1}}}));
    expect_matches_reference(
        b.g, {random_tensor({2, 16, 5, 6}, 71), random_tensor({2, 24, 10, 12}, 72)}, 0.02f);
  }
  {
    Builder b;
    ValueId x = b.input("x", {2, 16, 12, 12});
    auto conv = [&](ValueId in, int64_t cin, int64_t cout, int64_t k, int64_t group,
                    const std::string& act, uint32_t seed) {
      ValueId w = b.constant("w" + std::to_string(seed),
                             random_tensor({cout, cin / group, k, k}, seed, -0.3f, 0.3f));
      return b.op(
          OpKind::kFusedConv,
          {in, w, b.constant("b" + std::to_string(seed), random_tensor({cout}, seed + 100))},
          {{"kernel_shape", Ints{k, k}},
           {"pads", Ints{k / 2, k / 2, k / 2, k / 2}},
           {"group", group},
           {"activation", act}});
    };
    ValueId e = conv(x, 16, 64, 1, 1, "Relu", 81);
    ValueId d = conv(e, 64, 64, 3, 64, "Relu", 82);
    ValueId p = conv(d, 64, 32, 1, 1, "Relu", 83);
    ValueId q = conv(p, 32, 32, 1, 1, "Relu", 84);
    b.output(b.op(OpKind::kSigmoid, {conv(q, 32, 3, 1, 1, "", 85)}));
    expect_matches_reference(b.g, {random_tensor({2, 16, 12, 12}, 86)}, 0.05f);
  }
  g_precision = Precision::kFloat32;
}

}  // namespace
}  // namespace tr::nn
