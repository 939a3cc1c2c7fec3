// Helpers for the nn tests: small graphs built in code, ONNX models serialised in memory,
// and tensor comparison.
#pragma once

#include <map>
#include <random>
#include <string>
#include <vector>

#include "common/tensor.h"
#include "nn/backend.h"
#include "nn/graph.h"

namespace tr::nn::test {

// A graph under construction.
struct Builder {
  Graph g;
  ValueId input(const std::string& name, Shape shape);
  ValueId constant(const std::string& name, Tensor t);
  // Adds a node with one output; returns that output's id.
  ValueId op(OpKind kind, std::vector<ValueId> inputs, std::map<std::string, AttrValue> attrs = {},
             const std::string& name = "");
  void output(ValueId v) { g.outputs.push_back(v); }
};

Tensor random_tensor(Shape shape, uint32_t seed, float lo = -1.f, float hi = 1.f);
// start, start+1, ... in `s`'s shape (float32).
Tensor seq(Shape s, float start = 1.f);
// The elements of a float32 tensor.
std::vector<float> values(const Tensor& t);

// Runs one node of `op` on the reference kernels; a null input is an omitted optional one.
Result<std::vector<Tensor>> run_op(OpKind op, std::vector<const Tensor*> in,
                                   std::map<std::string, AttrValue> attrs = {});

// Runs `g` (shapes inferred first on a copy) on the reference backend.
std::vector<Tensor> run_reference(const Graph& g, const std::vector<Tensor>& inputs);

// Largest absolute difference; +inf on shape mismatch.
float max_abs_diff(const Tensor& a, const Tensor& b);

// ONNX model bytes for tests: one graph of `nodes` with float inputs/outputs.
struct OnnxNode {
  std::string op_type;
  std::vector<std::string> inputs, outputs;
  std::map<std::string, int64_t> int_attrs = {};
  std::map<std::string, std::vector<int64_t>> ints_attrs = {};
  std::map<std::string, std::string> string_attrs = {};
  std::map<std::string, float> float_attrs = {};
};
struct OnnxSpec {
  std::vector<std::pair<std::string, Shape>> inputs;  // float32; -1 = dynamic
  std::vector<std::string> outputs;
  std::vector<std::pair<std::string, Tensor>> initializers;
  std::vector<OnnxNode> nodes;
  int64_t opset = 17;
};
std::string make_onnx(const OnnxSpec& spec);

}  // namespace tr::nn::test
