#include "nn/op_table.h"

#include <array>

namespace tr::nn {

namespace {
constexpr std::array<const char*, kNumOps> kOpNames = {
#define TR_NN_OP_NAME_(name) #name,
    TR_NN_OPS(TR_NN_OP_NAME_)
#undef TR_NN_OP_NAME_
};
}  // namespace

const char* op_name(OpKind k) {
  size_t i = op_index(k);
  return i < kNumOps ? kOpNames[i] : "?";
}

std::optional<OpKind> op_from_onnx_name(std::string_view op_type) {
  if (op_type == "FusedConv") return std::nullopt;
  for (size_t i = 0; i < kNumOps; ++i) {
    if (op_type == kOpNames[i]) return static_cast<OpKind>(i);
  }
  return std::nullopt;
}

}  // namespace tr::nn
