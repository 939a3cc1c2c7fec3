#include "nn/ref/ref_kernels.h"

namespace tr::nn {

namespace {

template <class From, class To>
void convert(const Tensor& x, Tensor& y) {
  const From* xp = x.data<From>();
  To* yp = y.data<To>();
  for (int64_t i = 0, e = x.numel(); i < e; ++i) yp[i] = static_cast<To>(xp[i]);
}

template <class From>
Status convert_from(const Node& n, const Tensor& x, Tensor& y) {
  switch (y.dtype()) {
    case DType::kFloat32:
      convert<From, float>(x, y);
      break;
    case DType::kFloat64:
      convert<From, double>(x, y);
      break;
    case DType::kInt64:
      convert<From, int64_t>(x, y);
      break;
    case DType::kInt32:
      convert<From, int32_t>(x, y);
      break;
    case DType::kUint8:
      convert<From, uint8_t>(x, y);
      break;
    case DType::kBool: {
      const From* xp = x.data<From>();
      for (int64_t i = 0; i < x.numel(); ++i) y.data<uint8_t>()[i] = xp[i] != From(0);
      break;
    }
    default:
      return BadInput(n.describe() + ": cannot cast to " + dtype_name(y.dtype()));
  }
  return Status::Ok();
}

}  // namespace

Status ref_Cast(const Node& n, const std::vector<const Tensor*>& in, std::vector<Tensor>& out) {
  const Tensor& x = *in[0];
  switch (x.dtype()) {
    case DType::kFloat32:
      return convert_from<float>(n, x, out[0]);
    case DType::kFloat64:
      return convert_from<double>(n, x, out[0]);
    case DType::kInt64:
      return convert_from<int64_t>(n, x, out[0]);
    case DType::kInt32:
      return convert_from<int32_t>(n, x, out[0]);
    case DType::kUint8:
    case DType::kBool:
      return convert_from<uint8_t>(n, x, out[0]);
    default:
      return BadInput(n.describe() + ": cannot cast from " + dtype_name(x.dtype()));
  }
}

}  // namespace tr::nn
