#include "test_util.h"

#include <onnx/onnx_pb.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "nn/ops/infer.h"
#include "nn/ops/op_params.h"
#include "nn/ref/ref_kernels.h"

namespace tr::nn::test {

ValueId Builder::input(const std::string& name, Shape shape) {
  Value v;
  v.name = name;
  v.shape = std::move(shape);
  v.shape_known = true;
  ValueId id = g.add_value(std::move(v));
  g.inputs.push_back(id);
  return id;
}

ValueId Builder::constant(const std::string& name, Tensor t) {
  return g.add_constant(name, std::move(t));
}

ValueId Builder::op(OpKind kind, std::vector<ValueId> inputs,
                    std::map<std::string, AttrValue> attrs, const std::string& name) {
  Node n;
  n.op = kind;
  n.name = name.empty() ? std::string(op_name(kind)) + "_" + std::to_string(g.nodes.size()) : name;
  n.inputs = std::move(inputs);
  n.attrs = std::move(attrs);
  Value out;
  out.name = n.name + "_out";
  n.outputs.push_back(g.add_value(std::move(out)));
  ValueId id = n.outputs[0];
  g.add_node(std::move(n));
  return id;
}

Tensor random_tensor(Shape shape, uint32_t seed, float lo, float hi) {
  Tensor t = Tensor::f32(std::move(shape));
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = dist(rng);
  return t;
}

std::vector<Tensor> run_reference(const Graph& graph, const std::vector<Tensor>& inputs) {
  Graph g = graph;
  for (size_t i = 0; i < g.inputs.size(); ++i) {
    g.values[g.inputs[i]].shape = inputs[i].shape();
    g.values[g.inputs[i]].shape_known = true;
  }
  auto st = infer_shapes(g);
  if (!st.ok()) return {};
  auto exe = make_reference_backend()->compile(g, 1);
  if (!exe.ok()) return {};
  auto out = (*exe)->run(inputs);
  if (!out.ok()) return {};
  return *out;
}

float max_abs_diff(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape() || a.dtype() != b.dtype() || a.dtype() != DType::kFloat32) {
    return std::numeric_limits<float>::infinity();
  }
  float m = 0.f;
  for (int64_t i = 0; i < a.numel(); ++i) {
    float d = std::fabs(a.data<float>()[i] - b.data<float>()[i]);
    if (!(d <= m)) m = d;  // NaN propagates as a failure
  }
  return m;
}

std::string make_onnx(const OnnxSpec& spec) {
  onnx::ModelProto m;
  m.set_ir_version(8);
  auto* op = m.add_opset_import();
  op->set_domain("");
  op->set_version(spec.opset);
  auto* g = m.mutable_graph();
  g->set_name("test");
  for (const auto& [name, shape] : spec.inputs) {
    auto* in = g->add_input();
    in->set_name(name);
    auto* tt = in->mutable_type()->mutable_tensor_type();
    tt->set_elem_type(1);
    auto* sh = tt->mutable_shape();
    for (int64_t d : shape) {
      auto* dim = sh->add_dim();
      if (d < 0) {
        dim->set_dim_param("batch");
      } else {
        dim->set_dim_value(d);
      }
    }
  }
  for (const auto& name : spec.outputs) {
    auto* out = g->add_output();
    out->set_name(name);
    out->mutable_type()->mutable_tensor_type()->set_elem_type(1);
  }
  for (const auto& [name, t] : spec.initializers) {
    auto* tp = g->add_initializer();
    tp->set_name(name);
    tp->set_data_type(dtype_to_onnx(t.dtype()));
    for (int64_t d : t.shape()) tp->add_dims(d);
    tp->set_raw_data(std::string(static_cast<const char*>(t.raw()), t.nbytes()));
  }
  for (const auto& n : spec.nodes) {
    auto* np = g->add_node();
    np->set_op_type(n.op_type);
    np->set_name(n.outputs.empty() ? n.op_type : n.outputs[0] + "_node");
    for (const auto& i : n.inputs) np->add_input(i);
    for (const auto& o : n.outputs) np->add_output(o);
    for (const auto& [k, v] : n.int_attrs) {
      auto* a = np->add_attribute();
      a->set_name(k);
      a->set_type(onnx::AttributeProto::INT);
      a->set_i(v);
    }
    for (const auto& [k, v] : n.ints_attrs) {
      auto* a = np->add_attribute();
      a->set_name(k);
      a->set_type(onnx::AttributeProto::INTS);
      for (int64_t x : v) a->add_ints(x);
    }
    for (const auto& [k, v] : n.string_attrs) {
      auto* a = np->add_attribute();
      a->set_name(k);
      a->set_type(onnx::AttributeProto::STRING);
      a->set_s(v);
    }
    for (const auto& [k, v] : n.float_attrs) {
      auto* a = np->add_attribute();
      a->set_name(k);
      a->set_type(onnx::AttributeProto::FLOAT);
      a->set_f(v);
    }
  }
  return m.SerializeAsString();
}

Result<std::vector<Tensor>> run_op(OpKind op, std::vector<const Tensor*> in,
                                   std::map<std::string, AttrValue> attrs) {
  Node n;
  n.op = op;
  n.name = "t";
  n.attrs = std::move(attrs);
  for (size_t i = 0; i < in.size(); ++i) n.inputs.push_back(in[i] ? ValueId(i) : kNoId);
  n.outputs.push_back(0);
  return run_ref_node(n, in);
}

std::vector<float> values(const Tensor& t) {
  return std::vector<float>(t.data<float>(), t.data<float>() + t.numel());
}

Tensor seq(Shape s, float start) {
  Tensor t = Tensor::f32(s);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = start + static_cast<float>(i);
  return t;
}

}  // namespace tr::nn::test
