#include "nn/ref/copy_util.h"
#include "nn/ref/ref_kernels.h"

namespace tr::nn {

Status ref_Pad(const Node& n, const std::vector<const Tensor*>& in, std::vector<Tensor>& out) {
  const Tensor& x = *in[0];
  const Tensor* pads = in.size() > 1 ? in[1] : nullptr;
  const Tensor* value = in.size() > 2 ? in[2] : nullptr;
  TR_ASSIGN_OR_RETURN(PadParams p, pad_params(n, x.shape(), pads, value));
  Tensor& y = out[0];
  const size_t rank = x.rank();
  // Fill with the pad value, then copy the overlapping interior.
  switch (y.dtype()) {
    case DType::kFloat32:
      for (int64_t i = 0; i < y.numel(); ++i) y.data<float>()[i] = p.value;
      break;
    case DType::kInt64:
      for (int64_t i = 0; i < y.numel(); ++i) y.data<int64_t>()[i] = static_cast<int64_t>(p.value);
      break;
    default:
      std::memset(y.raw(), 0, y.nbytes());
  }
  const auto xs = row_major_strides(x.shape()), ys = row_major_strides(y.shape());
  const size_t es = dtype_size(x.dtype());
  const int64_t total = x.numel();
  std::vector<int64_t> idx(rank, 0);
  const uint8_t* xp = static_cast<const uint8_t*>(x.raw());
  uint8_t* yp = static_cast<uint8_t*>(y.raw());
  for (int64_t i = 0; i < total; ++i) {
    int64_t off = 0;
    bool inside = true;
    for (size_t d = 0; d < rank; ++d) {
      const int64_t o = idx[d] + p.pads[d];
      if (o < 0 || o >= y.dim(d)) {
        inside = false;
        break;
      }
      off += o * ys[d];
    }
    if (inside) std::memcpy(yp + off * es, xp + i * es, es);
    for (size_t d = rank; d-- > 0;) {
      if (++idx[d] < x.dim(d)) break;
      idx[d] = 0;
    }
  }
  return Status::Ok();
}

}  // namespace tr::nn
