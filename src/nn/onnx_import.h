// ONNX (protobuf) -> Graph. Internal to src/nn; Model::load is the public entry.
#pragma once

#include <string>

#include "common/status.h"
#include "nn/graph.h"

namespace tr::nn {

// The contract's exports use 11..17; older files (6..10) load
// where our ops mean the same thing; the rest is refused by name (upgrade_legacy_node).
inline constexpr int64_t kMinOpset = 6;
inline constexpr int64_t kMaxOpset = 18;

// Parses a serialized ModelProto. `name` (usually the path) prefixes every error message.
// Initialisers and Constant nodes become constant Values; input shapes keep -1 for dynamic
// dimensions. Errors are kBadInput: not ONNX / truncated, unsupported opset or op (naming
// the node and op), external weights, dangling inputs.
Result<Graph> import_onnx(const std::string& bytes, const std::string& name);

}  // namespace tr::nn
