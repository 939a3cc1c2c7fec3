#include "nn/graph.h"

#include <algorithm>
#include <unordered_map>

namespace tr::nn {

bool Value::shape_concrete() const {
  if (!shape_known) return false;
  return std::all_of(shape.begin(), shape.end(), [](int64_t d) { return d >= 0; });
}

int64_t Node::attr_int(const std::string& key, int64_t def) const {
  auto it = attrs.find(key);
  if (it == attrs.end()) return def;
  if (auto* v = std::get_if<int64_t>(&it->second)) return *v;
  return def;
}

float Node::attr_float(const std::string& key, float def) const {
  auto it = attrs.find(key);
  if (it == attrs.end()) return def;
  if (auto* v = std::get_if<float>(&it->second)) return *v;
  return def;
}

std::string Node::attr_string(const std::string& key, const std::string& def) const {
  auto it = attrs.find(key);
  if (it == attrs.end()) return def;
  if (auto* v = std::get_if<std::string>(&it->second)) return *v;
  return def;
}

std::vector<int64_t> Node::attr_ints(const std::string& key,
                                     const std::vector<int64_t>& def) const {
  auto it = attrs.find(key);
  if (it == attrs.end()) return def;
  if (auto* v = std::get_if<std::vector<int64_t>>(&it->second)) return *v;
  return def;
}

std::vector<float> Node::attr_floats(const std::string& key, const std::vector<float>& def) const {
  auto it = attrs.find(key);
  if (it == attrs.end()) return def;
  if (auto* v = std::get_if<std::vector<float>>(&it->second)) return *v;
  return def;
}

const Tensor* Node::attr_tensor(const std::string& key) const {
  auto it = attrs.find(key);
  if (it == attrs.end()) return nullptr;
  return std::get_if<Tensor>(&it->second);
}

std::string Node::describe() const { return std::string(op_name(op)) + " '" + name + "'"; }

ValueId Graph::add_value(Value v) {
  values.push_back(std::move(v));
  return static_cast<ValueId>(values.size() - 1);
}

ValueId Graph::add_constant(const std::string& vname, Tensor t) {
  Value v;
  v.name = vname;
  v.dtype = t.dtype();
  v.shape = t.shape();
  v.shape_known = true;
  v.constant = std::move(t);
  return add_value(std::move(v));
}

NodeId Graph::add_node(Node n) {
  NodeId id = static_cast<NodeId>(nodes.size());
  for (ValueId o : n.outputs) {
    if (o != kNoId) values[o].producer = id;
  }
  nodes.push_back(std::move(n));
  return id;
}

ValueId Graph::find_value(const std::string& vname) const {
  for (size_t i = 0; i < values.size(); ++i) {
    if (values[i].name == vname) return static_cast<ValueId>(i);
  }
  return kNoId;
}

std::string Graph::unique_name(const std::string& prefix) const {
  for (int i = static_cast<int>(values.size());; ++i) {
    std::string candidate = prefix + "_" + std::to_string(i);
    if (find_value(candidate) == kNoId) return candidate;
  }
}

std::vector<std::vector<NodeId>> Graph::consumers() const {
  std::vector<std::vector<NodeId>> out(values.size());
  for (size_t n = 0; n < nodes.size(); ++n) {
    if (nodes[n].removed) continue;
    for (ValueId v : nodes[n].inputs) {
      if (v == kNoId) continue;
      auto& list = out[v];
      if (list.empty() || list.back() != static_cast<NodeId>(n)) {
        list.push_back(static_cast<NodeId>(n));
      }
    }
  }
  return out;
}

std::vector<int> Graph::use_counts() const {
  std::vector<int> out(values.size(), 0);
  for (const Node& n : nodes) {
    if (n.removed) continue;
    for (ValueId v : n.inputs) {
      if (v != kNoId) ++out[v];
    }
  }
  for (ValueId v : outputs) ++out[v];
  return out;
}

void Graph::replace_uses(ValueId from, ValueId to) {
  for (Node& n : nodes) {
    if (n.removed) continue;
    for (ValueId& v : n.inputs) {
      if (v == from) v = to;
    }
  }
  for (ValueId& v : outputs) {
    if (v == from) v = to;
  }
}

Status Graph::topo_sort() {
  // Kahn's algorithm over live nodes; ties keep the existing order so that sorting an
  // already sorted graph changes nothing.
  const size_t n_nodes = nodes.size();
  std::vector<NodeId> producer(values.size(), kNoId);
  for (size_t n = 0; n < n_nodes; ++n) {
    if (nodes[n].removed) continue;
    for (ValueId o : nodes[n].outputs) {
      if (o != kNoId) producer[o] = static_cast<NodeId>(n);
    }
  }
  std::vector<int> pending(n_nodes, 0);
  std::vector<std::vector<NodeId>> readers(n_nodes);
  for (size_t n = 0; n < n_nodes; ++n) {
    if (nodes[n].removed) continue;
    for (ValueId v : nodes[n].inputs) {
      if (v == kNoId) continue;
      NodeId p = producer[v];
      if (p == kNoId) {
        const Value& val = values[v];
        bool is_input = std::find(inputs.begin(), inputs.end(), v) != inputs.end();
        if (!val.is_constant() && !is_input) {
          return BadInput(name + ": node " + nodes[n].describe() + " reads '" + val.name +
                          "', which no node, input or initialiser provides");
        }
        continue;
      }
      ++pending[n];
      readers[p].push_back(static_cast<NodeId>(n));
    }
  }
  std::vector<NodeId> order;
  std::vector<NodeId> ready;
  for (size_t n = 0; n < n_nodes; ++n) {
    if (!nodes[n].removed && pending[n] == 0) ready.push_back(static_cast<NodeId>(n));
  }
  // Process in index order for stability: a min-heap would be exact; a sorted ready list
  // is enough at these graph sizes.
  while (!ready.empty()) {
    auto it = std::min_element(ready.begin(), ready.end());
    NodeId n = *it;
    ready.erase(it);
    order.push_back(n);
    for (NodeId r : readers[n]) {
      if (--pending[r] == 0) ready.push_back(r);
    }
  }
  size_t live = 0;
  for (const Node& n : nodes) live += n.removed ? 0 : 1;
  if (order.size() != live) return BadInput(name + ": the graph has a cycle");
  std::vector<Node> sorted;
  sorted.reserve(order.size());
  for (NodeId n : order) sorted.push_back(std::move(nodes[n]));
  nodes = std::move(sorted);
  for (Value& v : values) v.producer = kNoId;
  for (size_t n = 0; n < nodes.size(); ++n) {
    for (ValueId o : nodes[n].outputs) {
      if (o != kNoId) values[o].producer = static_cast<NodeId>(n);
    }
  }
  return Status::Ok();
}

void Graph::remove_dead_nodes() {
  std::vector<bool> needed(values.size(), false);
  for (ValueId v : outputs) needed[v] = true;
  // Walk backwards: a node is live if any output is needed (nodes are in topological
  // order, so one backward sweep suffices after topo_sort; repeat until stable otherwise).
  bool changed = true;
  std::vector<bool> live(nodes.size(), false);
  while (changed) {
    changed = false;
    for (size_t i = nodes.size(); i-- > 0;) {
      Node& n = nodes[i];
      if (n.removed || live[i]) continue;
      bool any = false;
      for (ValueId o : n.outputs) any = any || (o != kNoId && needed[o]);
      if (!any) continue;
      live[i] = true;
      changed = true;
      for (ValueId v : n.inputs) {
        if (v != kNoId) needed[v] = true;
      }
    }
  }
  for (size_t i = 0; i < nodes.size(); ++i) {
    if (!live[i]) nodes[i].removed = true;
  }
  (void)compact();
}

Status Graph::compact() {
  std::vector<Node> kept;
  kept.reserve(nodes.size());
  for (Node& n : nodes) {
    if (!n.removed) kept.push_back(std::move(n));
  }
  nodes = std::move(kept);
  std::vector<bool> used(values.size(), false);
  for (ValueId v : inputs) used[v] = true;
  for (ValueId v : outputs) used[v] = true;
  for (const Node& n : nodes) {
    for (ValueId v : n.inputs) {
      if (v != kNoId) used[v] = true;
    }
    for (ValueId v : n.outputs) {
      if (v != kNoId) used[v] = true;
    }
  }
  std::vector<ValueId> remap(values.size(), kNoId);
  std::vector<Value> kept_values;
  for (size_t i = 0; i < values.size(); ++i) {
    if (!used[i]) continue;
    remap[i] = static_cast<ValueId>(kept_values.size());
    kept_values.push_back(std::move(values[i]));
  }
  values = std::move(kept_values);
  auto fix = [&](ValueId& v) {
    if (v != kNoId) v = remap[v];
  };
  for (ValueId& v : inputs) fix(v);
  for (ValueId& v : outputs) fix(v);
  for (Node& n : nodes) {
    for (ValueId& v : n.inputs) fix(v);
    for (ValueId& v : n.outputs) fix(v);
  }
  return topo_sort();
}

std::map<std::string, int> Graph::op_counts() const {
  std::map<std::string, int> out;
  for (const Node& n : nodes) {
    if (!n.removed) ++out[op_name(n.op)];
  }
  return out;
}

int Graph::count(OpKind k) const {
  int c = 0;
  for (const Node& n : nodes) c += (!n.removed && n.op == k) ? 1 : 0;
  return c;
}

}  // namespace tr::nn
