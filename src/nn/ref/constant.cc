#include <cstring>

#include "nn/ref/ref_kernels.h"

namespace tr::nn {

Status ref_Constant(const Node& n, const std::vector<const Tensor*>& in, std::vector<Tensor>& out) {
  if (const Tensor* t = n.attr_tensor("value")) {
    out[0] = *t;  // shared: constants are read-only
  } else if (n.has_attr("value_float")) {
    out[0].data<float>()[0] = n.attr_float("value_float", 0.f);
  } else if (n.has_attr("value_int")) {
    out[0].data<int64_t>()[0] = n.attr_int("value_int", 0);
  } else if (n.has_attr("value_floats")) {
    auto v = n.attr_floats("value_floats");
    if (!v.empty()) std::memcpy(out[0].raw(), v.data(), v.size() * 4);
  } else if (n.has_attr("value_ints")) {
    auto v = n.attr_ints("value_ints");
    if (!v.empty()) std::memcpy(out[0].raw(), v.data(), v.size() * 8);
  }
  return Status::Ok();
}

}  // namespace tr::nn
