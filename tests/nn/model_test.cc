// ONNX import (errors and a working model), Model info, Session validation and caching.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>

#include "nn/graph.h"
#include "nn/nn.h"
#include "test_util.h"

namespace tr::nn {
namespace {

using test::make_onnx;
using test::max_abs_diff;
using test::OnnxSpec;
using test::random_tensor;

// Conv(3x3, pad 1) -> BatchNormalization -> Relu -> Add(input) with a dynamic batch.
OnnxSpec block_spec() {
  OnnxSpec s;
  s.inputs = {{"input", {-1, 2, 4, 4}}};
  s.outputs = {"output"};
  s.initializers = {{"w", random_tensor({2, 2, 3, 3}, 1)},
                    {"b", random_tensor({2}, 2)},
                    {"scale", random_tensor({2}, 3, 0.5f, 1.5f)},
                    {"beta", random_tensor({2}, 4)},
                    {"mean", random_tensor({2}, 5)},
                    {"var", random_tensor({2}, 6, 0.5f, 2.f)}};
  s.nodes = {
      {"Identity", {"w"}, {"w_id"}},
      {"Conv", {"input", "w_id", "b"}, {"c"}, {}, {{"pads", {1, 1, 1, 1}}}},
      {"BatchNormalization", {"c", "scale", "beta", "mean", "var"}, {"bn"}},
      {"Relu", {"bn"}, {"r"}},
      {"Add", {"r", "input"}, {"output"}},
  };
  return s;
}

TEST(Import, LoadsAModelAndReportsDynamicShapes) {
  auto m = Model::load_from_bytes(make_onnx(block_spec()), "block.onnx");
  ASSERT_TRUE(m.ok()) << m.error().message;
  ASSERT_EQ((*m)->inputs().size(), 1u);
  EXPECT_EQ((*m)->inputs()[0].name, "input");
  EXPECT_EQ((*m)->inputs()[0].shape, (Shape{-1, 2, 4, 4}));
  ASSERT_EQ((*m)->outputs().size(), 1u);
  EXPECT_EQ((*m)->outputs()[0].shape, (Shape{-1, 2, 4, 4}));
  // Load-time passes: Identity and BN are gone.
  EXPECT_EQ((*m)->graph().count(OpKind::kBatchNormalization), 0);
  EXPECT_EQ((*m)->graph().count(OpKind::kIdentity), 0);
}

TEST(Session, OptimisedMatchesUnoptimisedAtAnyBatch) {
  const std::string bytes = make_onnx(block_spec());
  auto plain = Model::load_from_bytes(bytes, "block.onnx", LoadOptions{false});
  auto opt = Model::load_from_bytes(bytes, "block.onnx");
  ASSERT_TRUE(plain.ok() && opt.ok());
  EXPECT_EQ((*plain)->graph().count(OpKind::kBatchNormalization), 1);
  for (BackendKind kind : {BackendKind::kReference, BackendKind::kCpu}) {
    auto sp = Session::create(*plain, {BackendKind::kReference, 1});
    auto so = Session::create(*opt, {kind, 1});
    ASSERT_TRUE(sp.ok() && so.ok());
    for (int64_t batch : {1, 3, 1}) {
      Tensor x = random_tensor({batch, 2, 4, 4}, 100 + static_cast<uint32_t>(batch));
      auto a = (*sp)->run({{"input", x}});
      auto b = (*so)->run({{"input", x}});
      ASSERT_TRUE(a.ok()) << a.error().message;
      ASSERT_TRUE(b.ok()) << b.error().message;
      EXPECT_EQ((*a)[0].shape(), (Shape{batch, 2, 4, 4}));
      EXPECT_LE(max_abs_diff((*a)[0], (*b)[0]), 1e-5f) << backend_name(kind) << " batch " << batch;
    }
  }
}

TEST(Session, BatchedRunEqualsPerSampleRuns) {
  auto m = Model::load_from_bytes(make_onnx(block_spec()), "block.onnx");
  ASSERT_TRUE(m.ok());
  auto s = Session::create(*m, {BackendKind::kReference, 1});
  ASSERT_TRUE(s.ok());
  Tensor x = random_tensor({2, 2, 4, 4}, 7);
  auto both = (*s)->run({{"input", x}});
  ASSERT_TRUE(both.ok());
  for (int64_t i = 0; i < 2; ++i) {
    Tensor one = Tensor::f32({1, 2, 4, 4});
    std::copy(x.data<float>() + i * 32, x.data<float>() + (i + 1) * 32, one.data<float>());
    auto r = (*s)->run({{"input", one}});
    ASSERT_TRUE(r.ok());
    for (int64_t k = 0; k < 32; ++k) {
      EXPECT_FLOAT_EQ((*r)[0].data<float>()[k], (*both)[0].data<float>()[i * 32 + k]);
    }
  }
}

// release_weights: the session drops its reference to the model's weights after the first
// plan; with the caller's Model gone too, the plan still runs (the cpu backend holds its own
// reordered copy: under ASan a dangling reference would fail here), and a new input shape,
// which would need the weights, is refused with a message.
TEST(Session, ReleasedWeightsKeepThePlanRunningAndRefuseNewShapes) {
  for (BackendKind kind : {BackendKind::kReference, BackendKind::kCpu}) {
    SCOPED_TRACE(backend_name(kind));
    auto keep = Model::load_from_bytes(make_onnx(block_spec()), "block.onnx");
    auto drop = Model::load_from_bytes(make_onnx(block_spec()), "block.onnx");
    ASSERT_TRUE(keep.ok() && drop.ok());
    SessionOptions so;
    so.backend = kind;
    so.threads = 1;
    auto ref = Session::create(*keep, so);
    so.release_weights = true;
    auto s = Session::create(std::move(*drop), so);
    ASSERT_TRUE(ref.ok() && s.ok());
    for (uint32_t seed : {11u, 12u}) {
      Tensor x = random_tensor({2, 2, 4, 4}, seed);
      auto a = (*ref)->run({{"input", x}});
      auto b = (*s)->run({{"input", x}});
      ASSERT_TRUE(a.ok() && b.ok()) << (b.ok() ? "" : b.error().message);
      EXPECT_EQ(max_abs_diff((*a)[0], (*b)[0]), 0.f);
    }
    auto other = (*s)->run({{"input", random_tensor({3, 2, 4, 4}, 13)}});
    ASSERT_FALSE(other.ok());
    EXPECT_NE(other.error().message.find("released its weights"), std::string::npos)
        << other.error().message;
  }
}

TEST(Session, ValidatesInputs) {
  auto m = Model::load_from_bytes(make_onnx(block_spec()), "block.onnx");
  ASSERT_TRUE(m.ok());
  auto s = Session::create(*m, {BackendKind::kReference, 1});
  ASSERT_TRUE(s.ok());
  auto wrong_name = (*s)->run({{"audio", random_tensor({1, 2, 4, 4}, 1)}});
  ASSERT_FALSE(wrong_name.ok());
  EXPECT_NE(wrong_name.error().message.find("no input 'audio'"), std::string::npos);
  auto wrong_rank = (*s)->run({{"input", random_tensor({2, 4, 4}, 1)}});
  ASSERT_FALSE(wrong_rank.ok());
  EXPECT_EQ(wrong_rank.error().kind, ErrorKind::kBadInput);
  EXPECT_NE(wrong_rank.error().message.find("[2, 4, 4]"), std::string::npos);
  auto wrong_dim = (*s)->run({{"input", random_tensor({1, 3, 4, 4}, 1)}});
  EXPECT_FALSE(wrong_dim.ok());
  auto missing = (*s)->run({});
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().message.find("missing"), std::string::npos);
  auto wrong_type = (*s)->run({{"input", Tensor::i64({1}, {1})}});
  EXPECT_FALSE(wrong_type.ok());
}

void expect_bad_input(const Result<std::shared_ptr<const Model>>& r, const std::string& needle) {
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ErrorKind::kBadInput);
  EXPECT_NE(r.error().message.find(needle), std::string::npos) << r.error().message;
}

