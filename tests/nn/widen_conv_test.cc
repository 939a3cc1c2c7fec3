// Widened Conv support: 1-D convolution, dilation (reference and cpu backends), and the
// ConvTranspose reference kernel (hand-computed cases, plus PyTorch when available).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "common/npy.h"
#include "nn/nn.h"
#include "nn/ref/ref_kernels.h"
#include "test_util.h"

namespace tr::nn {
namespace {

using test::run_op;
using test::seq;
using test::values;

TEST(WidenConv, OneDimensionalWithPadAndStride) {
  // x = 1..5, kernel [1, 2], pad 1 each side, stride 2: windows over [0,1,2,3,4,5,0]
  // starting at 0, 2, 4 -> 0*1+1*2, 2*1+3*2, 4*1+5*2.
  Tensor x = seq({1, 1, 5});
  Tensor w = Tensor::f32({1, 1, 2}, {1, 2});
  auto r = run_op(OpKind::kConv, {&x, &w},
                  {{"pads", std::vector<int64_t>{1, 1}}, {"strides", std::vector<int64_t>{2}}});
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ((*r)[0].shape(), (Shape{1, 1, 3}));
  EXPECT_EQ(values((*r)[0]), (std::vector<float>{2, 8, 14}));
}

TEST(WidenConv, OneDimensionalDilated) {
  // Kernel [1, 1] with dilation 2 sums x[i] + x[i + 2].
  Tensor x = seq({1, 1, 5});
  Tensor w = Tensor::f32({1, 1, 2}, {1, 1});
  auto r = run_op(OpKind::kConv, {&x, &w}, {{"dilations", std::vector<int64_t>{2}}});
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(values((*r)[0]), (std::vector<float>{4, 6, 8}));
}

TEST(WidenConv, TwoDimensionalDilated) {
  // 4x4 input 1..16, 2x2 ones kernel dilated by 2: y[i][j] = x[i][j] + x[i][j+2] +
  // x[i+2][j] + x[i+2][j+2].
  Tensor x = seq({1, 1, 4, 4});
  Tensor w = Tensor::f32({1, 1, 2, 2}, {1, 1, 1, 1});
  auto r = run_op(OpKind::kConv, {&x, &w}, {{"dilations", std::vector<int64_t>{2, 2}}});
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ((*r)[0].shape(), (Shape{1, 1, 2, 2}));
  EXPECT_EQ(values((*r)[0]), (std::vector<float>{1 + 3 + 9 + 11, 2 + 4 + 10 + 12, 5 + 7 + 13 + 15,
                                                 6 + 8 + 14 + 16}));
}

TEST(WidenConv, ThreeDimensionalDepthKernelAndDilation) {
  // 2x2x2 input 1..8, kernel of depth 2 (ones): y[h][w] = x[0][h][w] + x[1][h][w].
  Tensor x = seq({1, 1, 2, 2, 2});
  Tensor w = Tensor::f32({1, 1, 2, 1, 1}, {1, 1});
  auto r = run_op(OpKind::kConv, {&x, &w});
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ((*r)[0].shape(), (Shape{1, 1, 1, 2, 2}));
  EXPECT_EQ(values((*r)[0]), (std::vector<float>{6, 8, 10, 12}));
  // Depth 3, kernel depth 2 dilated by 2, depth pads 1: taps (z-1, z+1) over [0, x0, x1, x2, 0]
  // with x a 3x1x1 ramp 1..3 -> outputs 0+2, 1+3, 2+0.
  Tensor x3 = seq({1, 1, 3, 1, 1});
  r = run_op(OpKind::kConv, {&x3, &w},
             {{"dilations", std::vector<int64_t>{2, 1, 1}},
              {"pads", std::vector<int64_t>{1, 0, 0, 1, 0, 0}}});
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ((*r)[0].shape(), (Shape{1, 1, 3, 1, 1}));
  EXPECT_EQ(values((*r)[0]), (std::vector<float>{2, 4, 2}));
}

TEST(WidenConv, OneDimensionalBadAttributeRankIsRefused) {
  Tensor x = seq({1, 1, 5});
  Tensor w = Tensor::f32({1, 1, 2}, {1, 1});
  auto r = run_op(OpKind::kConv, {&x, &w}, {{"strides", std::vector<int64_t>{1, 1}}});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("strides"), std::string::npos) << r.error().message;
}

// A dilated 3x3 depthwise conv after a 1x1 conv: the shape the cpu backend would otherwise
// fuse natively. Both backends must agree with the reference.
TEST(WidenConv, DilatedConvSameOnBothBackends) {
  test::OnnxSpec s;
  s.inputs = {{"input", {1, 8, 9, 9}}};
  s.outputs = {"y"};
  s.initializers = {{"w1", test::random_tensor({8, 8, 1, 1}, 3)},
                    {"w2", test::random_tensor({8, 1, 3, 3}, 4)},
                    {"w3", test::random_tensor({4, 8, 3, 3}, 5)}};
  s.nodes = {
      {"Conv", {"input", "w1"}, {"a"}},
      {"Conv", {"a", "w2"}, {"b"}, {{"group", 8}}, {{"pads", {1, 1, 1, 1}}, {"dilations", {2, 2}}}},
      {"Conv", {"b", "w3"}, {"y"}, {}, {{"pads", {2, 2, 2, 2}}, {"dilations", {2, 2}}}}};
  auto m = Model::load_from_bytes(test::make_onnx(s), "dilated.onnx");
  ASSERT_TRUE(m.ok()) << m.error().message;
  Tensor x = test::random_tensor({1, 8, 9, 9}, 6);
  auto ref = Session::create(*m, {BackendKind::kReference, 1});
  auto cpu = Session::create(*m, {BackendKind::kCpu, 1});
  ASSERT_TRUE(ref.ok() && cpu.ok());
  auto a = (*ref)->run({{"input", x}});
  auto b = (*cpu)->run({{"input", x}});
  ASSERT_TRUE(a.ok()) << a.error().message;
  ASSERT_TRUE(b.ok()) << b.error().message;
  EXPECT_EQ((*a)[0].shape(), (Shape{1, 4, 7, 7}));
  EXPECT_LT(test::max_abs_diff((*a)[0], (*b)[0]), 1e-4f);
  // Against an undilated evaluation: the graphs differ, so the results must too (guards
  // against dilation being silently ignored by either backend).
  s.nodes[2].ints_attrs = {{"pads", {1, 1, 1, 1}}};
  s.nodes[1].ints_attrs = {{"pads", {1, 1, 1, 1}}};
  auto plain = Model::load_from_bytes(test::make_onnx(s), "plain.onnx");
  ASSERT_TRUE(plain.ok()) << plain.error().message;
  auto sp = Session::create(*plain, {BackendKind::kReference, 1});
  auto c = (*sp)->run({{"input", x}});
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ((*c)[0].shape(), (Shape{1, 4, 9, 9}));
}

TEST(WidenConvTranspose, StrideTwoHandComputed) {
  // 1x1x2x2 input [1 2; 3 4], ones 2x2 kernel, stride 2: each input pixel becomes a 2x2 block.
  Tensor x = seq({1, 1, 2, 2});
  Tensor w = Tensor::f32({1, 1, 2, 2}, {1, 1, 1, 1});
  auto r = run_op(OpKind::kConvTranspose, {&x, &w}, {{"strides", std::vector<int64_t>{2, 2}}});
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ((*r)[0].shape(), (Shape{1, 1, 4, 4}));
  EXPECT_EQ(values((*r)[0]), (std::vector<float>{1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4}));
}

TEST(WidenConvTranspose, OverlapPadsBiasAndOutputPadding) {
  // 1-D along W: x = [1, 2], kernel [1, 1, 1], stride 1 -> full [1, 3, 3, 2]; pads 1/0 drop
  // the first column, output_padding 1 adds a zero column (stride 2 needed for it to be
  // legal in torch, but ONNX only requires it to be non-negative); bias 10.
  Tensor x = seq({1, 1, 1, 2});
  Tensor w = Tensor::f32({1, 1, 1, 3}, {1, 1, 1});
  Tensor b = Tensor::f32({1}, {10});
  auto r = run_op(
      OpKind::kConvTranspose, {&x, &w, &b},
      {{"pads", std::vector<int64_t>{0, 1, 0, 0}}, {"output_padding", std::vector<int64_t>{0, 1}}});
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ((*r)[0].shape(), (Shape{1, 1, 1, 4}));
  EXPECT_EQ(values((*r)[0]), (std::vector<float>{13, 13, 12, 10}));
}

// PyTorch's conv_transpose2d on random data (strides, pads, output_padding, groups,
// dilation), computed by Debian's python3-torch at test time.
TEST(WidenConvTranspose, MatchesPyTorch) {
  if (std::system("/usr/bin/python3 -c 'import torch, numpy' >/dev/null 2>&1") != 0) {
    GTEST_SKIP() << "/usr/bin/python3 with torch and numpy is not available";
  }
  const auto dir =
      std::filesystem::temp_directory_path() / ("widen_convt_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  struct Case {
    Shape x, w;
    std::vector<int64_t> strides, pads, out_pad, dil;
    int64_t group;
  };
  const std::vector<Case> cases = {
      {{1, 3, 5, 4}, {3, 2, 3, 3}, {2, 2}, {1, 1, 1, 1}, {1, 1}, {1, 1}, 1},
      {{2, 4, 3, 3}, {4, 3, 2, 3}, {2, 1}, {0, 1, 0, 1}, {1, 0}, {1, 2}, 2},
      {{1, 2, 4, 4}, {2, 1, 3, 3}, {1, 1}, {2, 2, 2, 2}, {0, 0}, {2, 2}, 2},
  };
  for (size_t c = 0; c < cases.size(); ++c) {
    const Case& k = cases[c];
    Tensor x = test::random_tensor(k.x, 10 + c), w = test::random_tensor(k.w, 20 + c);
    Tensor b = test::random_tensor({k.w[1] * k.group}, 30 + c);
    const std::string xp = (dir / "x.npy").string(), wp = (dir / "w.npy").string(),
                      bp = (dir / "b.npy").string(), yp = (dir / "y.npy").string();
    ASSERT_TRUE(write_npy(xp, x).ok() && write_npy(wp, w).ok() && write_npy(bp, b).ok());
    auto list = [](const std::vector<int64_t>& v, size_t from, size_t n) {
      std::string s = "(";
      for (size_t i = from; i < from + n; ++i) s += std::to_string(v[i]) + ",";
      return s + ")";
    };
    const std::string script = dir.string() + "/t.py";
    std::ofstream(script) << "import numpy as np, torch\n"
                          << "x = torch.from_numpy(np.load('" << xp << "'))\n"
                          << "w = torch.from_numpy(np.load('" << wp << "'))\n"
                          << "b = torch.from_numpy(np.load('" << bp << "'))\n"
                          << "y = torch.nn.functional.conv_transpose2d(x, w, b, stride="
                          << list(k.strides, 0, 2) << ", padding=" << list(k.pads, 0, 2)
                          << ", output_padding=" << list(k.out_pad, 0, 2) << ", groups=" << k.group
                          << ", dilation=" << list(k.dil, 0, 2) << ")\n"
                          << "np.save('" << yp << "', y.numpy())\n";
    ASSERT_EQ(std::system(("/usr/bin/python3 " + script).c_str()), 0) << "case " << c;
    auto want = read_npy(yp);
    ASSERT_TRUE(want.ok()) << want.error().message;
    auto r = run_op(OpKind::kConvTranspose, {&x, &w, &b},
                    {{"strides", k.strides},
                     {"pads", k.pads},
                     {"output_padding", k.out_pad},
                     {"dilations", k.dil},
                     {"group", k.group}});
    ASSERT_TRUE(r.ok()) << r.error().message;
    EXPECT_EQ((*r)[0].shape(), want->shape()) << "case " << c;
    EXPECT_LT(test::max_abs_diff((*r)[0], *want), 1e-4f) << "case " << c;
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace tr::nn
