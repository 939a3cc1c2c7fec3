// Widened Pad (reflect, edge) and Resize (cubic, exclude_outside, align_corners with scales,
// scales fed as a graph input) support.
#include <gtest/gtest.h>

#include <cmath>

#include "nn/nn.h"
#include "nn/ref/ref_kernels.h"
#include "test_util.h"

namespace tr::nn {
namespace {

using test::run_op;
using test::seq;
using test::values;

TEST(WidenPad, ReflectAndEdge1D) {
  Tensor x = seq({4});  // 1 2 3 4
  Tensor pads = Tensor::i64({2}, {3, 2});
  auto r = run_op(OpKind::kPad, {&x, &pads}, {{"mode", std::string("reflect")}});
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(values((*r)[0]), (std::vector<float>{4, 3, 2, 1, 2, 3, 4, 3, 2}));
  r = run_op(OpKind::kPad, {&x, &pads}, {{"mode", std::string("edge")}});
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(values((*r)[0]), (std::vector<float>{1, 1, 1, 1, 2, 3, 4, 4, 4}));
}

TEST(WidenPad, Reflect2DAttributeFormAndUnknownMode) {
  // [[1 2 3] [4 5 6]], one row/column of reflection on each side of the last two dims.
  Tensor x = seq({1, 2, 3});
  std::map<std::string, AttrValue> attrs = {{"mode", std::string("reflect")},
                                            {"pads", std::vector<int64_t>{0, 1, 1, 0, 1, 1}}};
  auto r = run_op(OpKind::kPad, {&x}, attrs);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ((*r)[0].shape(), (Shape{1, 4, 5}));
  EXPECT_EQ(values((*r)[0]), (std::vector<float>{5, 4, 5, 6, 5, 2, 1, 2, 3, 2,  //
                                                 5, 4, 5, 6, 5, 2, 1, 2, 3, 2}));
  attrs["mode"] = std::string("wrap");
  r = run_op(OpKind::kPad, {&x}, attrs);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("wrap"), std::string::npos);
}

TEST(WidenResize, CubicReproducesARampInTheInterior) {
  // Keys' cubic kernel reproduces linear functions exactly where all four taps are inside:
  // asymmetric x2 upsampling of 0..7 gives o / 2 there.
  Tensor x = seq({1, 8}, 0.f);
  Tensor scales = Tensor::f32({2}, {1.f, 2.f});
  auto r = run_op(OpKind::kResize, {&x, nullptr, &scales},
                  {{"mode", std::string("cubic")},
                   {"coordinate_transformation_mode", std::string("asymmetric")}});
  ASSERT_TRUE(r.ok()) << r.error().message;
  ASSERT_EQ((*r)[0].shape(), (Shape{1, 16}));
  for (int64_t o = 2; o <= 12; ++o) EXPECT_NEAR(values((*r)[0])[o], o / 2.f, 1e-5f) << o;
  // Near the left edge the clamped taps bend it: out[1] samples 0.5 with taps at
  // x[-1 -> 0], x[0], x[1], x[2] = 0, 0, 1, 2; A = -0.75 weights at t = 0.5 are
  // -0.09375, 0.59375, 0.59375, -0.09375.
  EXPECT_NEAR(values((*r)[0])[1], 0.59375f - 0.1875f, 1e-5f);
}

TEST(WidenResize, CubicExcludeOutsideRenormalises) {
  // Same sample as above with exclude_outside: the tap at -1 is dropped and the other three
  // (0.59375, 0.59375, -0.09375) renormalised by their sum 1.09375.
  Tensor x = seq({1, 8}, 0.f);
  Tensor scales = Tensor::f32({2}, {1.f, 2.f});
  auto r = run_op(OpKind::kResize, {&x, nullptr, &scales},
                  {{"mode", std::string("cubic")},
                   {"exclude_outside", int64_t{1}},
                   {"coordinate_transformation_mode", std::string("asymmetric")}});
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_NEAR(values((*r)[0])[1], (0.59375f - 0.1875f) / 1.09375f, 1e-5f);
  EXPECT_NEAR(values((*r)[0])[6], 3.f, 1e-5f);  // interior: unchanged
}

TEST(WidenResize, AlignCornersWithScalesDividesByUnroundedLength) {
  // 4 -> floor(4 * 0.6) = 2 samples; align_corners with scales uses length 4 * 0.6 = 2.4, so
  // out[1] samples 1 * 3 / 1.4 on the ramp 0..3.
  Tensor x = seq({1, 4}, 0.f);
  Tensor scales = Tensor::f32({2}, {1.f, 0.6f});
  auto r = run_op(OpKind::kResize, {&x, nullptr, &scales},
                  {{"mode", std::string("linear")},
                   {"coordinate_transformation_mode", std::string("align_corners")}});
  ASSERT_TRUE(r.ok()) << r.error().message;
  ASSERT_EQ((*r)[0].shape(), (Shape{1, 2}));
  EXPECT_NEAR(values((*r)[0])[0], 0.f, 1e-6f);
  EXPECT_NEAR(values((*r)[0])[1], 3.f / 1.4f, 1e-5f);
  // x2 upsampling stays exact: in * 2 is the integer output length.
  Tensor up = Tensor::f32({2}, {1.f, 2.f});
  r = run_op(OpKind::kResize, {&x, nullptr, &up},
             {{"mode", std::string("linear")},
              {"coordinate_transformation_mode", std::string("align_corners")}});
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_NEAR(values((*r)[0])[7], 3.f, 1e-6f);
  EXPECT_NEAR(values((*r)[0])[1], 3.f / 7.f, 1e-6f);
}

// Resize whose scales arrive as a graph input: the session bakes them into the plan, one
// plan per value.
TEST(WidenResize, ScalesAsGraphInputOnBothBackends) {
  test::OnnxSpec s;
  s.inputs = {{"x", {1, 8, 4, 4}}, {"scales", {4}}};
  s.outputs = {"y"};
  s.nodes = {{"Resize", {"x", "", "scales"}, {"y"}, {}, {}, {{"mode", "linear"}}}};
  auto m = Model::load_from_bytes(test::make_onnx(s), "resize.onnx");
  ASSERT_TRUE(m.ok()) << m.error().message;
  Tensor x = test::random_tensor({1, 8, 4, 4}, 7);
  for (BackendKind kind : {BackendKind::kReference, BackendKind::kCpu}) {
    auto sess = Session::create(*m, {kind, 1});
    ASSERT_TRUE(sess.ok());
    Tensor scales = Tensor::f32({4}, {1.f, 1.f, 2.f, 2.f});
    auto a = (*sess)->run({{"x", x}, {"scales", scales}});
    ASSERT_TRUE(a.ok()) << a.error().message;
    EXPECT_EQ((*a)[0].shape(), (Shape{1, 8, 8, 8}));
    // Same buffer, new contents: a new plan, not the cached one.
    scales.data<float>()[2] = 3.f;
    auto b = (*sess)->run({{"x", x}, {"scales", scales}});
    ASSERT_TRUE(b.ok()) << b.error().message;
    EXPECT_EQ((*b)[0].shape(), (Shape{1, 8, 12, 8}));
    scales.data<float>()[2] = 2.f;
    auto c = (*sess)->run({{"x", x}, {"scales", scales}});
    ASSERT_TRUE(c.ok()) << c.error().message;
    EXPECT_EQ(test::max_abs_diff((*a)[0], (*c)[0]), 0.f);
  }
}

}  // namespace
}  // namespace tr::nn
