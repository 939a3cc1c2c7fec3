#include "nn/ref/copy_util.h"
#include "nn/ref/ref_kernels.h"

namespace tr::nn {

namespace {

// Reflect / edge modes: every output element copies the input element its index maps to.
Status pad_from_edges(const PadParams& p, const Tensor& x, Tensor& y) {
  const size_t rank = x.rank();
  const auto xs = row_major_strides(x.shape());
  const size_t es = dtype_size(x.dtype());
  const uint8_t* xp = static_cast<const uint8_t*>(x.raw());
  uint8_t* yp = static_cast<uint8_t*>(y.raw());
  // Per dimension, the input offset each output index reads.
  std::vector<std::vector<int64_t>> src(rank);
  for (size_t d = 0; d < rank; ++d) {
    src[d].resize(y.dim(d));
    for (int64_t o = 0; o < y.dim(d); ++o) src[d][o] = p.source_index(d, o, x.dim(d)) * xs[d];
  }
  std::vector<int64_t> idx(rank, 0);
  for (int64_t i = 0; i < y.numel(); ++i) {
    int64_t off = 0;
    for (size_t d = 0; d < rank; ++d) off += src[d][idx[d]];
    std::memcpy(yp + i * es, xp + off * es, es);
    for (size_t d = rank; d-- > 0;) {
      if (++idx[d] < y.dim(d)) break;
      idx[d] = 0;
    }
  }
  return Status::Ok();
}

}  // namespace

Status ref_Pad(const Node& n, const std::vector<const Tensor*>& in, std::vector<Tensor>& out) {
  const Tensor& x = *in[0];
  const Tensor* pads = in.size() > 1 ? in[1] : nullptr;
  const Tensor* value = in.size() > 2 ? in[2] : nullptr;
  TR_ASSIGN_OR_RETURN(PadParams p, pad_params(n, x.shape(), pads, value));
  Tensor& y = out[0];
  const size_t rank = x.rank();
  if (p.mode != PadMode::kConstant) return pad_from_edges(p, x, y);
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
