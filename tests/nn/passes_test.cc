// Each pass: the graph's structure (op counts) before and after, and its outputs (reference
// executor) before vs after.
#include "nn/passes/passes.h"

#include <gtest/gtest.h>

#include "nn/ops/infer.h"
#include "test_util.h"

namespace tr::nn {
namespace {

using test::Builder;
using test::max_abs_diff;
using test::random_tensor;
using test::run_reference;

Graph inferred(Graph g, const std::vector<Tensor>& inputs) {
  for (size_t i = 0; i < g.inputs.size(); ++i) {
    g.values[g.inputs[i]].shape = inputs[i].shape();
    g.values[g.inputs[i]].shape_known = true;
  }
  auto st = infer_shapes(g);
  EXPECT_TRUE(st.ok()) << st.message();
  return g;
}

void expect_same_outputs(const Graph& before, const Graph& after, const std::vector<Tensor>& in,
                         float tol) {
  auto a = run_reference(before, in);
  auto b = run_reference(after, in);
  ASSERT_EQ(a.size(), before.outputs.size());
  ASSERT_EQ(b.size(), a.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_LE(max_abs_diff(a[i], b[i]), tol) << "output " << i;
}

// The exporter's zero-pad-to-skip-size chain: pads computed from Shape of the input.
// `extra` is added to the computed pad, so extra = 0 makes the Pad a no-op.
Builder pad_chain_graph(int64_t extra) {
  Builder b;
  ValueId x = b.input("x", {1, 2, 5, 5});
  ValueId s = b.op(OpKind::kShape, {x});
  ValueId two = b.constant("two", Tensor::i64({}, {2}));
  ValueId h = b.op(OpKind::kGather, {s, two}, {{"axis", int64_t{0}}});
  ValueId diff = b.op(OpKind::kSub, {h, h});
  ValueId half = b.op(OpKind::kDiv, {diff, two});
  ValueId plus = b.op(OpKind::kAdd, {half, b.constant("extra", Tensor::i64({}, {extra}))});
  ValueId u = b.op(OpKind::kUnsqueeze, {plus}, {{"axes", std::vector<int64_t>{0}}});
  ValueId zeros = b.op(OpKind::kConstantOfShape, {b.constant("six", Tensor::i64({1}, {6}))},
                       {{"value", Tensor::i64({1}, {0})}});
  ValueId cat = b.op(OpKind::kConcat, {u, u, zeros}, {{"axis", int64_t{0}}});
  ValueId grid = b.op(OpKind::kReshape, {cat, b.constant("shape24", Tensor::i64({2}, {-1, 2}))});
  ValueId rev = b.op(
      OpKind::kSlice,
      {grid, b.constant("st", Tensor::i64({1}, {-1})), b.constant("en", Tensor::i64({1}, {-100})),
       b.constant("ax", Tensor::i64({1}, {0})), b.constant("sp", Tensor::i64({1}, {-1}))});
  ValueId tr = b.op(OpKind::kTranspose, {rev}, {{"perm", std::vector<int64_t>{1, 0}}});
  ValueId flat = b.op(OpKind::kReshape, {tr, b.constant("m1", Tensor::i64({1}, {-1}))});
  ValueId pads = b.op(OpKind::kCast, {flat}, {{"to", int64_t{7}}});
  ValueId padded = b.op(OpKind::kPad, {x, pads});
  ValueId y = b.op(OpKind::kRelu, {padded});
  b.output(y);
  return b;
}

TEST(FoldConstants, FoldsThePadSizeChainForStaticShapes) {
  Builder b = pad_chain_graph(1);
  std::vector<Tensor> in = {random_tensor({1, 2, 5, 5}, 1)};
  Graph before = inferred(b.g, in);
  EXPECT_EQ(before.count(OpKind::kShape), 1);
  EXPECT_EQ(before.nodes.size(), 15u);
  Graph after = before;
  auto n = fold_constants(after);
  ASSERT_TRUE(n.ok()) << n.error().message;
  EXPECT_EQ(*n, 13);
  EXPECT_EQ(after.nodes.size(), 2u);  // Pad and Relu remain
  EXPECT_EQ(after.count(OpKind::kPad), 1);
  EXPECT_TRUE(after.values[after.nodes[0].input(1)].is_constant());
  expect_same_outputs(before, after, in, 0.f);
  auto out = run_reference(after, in);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].shape(), (Shape{1, 2, 5, 7}));  // W padded by 1 on both sides
}

TEST(FoldConstants, IdentityOnInitialiserAndConstantArithmetic) {
  Builder b;
  ValueId x = b.input("x", {2, 3});
  ValueId w = b.op(OpKind::kIdentity, {b.constant("w", Tensor::f32({3}, {1, 2, 3}))});
  ValueId w2 = b.op(OpKind::kMul, {w, b.constant("k", Tensor::f32({}, {2}))});
  b.output(b.op(OpKind::kAdd, {x, w2}));
  std::vector<Tensor> in = {random_tensor({2, 3}, 2)};
  Graph before = inferred(b.g, in);
  Graph after = before;
  ASSERT_EQ(*fold_constants(after), 2);
  EXPECT_EQ(after.op_counts(), (std::map<std::string, int>{{"Add", 1}}));
  expect_same_outputs(before, after, in, 0.f);
}

TEST(DropNoopPads, RemovesZeroPadsOnly) {
  std::vector<Tensor> in = {random_tensor({1, 2, 5, 5}, 3)};
  Graph zero = inferred(pad_chain_graph(0).g, in);
  ASSERT_TRUE(fold_constants(zero).ok());
  Graph after = zero;
  ASSERT_EQ(*drop_noop_pads(after), 1);
  EXPECT_EQ(after.op_counts(), (std::map<std::string, int>{{"Relu", 1}}));
  expect_same_outputs(zero, after, in, 0.f);
  Graph nonzero = inferred(pad_chain_graph(1).g, in);
  ASSERT_TRUE(fold_constants(nonzero).ok());
  EXPECT_EQ(*drop_noop_pads(nonzero), 0);
  EXPECT_EQ(nonzero.count(OpKind::kPad), 1);
}

TEST(RemoveIdentities, RewiresReaders) {
  Builder b;
  ValueId x = b.input("x", {4});
  ValueId i1 = b.op(OpKind::kIdentity, {x});
  ValueId r = b.op(OpKind::kRelu, {i1});
  b.output(b.op(OpKind::kIdentity, {r}));
  std::vector<Tensor> in = {random_tensor({4}, 4)};
  Graph before = inferred(b.g, in);
  Graph after = before;
  ASSERT_EQ(*remove_identities(after), 2);
  EXPECT_EQ(after.op_counts(), (std::map<std::string, int>{{"Relu", 1}}));
  expect_same_outputs(before, after, in, 0.f);
  // An output that is just an input keeps its Identity.
  Builder pass;
  pass.output(pass.op(OpKind::kIdentity, {pass.input("x", {4})}));
  EXPECT_EQ(*remove_identities(pass.g), 0);
}

Builder conv_bn_graph(bool with_bias) {
  Builder b;
  ValueId x = b.input("x", {1, 3, 6, 6});
  std::vector<ValueId> conv_in = {x, b.constant("w", random_tensor({4, 3, 3, 3}, 10))};
  if (with_bias) conv_in.push_back(b.constant("b", random_tensor({4}, 11)));
  ValueId c = b.op(OpKind::kConv, conv_in, {{"pads", std::vector<int64_t>{1, 1, 1, 1}}});
  ValueId bn =
      b.op(OpKind::kBatchNormalization,
           {c, b.constant("scale", random_tensor({4}, 12, 0.5f, 2.f)),
            b.constant("beta", random_tensor({4}, 13)), b.constant("mean", random_tensor({4}, 14)),
            b.constant("var", random_tensor({4}, 15, 0.1f, 3.f))},
           {{"epsilon", 1e-3f}});
  b.output(bn);
  return b;
}

TEST(FoldBatchNorm, IntoConvWithAndWithoutBias) {
  for (bool bias : {true, false}) {
    std::vector<Tensor> in = {random_tensor({1, 3, 6, 6}, 5)};
    Graph before = inferred(conv_bn_graph(bias).g, in);
    Graph after = before;
    ASSERT_EQ(*fold_batchnorm(after), 1);
    EXPECT_EQ(after.op_counts(), (std::map<std::string, int>{{"Conv", 1}}));
    expect_same_outputs(before, after, in, 1e-5f);
  }
}

TEST(FoldBatchNorm, LeavesASharedConvOutputAlone) {
  Builder b = conv_bn_graph(true);
  b.output(b.g.nodes[0].outputs[0]);  // the conv output is also a graph output
  EXPECT_EQ(*fold_batchnorm(b.g), 0);
  EXPECT_EQ(b.g.count(OpKind::kBatchNormalization), 1);
}

// The encoder's residual block: relu(conv(x) + x); and the generator's conv -> relu.
Builder residual_graph() {
  Builder b;
  ValueId x = b.input("x", {2, 4, 5, 5});
  ValueId c1 = b.op(OpKind::kConv,
                    {x, b.constant("w1", random_tensor({4, 4, 3, 3}, 20)),
                     b.constant("b1", random_tensor({4}, 21))},
                    {{"pads", std::vector<int64_t>{1, 1, 1, 1}}});
  ValueId r1 = b.op(OpKind::kRelu, {c1});
  ValueId c2 = b.op(OpKind::kConv, {r1, b.constant("w2", random_tensor({4, 1, 3, 3}, 22))},
                    {{"pads", std::vector<int64_t>{1, 1, 1, 1}}, {"group", int64_t{4}}});
  ValueId sum = b.op(OpKind::kAdd, {x, c2});
  b.output(b.op(OpKind::kRelu, {sum}));
  return b;
}

TEST(FuseConv, ResidualThenActivation) {
  std::vector<Tensor> in = {random_tensor({2, 4, 5, 5}, 6)};
  Graph before = inferred(residual_graph().g, in);
  Graph after = before;
  ASSERT_EQ(*fuse_conv_residual(after), 1);
  EXPECT_EQ(after.count(OpKind::kAdd), 0);
  EXPECT_EQ(after.count(OpKind::kFusedConv), 1);
  expect_same_outputs(before, after, in, 1e-5f);
  ASSERT_EQ(*fuse_conv_activation(after), 2);
  EXPECT_EQ(after.op_counts(), (std::map<std::string, int>{{"FusedConv", 2}}));
  for (const Node& n : after.nodes) EXPECT_EQ(n.attr_string("activation"), "Relu");
  expect_same_outputs(before, after, in, 1e-5f);
}

TEST(FuseConv, ActivationAfterResidualOnlyInThatOrder) {
  // conv -> Relu -> Add: the Add must stay (the activation comes before the sum).
  Builder b;
  ValueId x = b.input("x", {1, 2, 3, 3});
  ValueId c = b.op(OpKind::kConv, {x, b.constant("w", random_tensor({2, 2, 1, 1}, 30))});
  ValueId r = b.op(OpKind::kRelu, {c});
  b.output(b.op(OpKind::kAdd, {r, x}));
  std::vector<Tensor> in = {random_tensor({1, 2, 3, 3}, 7)};
  Graph before = inferred(b.g, in);
  Graph after = before;
  EXPECT_EQ(*fuse_conv_residual(after), 0);
  EXPECT_EQ(*fuse_conv_activation(after), 1);
  EXPECT_EQ(after.op_counts(), (std::map<std::string, int>{{"Add", 1}, {"FusedConv", 1}}));
  expect_same_outputs(before, after, in, 1e-6f);
}

TEST(FuseConv, NoFusionWhenConvOutputIsShared) {
  Builder b;
  ValueId x = b.input("x", {1, 2, 3, 3});
  ValueId c = b.op(OpKind::kConv, {x, b.constant("w", random_tensor({2, 2, 1, 1}, 31))});
  b.output(b.op(OpKind::kRelu, {c}));
  b.output(b.op(OpKind::kAdd, {c, x}));
  Graph g = inferred(b.g, {random_tensor({1, 2, 3, 3}, 8)});
  EXPECT_EQ(*fuse_conv_residual(g), 0);
  EXPECT_EQ(*fuse_conv_activation(g), 0);
  EXPECT_EQ(g.count(OpKind::kConv), 1);
}

TEST(Pipeline, LoadAndShapePassesKeepOutputs) {
  Builder b = conv_bn_graph(true);
  std::vector<Tensor> in = {random_tensor({1, 3, 6, 6}, 9)};
  Graph before = inferred(b.g, in);
  Graph after = before;
  ASSERT_TRUE(optimize_for_load(after).ok());
  ASSERT_TRUE(optimize_for_shapes(after).ok());
  EXPECT_EQ(after.op_counts(), (std::map<std::string, int>{{"Conv", 1}}));
  expect_same_outputs(before, after, in, 1e-5f);
}

TEST(Graph, TopoSortReordersAndDetectsCycles) {
  Builder b;
  ValueId x = b.input("x", {2});
  ValueId r = b.op(OpKind::kRelu, {x});
  b.output(b.op(OpKind::kSigmoid, {r}));
  std::swap(b.g.nodes[0], b.g.nodes[1]);
  ASSERT_TRUE(b.g.topo_sort().ok());
  EXPECT_EQ(b.g.nodes[0].op, OpKind::kRelu);
  b.g.nodes[0].inputs[0] = b.g.nodes[1].outputs[0];  // Relu reads Sigmoid's output
  EXPECT_FALSE(b.g.topo_sort().ok());
}

}  // namespace
}  // namespace tr::nn