TEST(ImportErrors, TruncatedTextEmptyAndMissingFiles) {
  const std::string bytes = make_onnx(block_spec());
  expect_bad_input(Model::load_from_bytes(bytes.substr(0, bytes.size() / 2), "half.onnx"),
                   "half.onnx");
  expect_bad_input(Model::load_from_bytes("this is a text file, not a model\n", "notes.txt"),
                   "not an ONNX model");
  expect_bad_input(Model::load_from_bytes("", "empty.onnx"), "empty");
  expect_bad_input(Model::load("/nonexistent/dir/model.onnx"), "/nonexistent/dir/model.onnx");
}

TEST(ImportErrors, TruncatedFileOnDisk) {
  const std::string bytes = make_onnx(block_spec());
  const std::string path = ::testing::TempDir() + "truncated_model.onnx";
  {
    std::ofstream f(path, std::ios::binary);
    f.write(bytes.data(), static_cast<std::streamsize>(bytes.size() - 20));
  }
  auto r = Model::load(path);
  std::remove(path.c_str());
  expect_bad_input(r, path);
}

TEST(ImportErrors, UnsupportedOpNamesNodeAndOp) {
  OnnxSpec s = block_spec();
  s.nodes.push_back({"Softmax", {"output"}, {"probs"}});
  s.outputs = {"probs"};
  expect_bad_input(Model::load_from_bytes(make_onnx(s), "soft.onnx"), "'Softmax'");
  expect_bad_input(Model::load_from_bytes(make_onnx(s), "soft.onnx"), "probs_node");
}

TEST(ImportErrors, DanglingInputOpsetAndBadShapes) {
  OnnxSpec dangling = block_spec();
  dangling.nodes[3].inputs = {"nowhere"};
  expect_bad_input(Model::load_from_bytes(make_onnx(dangling), "d.onnx"), "'nowhere'");
  OnnxSpec old = block_spec();
  old.opset = 5;
  expect_bad_input(Model::load_from_bytes(make_onnx(old), "old.onnx"), "opset 5");
  OnnxSpec bad = block_spec();
  bad.initializers[0].second = random_tensor({2, 5, 3, 3}, 1);  // channels don't match
  expect_bad_input(Model::load_from_bytes(make_onnx(bad), "bad.onnx"), "Conv");
  OnnxSpec dil = block_spec();
  dil.nodes[1].ints_attrs["dilations"] = {0, 2};  // dilation 0 is invalid
  expect_bad_input(Model::load_from_bytes(make_onnx(dil), "dil.onnx"), "dilation");
}

}  // namespace
}  // namespace tr::nn
