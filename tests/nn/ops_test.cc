// Reference kernels on small cases whose results are worked out by hand.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "nn/ref/ref_kernels.h"
#include "test_util.h"

namespace tr::nn {
namespace {

using test::run_op;
using test::seq;
using test::values;

std::vector<int64_t> ivalues(const Tensor& t) {
  return std::vector<int64_t>(t.data<int64_t>(), t.data<int64_t>() + t.numel());
}

TEST(RefConv, ValidStrideOne) {
  Tensor x = seq({1, 1, 3, 3});
  Tensor w = Tensor::f32({1, 1, 2, 2}, {1, 1, 1, 1});
  auto r = run_op(OpKind::kConv, {&x, &w});
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ((*r)[0].shape(), (Shape{1, 1, 2, 2}));
  EXPECT_EQ(values((*r)[0]), (std::vector<float>{12, 16, 24, 28}));
}

TEST(RefConv, PadsStrideAndBias) {
  Tensor x = seq({1, 1, 3, 3});
  Tensor w = Tensor::f32({1, 1, 2, 2}, {1, 1, 1, 1});
  Tensor b = Tensor::f32({1}, {1});
  auto r =
      run_op(OpKind::kConv, {&x, &w, &b},
             {{"pads", std::vector<int64_t>{1, 1, 1, 1}}, {"strides", std::vector<int64_t>{2, 2}}});
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(values((*r)[0]), (std::vector<float>{2, 6, 12, 29}));
}

TEST(RefConv, SameUpperPadsAtTheEnd) {
  Tensor x = seq({1, 1, 3, 3});
  Tensor w = Tensor::f32({1, 1, 2, 2}, {1, 1, 1, 1});
  auto r = run_op(OpKind::kConv, {&x, &w}, {{"auto_pad", std::string("SAME_UPPER")}});
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(values((*r)[0]), (std::vector<float>{12, 16, 9, 24, 28, 15, 15, 17, 9}));
}

TEST(RefConv, DepthwiseGroups) {
  Tensor x = seq({1, 2, 1, 2});  // channel 0: 1 2, channel 1: 3 4
  Tensor w = Tensor::f32({2, 1, 1, 1}, {10, -1});
  auto r = run_op(OpKind::kConv, {&x, &w}, {{"group", int64_t{2}}});
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(values((*r)[0]), (std::vector<float>{10, 20, -3, -4}));
}

TEST(RefConv, RefusesDilationClearly) {
  Tensor x = seq({1, 1, 5, 5});
  Tensor w = Tensor::f32({1, 1, 2, 2}, {1, 1, 1, 1});
  // Dilation is supported (widen_conv_test); a zero dilation is refused.
  auto r = run_op(OpKind::kConv, {&x, &w}, {{"dilations", std::vector<int64_t>{0, 2}}});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("dilation"), std::string::npos) << r.error().message;
  EXPECT_EQ(r.error().kind, ErrorKind::kBadInput);
}

TEST(RefConv, FusedResidualAndActivation) {
  Tensor x = Tensor::f32({1, 1, 1, 2}, {1, -3});
  Tensor w = Tensor::f32({1, 1, 1, 1}, {2});
  Tensor b = Tensor::f32({1}, {1});
  Tensor res = Tensor::f32({1, 1, 1, 2}, {1, 1});
  auto r = run_op(OpKind::kFusedConv, {&x, &w, &b, &res},
                  {{"activation", std::string("LeakyRelu")}, {"alpha", 0.5f}});
  ASSERT_TRUE(r.ok()) << r.error().message;
  // 1*2+1+1 = 4; -3*2+1+1 = -4 -> -2.
  EXPECT_EQ(values((*r)[0]), (std::vector<float>{4, -2}));
}

TEST(RefBatchNorm, PerChannel) {
  Tensor x = Tensor::f32({1, 2, 1, 1}, {1, 2});
  Tensor scale = Tensor::f32({2}, {2, 1}), bias = Tensor::f32({2}, {0, 1});
  Tensor mean = Tensor::f32({2}, {1, 0}), var = Tensor::f32({2}, {1, 3});
  auto r =
      run_op(OpKind::kBatchNormalization, {&x, &scale, &bias, &mean, &var}, {{"epsilon", 1.0f}});
  ASSERT_TRUE(r.ok()) << r.error().message;
  // (1-1)/sqrt(2)*2+0 = 0; (2-0)/sqrt(4)*1+1 = 2.
  EXPECT_FLOAT_EQ(values((*r)[0])[0], 0.f);
  EXPECT_FLOAT_EQ(values((*r)[0])[1], 2.f);
}

TEST(RefActivations, ReluLeakySigmoid) {
  Tensor x = Tensor::f32({3}, {-2, 0, 3});
  EXPECT_EQ(values((*run_op(OpKind::kRelu, {&x}))[0]), (std::vector<float>{0, 0, 3}));
  EXPECT_EQ(values((*run_op(OpKind::kLeakyRelu, {&x}, {{"alpha", 0.25f}}))[0]),
            (std::vector<float>{-0.5f, 0, 3}));
  auto s = values((*run_op(OpKind::kSigmoid, {&x}))[0]);
  EXPECT_FLOAT_EQ(s[1], 0.5f);
  EXPECT_NEAR(s[2], 1.f / (1.f + std::exp(-3.f)), 1e-6f);
}

TEST(RefBinary, BroadcastingAllFour) {
  Tensor a = Tensor::f32({2, 1}, {1, 2});
  Tensor b = Tensor::f32({3}, {10, 20, 30});
  auto add = run_op(OpKind::kAdd, {&a, &b});
  ASSERT_TRUE(add.ok()) << add.error().message;
  EXPECT_EQ((*add)[0].shape(), (Shape{2, 3}));
  EXPECT_EQ(values((*add)[0]), (std::vector<float>{11, 21, 31, 12, 22, 32}));
  EXPECT_EQ(values((*run_op(OpKind::kSub, {&b, &a}))[0]),
            (std::vector<float>{9, 19, 29, 8, 18, 28}));
  EXPECT_EQ(values((*run_op(OpKind::kMul, {&a, &b}))[0]),
            (std::vector<float>{10, 20, 30, 20, 40, 60}));
  EXPECT_EQ(values((*run_op(OpKind::kDiv, {&b, &a}))[0]),
            (std::vector<float>{10, 20, 30, 5, 10, 15}));
  Tensor c = Tensor::f32({2}, {1, 2});
  Tensor d = Tensor::f32({3}, {1, 2, 3});
  EXPECT_FALSE(run_op(OpKind::kAdd, {&c, &d}).ok());
}

TEST(RefBinary, Int64ShapeArithmetic) {
  Tensor a = Tensor::i64({2}, {7, -7});
  Tensor b = Tensor::i64({}, {2});
  EXPECT_EQ(ivalues((*run_op(OpKind::kDiv, {&a, &b}))[0]), (std::vector<int64_t>{3, -3}));
  Tensor zero = Tensor::i64({}, {0});
  EXPECT_FALSE(run_op(OpKind::kDiv, {&a, &zero}).ok());
}

TEST(RefConcat, Axis1) {
  Tensor a = Tensor::f32({2, 1}, {1, 2});
  Tensor b = Tensor::f32({2, 2}, {3, 4, 5, 6});
  auto r = run_op(OpKind::kConcat, {&a, &b}, {{"axis", int64_t{-1}}});
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(values((*r)[0]), (std::vector<float>{1, 3, 4, 2, 5, 6}));
  Tensor i1 = Tensor::i64({1}, {4}), i2 = Tensor::i64({2}, {5, 6});
  EXPECT_EQ(ivalues((*run_op(OpKind::kConcat, {&i1, &i2}, {{"axis", int64_t{0}}}))[0]),
            (std::vector<int64_t>{4, 5, 6}));
}

TEST(RefResize, LinearAlignCornersBySizes) {
  Tensor x = Tensor::f32({1, 1, 2, 2}, {0, 1, 2, 3});
  Tensor sizes = Tensor::i64({4}, {1, 1, 3, 3});
  auto r = run_op(OpKind::kResize, {&x, nullptr, nullptr, &sizes},
                  {{"mode", std::string("linear")},
                   {"coordinate_transformation_mode", std::string("align_corners")}});
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(values((*r)[0]), (std::vector<float>{0, 0.5f, 1, 1, 1.5f, 2, 2, 2.5f, 3}));
}

TEST(RefResize, LinearHalfPixelByScales) {
  Tensor x = Tensor::f32({1, 1, 1, 2}, {0, 1});
  Tensor roi = Tensor::f32({0}, {});
  Tensor scales = Tensor::f32({4}, {1, 1, 1, 2});
  auto r = run_op(OpKind::kResize, {&x, &roi, &scales}, {{"mode", std::string("linear")}});
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(values((*r)[0]), (std::vector<float>{0, 0.25f, 0.75f, 1}));
}

TEST(RefResize, NearestAsymmetricAndPytorchHalfPixel) {
  Tensor x = Tensor::f32({1, 1, 1, 2}, {5, 7});
  Tensor scales = Tensor::f32({4}, {1, 1, 1, 2});
  auto r = run_op(OpKind::kResize, {&x, nullptr, &scales},
                  {{"mode", std::string("nearest")},
                   {"coordinate_transformation_mode", std::string("asymmetric")},
                   {"nearest_mode", std::string("floor")}});
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(values((*r)[0]), (std::vector<float>{5, 5, 7, 7}));
  // pytorch_half_pixel with one output sample reads coordinate 0.
  Tensor sizes = Tensor::i64({4}, {1, 1, 1, 1});
  auto p = run_op(OpKind::kResize, {&x, nullptr, nullptr, &sizes},
                  {{"mode", std::string("linear")},
                   {"coordinate_transformation_mode", std::string("pytorch_half_pixel")}});
  ASSERT_TRUE(p.ok()) << p.error().message;
  EXPECT_EQ(values((*p)[0]), (std::vector<float>{5}));
}

// Fuzz finding: a scale of 1e20 overflowed the int64 output size (undefined behaviour).
// Hostile scales and sizes are rejected with a message instead.
TEST(RefResize, RejectsOutputSizesBeyondInt) {
  Tensor x = Tensor::f32({1, 1, 1, 2}, {5, 7});
  for (float big : {1e20f, std::numeric_limits<float>::infinity(), 2e9f}) {
    Tensor scales = Tensor::f32({4}, {1, 1, 1, big});
    auto r = run_op(OpKind::kResize, {&x, nullptr, &scales}, {{"mode", std::string("nearest")}});
    ASSERT_FALSE(r.ok()) << big;
    EXPECT_NE(r.error().message.find("larger than"), std::string::npos) << r.error().message;
  }
  Tensor sizes = Tensor::i64({4}, {1, 1, 1, int64_t{1} << 40});
  auto s =
      run_op(OpKind::kResize, {&x, nullptr, nullptr, &sizes}, {{"mode", std::string("nearest")}});
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message.find("too large"), std::string::npos) << s.error().message;
}

