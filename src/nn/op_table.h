// The one list of operators the runtime knows. Everything keyed by operator (the OpKind enum,
// the name table, each backend's kernel table) is generated from TR_NN_OPS, so adding an op
// is one line here plus its kernels; nothing keeps a count or a position by hand.
//
// X(Name): Name is the ONNX op_type (except FusedConv, which is internal: produced by the
// fusion passes, never read from a file).
#pragma once

#include <cstddef>
#include <optional>
#include <string_view>

namespace tr::nn {

#define TR_NN_OPS(X)    \
  X(Conv)               \
  X(FusedConv)          \
  X(ConvTranspose)      \
  X(BatchNormalization) \
  X(Relu)               \
  X(LeakyRelu)          \
  X(Sigmoid)            \
  X(Add)                \
  X(Sub)                \
  X(Mul)                \
  X(Div)                \
  X(Concat)             \
  X(Resize)             \
  X(Pad)                \
  X(Reshape)            \
  X(Flatten)            \
  X(Squeeze)            \
  X(Unsqueeze)          \
  X(Transpose)          \
  X(Identity)           \
  X(Shape)              \
  X(Gather)             \
  X(Cast)               \
  X(ConstantOfShape)    \
  X(Slice)              \
  X(Constant)

enum class OpKind : unsigned short {
#define TR_NN_OP_ENUM_(name) k##name,
  TR_NN_OPS(TR_NN_OP_ENUM_)
#undef TR_NN_OP_ENUM_
};

// Number of ops, counted by the list itself.
#define TR_NN_OP_COUNT_(name) +1
inline constexpr size_t kNumOps = 0 TR_NN_OPS(TR_NN_OP_COUNT_);
#undef TR_NN_OP_COUNT_

inline constexpr size_t op_index(OpKind k) { return static_cast<size_t>(k); }

// "Conv", "FusedConv", ...
const char* op_name(OpKind k);
// ONNX op_type -> OpKind; nullopt for ops the runtime does not implement. "FusedConv" is
// not accepted from files (it is internal).
std::optional<OpKind> op_from_onnx_name(std::string_view op_type);

}  // namespace tr::nn
