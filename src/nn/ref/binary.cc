#include <vector>

#include "nn/ref/ref_kernels.h"

namespace tr::nn {

namespace {

template <class T>
T apply(BinaryOp op, T a, T b) {
  switch (op) {
    case BinaryOp::kAdd:
      return a + b;
    case BinaryOp::kSub:
      return a - b;
    case BinaryOp::kMul:
      return a * b;
    case BinaryOp::kDiv:
      return a / b;
  }
  return a;
}

// Strides of `s` aligned to the output rank, 0 where the dimension broadcasts.
std::vector<int64_t> broadcast_strides(const Shape& s, const Shape& out) {
  const size_t rank = out.size(), off = rank - s.size();
  std::vector<int64_t> st(rank, 0);
  int64_t acc = 1;
  for (size_t i = s.size(); i-- > 0;) {
    st[i + off] = s[i] == 1 ? 0 : acc;
    acc *= s[i];
  }
  return st;
}

template <class T>
void run(BinaryOp op, const Tensor& a, const Tensor& b, Tensor& y) {
  const T* ap = a.data<T>();
  const T* bp = b.data<T>();
  T* yp = y.data<T>();
  const int64_t total = y.numel();
  if (a.shape() == b.shape()) {
    for (int64_t i = 0; i < total; ++i) yp[i] = apply(op, ap[i], bp[i]);
    return;
  }
  const Shape& os = y.shape();
  const size_t rank = os.size();
  auto sa = broadcast_strides(a.shape(), os), sb = broadcast_strides(b.shape(), os);
  std::vector<int64_t> idx(rank, 0);
  int64_t ia = 0, ib = 0;
  for (int64_t i = 0; i < total; ++i) {
    yp[i] = apply(op, ap[ia], bp[ib]);
    // Odometer increment over the output index.
    for (size_t d = rank; d-- > 0;) {
      ++idx[d];
      ia += sa[d];
      ib += sb[d];
      if (idx[d] < os[d]) break;
      ia -= sa[d] * os[d];
      ib -= sb[d] * os[d];
      idx[d] = 0;
    }
  }
}

}  // namespace

Status binary_reference(const Node& n, BinaryOp op, const Tensor& a, const Tensor& b, Tensor& y) {
  switch (a.dtype()) {
    case DType::kFloat32:
      run<float>(op, a, b, y);
      return Status::Ok();
    case DType::kInt64:
    case DType::kInt32: {
      // Integer division by zero is undefined in C++; refuse it instead.
      if (op == BinaryOp::kDiv) {
        for (int64_t v : tensor_to_i64(b)) {
          if (v == 0) return BadInput(n.describe() + ": integer division by zero");
        }
      }
      if (a.dtype() == DType::kInt64) {
        run<int64_t>(op, a, b, y);
      } else {
        run<int32_t>(op, a, b, y);
      }
      return Status::Ok();
    }
    case DType::kFloat64:
      run<double>(op, a, b, y);
      return Status::Ok();
    default:
      return BadInput(n.describe() + ": type " + dtype_name(a.dtype()) + " is not supported");
  }
}

}  // namespace tr::nn