TEST(RefPad, ConstantInputAndAttributeForms) {
  Tensor x = Tensor::f32({1, 2}, {1, 2});
  Tensor pads = Tensor::i64({4}, {0, 1, 0, 2});
  Tensor value = Tensor::f32({}, {9});
  auto r = run_op(OpKind::kPad, {&x, &pads, &value});
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(values((*r)[0]), (std::vector<float>{9, 1, 2, 9, 9}));
  auto a = run_op(OpKind::kPad, {&x}, {{"pads", std::vector<int64_t>{1, 0, 0, 0}}});
  ASSERT_TRUE(a.ok()) << a.error().message;
  EXPECT_EQ(values((*a)[0]), (std::vector<float>{0, 0, 1, 2}));
  Tensor crop = Tensor::i64({4}, {0, -1, 0, 0});
  EXPECT_EQ(values((*run_op(OpKind::kPad, {&x, &crop}))[0]), (std::vector<float>{2}));
  EXPECT_FALSE(run_op(OpKind::kPad, {&x, &pads}, {{"mode", std::string("wrap")}}).ok());
}

TEST(RefShapeOps, ReshapeFlattenSqueezeUnsqueezeTranspose) {
  Tensor x = seq({2, 3, 4});
  Tensor spec = Tensor::i64({2}, {0, -1});
  auto r = run_op(OpKind::kReshape, {&x, &spec});
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ((*r)[0].shape(), (Shape{2, 12}));
  EXPECT_EQ(values((*r)[0]), values(x));
  Tensor bad = Tensor::i64({2}, {5, -1});
  EXPECT_FALSE(run_op(OpKind::kReshape, {&x, &bad}).ok());
  EXPECT_EQ((*run_op(OpKind::kFlatten, {&x}, {{"axis", int64_t{2}}}))[0].shape(), (Shape{6, 4}));
  Tensor y = seq({1, 3, 1});
  EXPECT_EQ((*run_op(OpKind::kSqueeze, {&y}))[0].shape(), (Shape{3}));
  Tensor axes = Tensor::i64({1}, {-1});
  EXPECT_EQ((*run_op(OpKind::kSqueeze, {&y, &axes}))[0].shape(), (Shape{1, 3}));
  EXPECT_EQ((*run_op(OpKind::kUnsqueeze, {&y}, {{"axes", std::vector<int64_t>{0, 4}}}))[0].shape(),
            (Shape{1, 1, 3, 1, 1}));
  Tensor uaxes = Tensor::i64({1}, {1});
  EXPECT_EQ((*run_op(OpKind::kUnsqueeze, {&y, &uaxes}))[0].shape(), (Shape{1, 1, 3, 1}));
  Tensor m = seq({2, 3});
  auto t = run_op(OpKind::kTranspose, {&m});
  ASSERT_TRUE(t.ok());
  EXPECT_EQ((*t)[0].shape(), (Shape{3, 2}));
  EXPECT_EQ(values((*t)[0]), (std::vector<float>{1, 4, 2, 5, 3, 6}));
  Tensor cube = seq({2, 2, 2});
  auto p = run_op(OpKind::kTranspose, {&cube}, {{"perm", std::vector<int64_t>{1, 2, 0}}});
  EXPECT_EQ(values((*p)[0]), (std::vector<float>{1, 5, 2, 6, 3, 7, 4, 8}));
  EXPECT_EQ(values((*run_op(OpKind::kIdentity, {&m}))[0]), values(m));
}

