#include "common/tensor.h"

#include <cassert>
#include <cstdlib>
#include <cstring>
#include <new>

namespace tr {

size_t dtype_size(DType t) {
  switch (t) {
    case DType::kFloat32:
      return 4;
    case DType::kInt64:
      return 8;
    case DType::kInt32:
      return 4;
    case DType::kUint8:
      return 1;
    case DType::kBool:
      return 1;
    case DType::kFloat16:
      return 2;
    case DType::kFloat64:
      return 8;
  }
  return 1;
}

const char* dtype_name(DType t) {
  switch (t) {
    case DType::kFloat32:
      return "float32";
    case DType::kInt64:
      return "int64";
    case DType::kInt32:
      return "int32";
    case DType::kUint8:
      return "uint8";
    case DType::kBool:
      return "bool";
    case DType::kFloat16:
      return "float16";
    case DType::kFloat64:
      return "float64";
  }
  return "?";
}

int64_t shape_numel(const Shape& s) {
  // Saturates instead of overflowing: shapes can come from hostile files, and a wrapped count
  // would be undefined behaviour and a wrong allocation size. Callers reject huge counts.
  int64_t n = 1;
  for (int64_t d : s) {
    if (__builtin_mul_overflow(n, d, &n)) return INT64_MAX;
  }
  return n;
}

std::string shape_str(const Shape& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) {
    if (i) out += ", ";
    out += std::to_string(s[i]);
  }
  return out + "]";
}

Tensor::Tensor(DType dtype, Shape shape) : dtype_(dtype), shape_(std::move(shape)) {
  for (int64_t d : shape_) assert(d >= 0);
  // A saturated element count (shape_numel) or a byte count past size_t cannot be allocated;
  // without this check the wrapped size would allocate a small buffer and writes would run
  // past it. Callers check shapes from files before getting here (checked_numel and
  // checked_bytes, infer_node); this is the last line, also in release builds where the
  // assert is gone (two negative dimensions would make a positive count).
  for (int64_t d : shape_) {
    if (d < 0) throw std::bad_alloc();
  }
  if (numel() == INT64_MAX || static_cast<uint64_t>(numel()) > SIZE_MAX / 64 / dtype_size(dtype_)) {
    throw std::bad_alloc();
  }
  size_t bytes = nbytes();
  // Round up so aligned_alloc's size is a multiple of the alignment; never 0 bytes.
  size_t alloc = ((bytes + 63) / 64) * 64;
  if (alloc == 0) alloc = 64;
  void* p = std::aligned_alloc(64, alloc);
  if (!p) throw std::bad_alloc();
  buf_ = std::shared_ptr<uint8_t>(static_cast<uint8_t*>(p), [](uint8_t* q) { std::free(q); });
}

Tensor Tensor::zeros(DType dtype, Shape shape) {
  Tensor t(dtype, std::move(shape));
  if (t.nbytes() > 0) std::memset(t.raw(), 0, t.nbytes());
  return t;
}

Tensor Tensor::f32(Shape shape, const std::vector<float>& values) {
  Tensor t(DType::kFloat32, std::move(shape));
  assert(static_cast<int64_t>(values.size()) == t.numel());
  // An empty tensor (a zero dimension) has no buffer: memcpy must not see the null pointers.
  if (t.nbytes() > 0) std::memcpy(t.raw(), values.data(), t.nbytes());
  return t;
}

Tensor Tensor::i64(Shape shape, const std::vector<int64_t>& values) {
  Tensor t(DType::kInt64, std::move(shape));
  assert(static_cast<int64_t>(values.size()) == t.numel());
  // An empty tensor (a zero dimension) has no buffer: memcpy must not see the null pointers.
  if (t.nbytes() > 0) std::memcpy(t.raw(), values.data(), t.nbytes());
  return t;
}

Tensor Tensor::clone() const {
  if (empty()) return Tensor();
  Tensor t(dtype_, shape_);
  if (nbytes() > 0) std::memcpy(t.raw(), raw(), nbytes());
  return t;
}

Tensor Tensor::reshaped(Shape shape) const {
  assert(shape_numel(shape) == numel());
  Tensor t = *this;
  t.shape_ = std::move(shape);
  return t;
}

}  // namespace tr
