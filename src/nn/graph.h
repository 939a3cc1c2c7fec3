// The runtime's graph IR: what the ONNX importer builds, what the passes rewrite and what
// every backend compiles.
//
// Ownership: a Graph owns its Values and Nodes by value; constant Tensors share their
// buffers (Tensor copies are shallow), so copying a Graph (Session does, once per input
// shape set) never copies weights. Weights must be treated as read-only.
//
// Ids: ValueId / NodeId index `values` / `nodes`. They are stable while a pass works and
// are renumbered only by compact() (called by remove_dead_nodes()), which every pass runs
// last. kNoId marks "none": an omitted optional input, a value with no producer.
//
// Shapes: Value::shape is valid when Value::shape_known; -1 marks a dimension not known
// until run time (the batch). After Session's shape inference every shape is concrete.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <variant>
#include <vector>

#include "common/status.h"
#include "common/tensor.h"
#include "nn/op_table.h"

namespace tr::nn {

using ValueId = int32_t;
using NodeId = int32_t;
inline constexpr int32_t kNoId = -1;

struct Value {
  std::string name;
  DType dtype = DType::kFloat32;
  Shape shape;  // meaningful only when shape_known
  bool shape_known = false;
  Tensor constant;          // non-empty for initialisers and folded constants
  NodeId producer = kNoId;  // kNoId for graph inputs and constants

  bool is_constant() const { return !constant.empty(); }
  // True when the shape is known and has no -1.
  bool shape_concrete() const;
};

// ONNX attribute payloads. Graph-typed attributes (If/Loop bodies) are not supported.
using AttrValue =
    std::variant<int64_t, float, std::string, std::vector<int64_t>, std::vector<float>, Tensor>;

struct Node {
  OpKind op = OpKind::kIdentity;
  std::string name;             // the ONNX node name (or a generated one); used in errors
  std::vector<ValueId> inputs;  // kNoId where an optional input is omitted
  std::vector<ValueId> outputs;
  std::map<std::string, AttrValue> attrs;
  bool removed = false;  // set by passes; dropped by Graph::compact()

  // The i-th input, or kNoId when absent.
  ValueId input(size_t i) const { return i < inputs.size() ? inputs[i] : kNoId; }
  ValueId output(size_t i) const { return i < outputs.size() ? outputs[i] : kNoId; }

  bool has_attr(const std::string& key) const { return attrs.count(key) != 0; }
  // Getters return `def` when the attribute is absent or of another type.
  int64_t attr_int(const std::string& key, int64_t def) const;
  float attr_float(const std::string& key, float def) const;
  std::string attr_string(const std::string& key, const std::string& def = "") const;
  std::vector<int64_t> attr_ints(const std::string& key,
                                 const std::vector<int64_t>& def = {}) const;
  std::vector<float> attr_floats(const std::string& key, const std::vector<float>& def = {}) const;
  // nullptr when absent.
  const Tensor* attr_tensor(const std::string& key) const;
  void set_attr(const std::string& key, AttrValue v) { attrs[key] = std::move(v); }

  // "Conv 'name'" for error messages.
  std::string describe() const;
};

class Graph {
 public:
  std::vector<Value> values;
  std::vector<Node> nodes;       // topological order after topo_sort()/compact()
  std::vector<ValueId> inputs;   // runtime inputs, in the model's order (no initialisers)
  std::vector<ValueId> outputs;  // in the model's order
  int64_t opset = 17;            // default-domain opset the model was exported with
  std::string name;              // the model file (for messages)

  // Appends a value; returns its id.
  ValueId add_value(Value v);
  // A constant value holding `t` (shared, not copied).
  ValueId add_constant(const std::string& name, Tensor t);
  // Appends a node and sets its outputs' producer.
  NodeId add_node(Node n);

  // kNoId when no value has this name.
  ValueId find_value(const std::string& name) const;
  // A value name not yet used, starting with `prefix`.
  std::string unique_name(const std::string& prefix) const;

  // For each value, the (non-removed) nodes that read it.
  std::vector<std::vector<NodeId>> consumers() const;
  // How many times each value is read by live nodes plus by the graph outputs.
  std::vector<int> use_counts() const;

  // Replaces every read of `from` (by nodes and graph outputs) with `to`.
  void replace_uses(ValueId from, ValueId to);

  // Orders `nodes` so every node follows its inputs' producers; error on a cycle or a
  // value read before anything produces it.
  Status topo_sort();
  // Marks nodes whose outputs can't reach a graph output as removed, then compact().
  void remove_dead_nodes();
  // Drops removed nodes and values nothing refers to; renumbers ids; restores producers
  // and topological order.
  Status compact();

  // Node count per op, e.g. {"Conv": 10, "Relu": 5}.
  std::map<std::string, int> op_counts() const;
  int count(OpKind k) const;
};

}  // namespace tr::nn