TEST(RefShapeOps, ShapeGatherCastConstantOfShape) {
  Tensor x = Tensor::f32({2, 5, 7});
  auto s = run_op(OpKind::kShape, {&x});
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(ivalues((*s)[0]), (std::vector<int64_t>{2, 5, 7}));
  EXPECT_EQ(ivalues((*run_op(OpKind::kShape, {&x}, {{"start", int64_t{-2}}}))[0]),
            (std::vector<int64_t>{5, 7}));
  Tensor idx = Tensor::i64({}, {-1});
  auto g = run_op(OpKind::kGather, {&(*s)[0], &idx});
  ASSERT_TRUE(g.ok()) << g.error().message;
  EXPECT_EQ((*g)[0].shape(), Shape{});
  EXPECT_EQ(ivalues((*g)[0]), (std::vector<int64_t>{7}));
  Tensor m = seq({2, 3});
  Tensor cols = Tensor::i64({2}, {2, 0});
  auto g2 = run_op(OpKind::kGather, {&m, &cols}, {{"axis", int64_t{1}}});
  EXPECT_EQ(values((*g2)[0]), (std::vector<float>{3, 1, 6, 4}));
  Tensor out_of_range = Tensor::i64({1}, {3});
  EXPECT_FALSE(run_op(OpKind::kGather, {&m, &out_of_range}, {{"axis", int64_t{1}}}).ok());
  Tensor f = Tensor::f32({2}, {2.7f, -1.5f});
  EXPECT_EQ(ivalues((*run_op(OpKind::kCast, {&f}, {{"to", int64_t{7}}}))[0]),
            (std::vector<int64_t>{2, -1}));
  Tensor shape = Tensor::i64({2}, {2, 1});
  auto c0 = run_op(OpKind::kConstantOfShape, {&shape});
  EXPECT_EQ(values((*c0)[0]), (std::vector<float>{0, 0}));
  auto c1 = run_op(OpKind::kConstantOfShape, {&shape}, {{"value", Tensor::i64({1}, {4})}});
  EXPECT_EQ((*c1)[0].dtype(), DType::kInt64);
  EXPECT_EQ(ivalues((*c1)[0]), (std::vector<int64_t>{4, 4}));
}

TEST(RefShapeOps, SliceWithNegativeStepsAndConstant) {
  Tensor x = seq({2, 4});
  Tensor starts = Tensor::i64({2}, {0, -1}), ends = Tensor::i64({2}, {1, -100});
  Tensor axes = Tensor::i64({2}, {0, 1}), steps = Tensor::i64({2}, {1, -2});
  auto r = run_op(OpKind::kSlice, {&x, &starts, &ends, &axes, &steps});
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ((*r)[0].shape(), (Shape{1, 2}));
  EXPECT_EQ(values((*r)[0]), (std::vector<float>{4, 2}));
  auto c = run_op(OpKind::kConstant, {}, {{"value_ints", std::vector<int64_t>{3, 1}}});
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(ivalues((*c)[0]), (std::vector<int64_t>{3, 1}));
}

}  // namespace
}  // namespace tr::nn
