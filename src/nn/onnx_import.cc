#include "nn/onnx_import.h"

#include <onnx/onnx_pb.h>

#include <cstring>
#include <unordered_map>

#include "common/checked_math.h"
#include "nn/ops/op_params.h"

namespace tr::nn {

namespace {

// Copies a TensorProto's payload into a Tensor (the only copy of the weights we make).
Result<Tensor> tensor_from_proto(const onnx::TensorProto& tp, const std::string& where) {
  if (tp.data_location() == onnx::TensorProto::EXTERNAL || tp.external_data_size() > 0) {
    return BadInput(where + ": tensor '" + tp.name() +
                    "' keeps its data in an external file, which is not supported");
  }
  auto dtype = dtype_from_onnx(tp.data_type());
  if (!dtype.ok())
    return BadInput(where + ": tensor '" + tp.name() + "': " + dtype.error().message);
  Shape shape(tp.dims().begin(), tp.dims().end());
  // The payload's size is checked before anything is allocated: a corrupt header can claim
  // terabytes, and the file's own payload is the bound on a legitimate tensor. Negative or
  // overflowing dims are errors that print the declared dims.
  const std::string what = where + ": tensor '" + tp.name() + "' dims";
  TR_ASSIGN_OR_RETURN(const int64_t numel, checked_numel(shape, what));
  const size_t elem = dtype_size(*dtype);
  TR_ASSIGN_OR_RETURN(const size_t expected_bytes, checked_bytes(shape, elem, what));
  const size_t count = static_cast<size_t>(numel);
  auto size_error = [&](size_t got) {
    return BadInput(where + ": tensor '" + tp.name() + "' " + shape_str(shape) + " holds " +
                    std::to_string(got) + (tp.has_raw_data() ? " bytes" : " values") +
                    ", expected " + std::to_string(tp.has_raw_data() ? expected_bytes : count) +
                    " (file truncated or corrupt?)");
  };
  size_t stored = 0;  // values (or bytes, for raw_data) the file holds for this tensor
  if (tp.has_raw_data()) {
    stored = tp.raw_data().size();
  } else {
    switch (*dtype) {
      case DType::kFloat32:
        stored = static_cast<size_t>(tp.float_data_size());
        break;
      case DType::kFloat64:
        stored = static_cast<size_t>(tp.double_data_size());
        break;
      case DType::kInt64:
        stored = static_cast<size_t>(tp.int64_data_size());
        break;
      default:
        stored = static_cast<size_t>(tp.int32_data_size());
        break;
    }
  }
  // Exact: values for the typed fields, bytes for raw_data.
  if (stored != (tp.has_raw_data() ? expected_bytes : count)) {
    return size_error(stored);
  }
  Tensor t(*dtype, shape);
  const size_t nbytes = t.nbytes();
  if (tp.has_raw_data()) {
    if (nbytes) std::memcpy(t.raw(), tp.raw_data().data(), nbytes);
    return t;
  }
  switch (*dtype) {
    case DType::kFloat32:
      if (count) std::memcpy(t.raw(), tp.float_data().data(), nbytes);
      break;
    case DType::kFloat64:
      if (count) std::memcpy(t.raw(), tp.double_data().data(), nbytes);
      break;
    case DType::kInt64:
      if (count) std::memcpy(t.raw(), tp.int64_data().data(), nbytes);
      break;
    case DType::kInt32:
      if (count) std::memcpy(t.raw(), tp.int32_data().data(), nbytes);
      break;
    case DType::kUint8:
    case DType::kBool:
      // Stored widened in int32_data.
      for (size_t i = 0; i < count; ++i)
        t.data<uint8_t>()[i] = static_cast<uint8_t>(tp.int32_data(i));
      break;
    default:
      return BadInput(where + ": tensor '" + tp.name() + "' has an unsupported type");
  }
  return t;
}

Status read_attributes(const onnx::NodeProto& np, Node& node, const std::string& where) {
  for (const auto& a : np.attribute()) {
    switch (a.type()) {
      case onnx::AttributeProto::INT:
        node.set_attr(a.name(), static_cast<int64_t>(a.i()));
        break;
      case onnx::AttributeProto::FLOAT:
        node.set_attr(a.name(), a.f());
        break;
      case onnx::AttributeProto::STRING:
        node.set_attr(a.name(), a.s());
        break;
      case onnx::AttributeProto::INTS:
        node.set_attr(a.name(), std::vector<int64_t>(a.ints().begin(), a.ints().end()));
        break;
      case onnx::AttributeProto::FLOATS:
        node.set_attr(a.name(), std::vector<float>(a.floats().begin(), a.floats().end()));
        break;
      case onnx::AttributeProto::TENSOR: {
        TR_ASSIGN_OR_RETURN(Tensor t, tensor_from_proto(a.t(), where));
        node.set_attr(a.name(), std::move(t));
        break;
      }
      default:
        return BadInput(where + ": node " + node.describe() + " has attribute '" + a.name() +
                        "' of a type the runtime does not support");
    }
  }
  return Status::Ok();
}

// A Constant node's value as a tensor.
Result<Tensor> constant_value(const Node& n, const std::string& where) {
  if (const Tensor* t = n.attr_tensor("value")) return *t;
  if (n.has_attr("value_float")) return Tensor::f32({}, {n.attr_float("value_float", 0.f)});
  if (n.has_attr("value_int")) return Tensor::i64({}, {n.attr_int("value_int", 0)});
  if (n.has_attr("value_floats")) {
    auto v = n.attr_floats("value_floats");
    return Tensor::f32({static_cast<int64_t>(v.size())}, v);
  }
  if (n.has_attr("value_ints")) {
    auto v = n.attr_ints("value_ints");
    return Tensor::i64({static_cast<int64_t>(v.size())}, v);
  }
  return BadInput(where + ": node " + n.describe() + " has no supported value attribute");
}

// Older opsets (7..10) spell a few of our ops differently: rewrite those nodes into the
// current form, or refuse them by name when the semantics differ.
Status upgrade_legacy_node(Node& node, int64_t opset, Graph& g, const std::string& where) {
  if (opset < 10 && node.op == OpKind::kSlice && node.has_attr("starts")) {
    // Slice-1: starts/ends/axes attributes -> constant inputs (Slice-10).
    node.inputs.resize(1);
    for (const char* key : {"starts", "ends", "axes"}) {
      if (!node.has_attr(key)) break;
      auto v = node.attr_ints(key);
      node.inputs.push_back(g.add_constant(g.unique_name(node.name + "_" + key),
                                           Tensor::i64({static_cast<int64_t>(v.size())}, v)));
      node.attrs.erase(key);
    }
  }
  if (opset < 11 && node.op == OpKind::kResize) {
    return BadInput(where + ": node " + node.describe() +
                    ": Resize before opset 11 is not supported");
  }
  const bool binary = node.op == OpKind::kAdd || node.op == OpKind::kSub ||
                      node.op == OpKind::kMul || node.op == OpKind::kDiv;
  if (opset < 7 && binary && node.attr_int("broadcast", 0) != 0 && node.has_attr("axis")) {
    // Opset-6 broadcasting aligns B at `axis`; without axis it aligns B with A's trailing
    // dimensions, which numpy broadcasting reproduces.
    return BadInput(where + ": node " + node.describe() +
                    ": legacy broadcasting with an axis attribute is not supported");
  }
  if (opset < 7 && node.op == OpKind::kBatchNormalization && node.attr_int("is_test", 0) == 0) {
    return BadInput(where + ": node " + node.describe() +
                    ": training mode (is_test = 0) is not supported");
  }
  if (node.op == OpKind::kBatchNormalization && node.attr_int("spatial", 1) != 1) {
    return BadInput(where + ": node " + node.describe() + ": spatial = 0 is not supported");
  }
  return Status::Ok();
}

}  // namespace

Result<Graph> import_onnx(const std::string& bytes, const std::string& name) {
  if (bytes.empty()) return BadInput(name + ": the file is empty, not an ONNX model");
  onnx::ModelProto model;
  if (!model.ParseFromString(bytes)) {
    return BadInput(name +
                    ": not an ONNX model, or the file is truncated or corrupt "
                    "(protobuf parse failed)");
  }
  if (!model.has_graph() || model.ir_version() <= 0 || model.graph().output_size() == 0) {
    return BadInput(name + ": not an ONNX model (no graph, IR version or outputs)");
  }
  int64_t opset = -1;
  for (const auto& o : model.opset_import()) {
    if (o.domain().empty() || o.domain() == "ai.onnx") opset = o.version();
  }
  if (opset < 0) return BadInput(name + ": the model imports no default-domain opset");
  if (opset < kMinOpset || opset > kMaxOpset) {
    return BadInput(name + ": opset " + std::to_string(opset) + " is not supported (" +
                    std::to_string(kMinOpset) + ".." + std::to_string(kMaxOpset) + ")");
  }
  const onnx::GraphProto& gp = model.graph();
  Graph g;
  g.name = name;
  g.opset = opset;
  std::unordered_map<std::string, ValueId> ids;
  auto define = [&](const std::string& vname, Value v) -> Result<ValueId> {
    if (ids.count(vname)) return BadInput(name + ": value '" + vname + "' is defined twice");
    v.name = vname;
    ValueId id = g.add_value(std::move(v));
    ids[vname] = id;
    return id;
  };

  for (const auto& init : gp.initializer()) {
    TR_ASSIGN_OR_RETURN(Tensor t, tensor_from_proto(init, name));
    Value v;
    v.dtype = t.dtype();
    v.shape = t.shape();
    v.shape_known = true;
    v.constant = std::move(t);
    TR_ASSIGN_OR_RETURN(ValueId id, define(init.name(), std::move(v)));
    (void)id;
  }
  for (const auto& in : gp.input()) {
    if (ids.count(in.name())) continue;  // an initialiser also listed as input (old exporters)
    if (!in.type().has_tensor_type()) {
      return BadInput(name + ": input '" + in.name() + "' is not a tensor");
    }
    const auto& tt = in.type().tensor_type();
    auto dtype = dtype_from_onnx(tt.elem_type());
    if (!dtype.ok())
      return BadInput(name + ": input '" + in.name() + "': " + dtype.error().message);
    Value v;
    v.dtype = *dtype;
    if (tt.has_shape()) {
      for (const auto& d : tt.shape().dim())
        v.shape.push_back(d.has_dim_value() ? d.dim_value() : -1);
      v.shape_known = true;
    }
    TR_ASSIGN_OR_RETURN(ValueId id, define(in.name(), std::move(v)));
    g.inputs.push_back(id);
  }

  // Nodes: create outputs first, resolve inputs afterwards, so a file whose nodes are not
  // in topological order still loads.
  std::vector<std::pair<Node, const onnx::NodeProto*>> pending;
  int unnamed = 0;
  for (const auto& np : gp.node()) {
    const std::string node_name =
        np.name().empty() ? np.op_type() + "_" + std::to_string(unnamed++) : np.name();
    if (!np.domain().empty() && np.domain() != "ai.onnx") {
      return BadInput(name + ": node '" + node_name + "' uses op '" + np.domain() + "." +
                      np.op_type() + "', which is not supported");
    }
    auto kind = op_from_onnx_name(np.op_type());
    if (!kind) {
      return BadInput(name + ": node '" + node_name + "' uses op '" + np.op_type() +
                      "', which is not supported");
    }
    Node node;
    node.op = *kind;
    node.name = node_name;
    TR_RETURN_IF_ERROR(read_attributes(np, node, name));
    if (node.op == OpKind::kConstant) {
      TR_ASSIGN_OR_RETURN(Tensor t, constant_value(node, name));
      if (np.output_size() != 1)
        return BadInput(name + ": " + node.describe() + " needs one output");
      Value v;
      v.dtype = t.dtype();
      v.shape = t.shape();
      v.shape_known = true;
      v.constant = std::move(t);
      TR_ASSIGN_OR_RETURN(ValueId id, define(np.output(0), std::move(v)));
      (void)id;
      continue;
    }
    for (const auto& out : np.output()) {
      if (out.empty()) {
        node.outputs.push_back(kNoId);
        continue;
      }
      TR_ASSIGN_OR_RETURN(ValueId id, define(out, Value{}));
      node.outputs.push_back(id);
    }
    pending.emplace_back(std::move(node), &np);
  }
  for (auto& [node, np] : pending) {
    for (const auto& in : np->input()) {
      if (in.empty()) {
        node.inputs.push_back(kNoId);
        continue;
      }
      auto it = ids.find(in);
      if (it == ids.end()) {
        return BadInput(name + ": node " + node.describe() + " reads '" + in +
                        "', which no node, input or initialiser provides");
      }
      node.inputs.push_back(it->second);
    }
    // Trailing omitted inputs carry no meaning.
    while (!node.inputs.empty() && node.inputs.back() == kNoId) node.inputs.pop_back();
    TR_RETURN_IF_ERROR(upgrade_legacy_node(node, opset, g, name));
    g.add_node(std::move(node));
  }
  for (const auto& out : gp.output()) {
    auto it = ids.find(out.name());
    if (it == ids.end()) {
      return BadInput(name + ": graph output '" + out.name() + "' is never produced");
    }
    g.outputs.push_back(it->second);
  }
  TR_RETURN_IF_ERROR(g.topo_sort());
  return g;
}

}  // namespace tr::nn
