#include "common/checked_math.h"

#include <limits>

namespace tr {

namespace {

Error overflow(const std::string& what, const std::string& expr) {
  return BadInput(what + ": " + expr + " overflows a 64-bit size");
}

}  // namespace

Result<int64_t> checked_mul(int64_t a, int64_t b, const std::string& what) {
  int64_t r;
  if (__builtin_mul_overflow(a, b, &r)) {
    return overflow(what, std::to_string(a) + " * " + std::to_string(b));
  }
  return r;
}

Result<int64_t> checked_add(int64_t a, int64_t b, const std::string& what) {
  int64_t r;
  if (__builtin_add_overflow(a, b, &r)) {
    return overflow(what, std::to_string(a) + " + " + std::to_string(b));
  }
  return r;
}

Result<int64_t> checked_numel(const Shape& shape, const std::string& what) {
  // Negative dimensions first, and for every dimension: a zero elsewhere must not make
  // [0, -1] look like a valid empty shape.
  for (int64_t d : shape) {
    if (d < 0) {
      return BadInput(what + " " + shape_str(shape) + " has a negative dimension (" +
                      std::to_string(d) + ")");
    }
  }
  // The product of the non-zero dimensions must fit, even when a zero makes the count 0:
  // shape_numel (and so Tensor::numel) multiplies in order and saturates, so [2^40, 2^40, 0]
  // would be INT64_MAX elements there, and kernels loop over every non-zero dimension.
  // Rejecting it keeps every accepted shape's count equal to shape_numel's.
  int64_t n = 1;
  bool empty = false;
  for (int64_t d : shape) {
    if (d == 0) {
      empty = true;
    } else if (__builtin_mul_overflow(n, d, &n)) {
      return BadInput(what + " " + shape_str(shape) +
                      " has too many elements (the product of its dimensions overflows a "
                      "64-bit count)");
    }
  }
  return empty ? int64_t{0} : n;
}

Result<size_t> checked_bytes(int64_t count, size_t elem_size, const std::string& what) {
  if (count < 0) return BadInput(what + ": negative element count " + std::to_string(count));
  int64_t bytes;
  if (elem_size > static_cast<size_t>(std::numeric_limits<int64_t>::max()) ||
      __builtin_mul_overflow(count, static_cast<int64_t>(elem_size), &bytes)) {
    return overflow(what,
                    std::to_string(count) + " elements * " + std::to_string(elem_size) + " bytes");
  }
  if (static_cast<uint64_t>(bytes) > std::numeric_limits<size_t>::max()) {
    return overflow(what, std::to_string(bytes) + " bytes");
  }
  return static_cast<size_t>(bytes);
}

Result<size_t> checked_bytes(const Shape& shape, size_t elem_size, const std::string& what) {
  TR_ASSIGN_OR_RETURN(const int64_t n, checked_numel(shape, what));
  int64_t bytes;
  if (elem_size > static_cast<size_t>(std::numeric_limits<int64_t>::max()) ||
      __builtin_mul_overflow(n, static_cast<int64_t>(elem_size), &bytes) ||
      static_cast<uint64_t>(bytes) > std::numeric_limits<size_t>::max()) {
    return BadInput(what + " " + shape_str(shape) + " is too large: its size in bytes (" +
                    std::to_string(elem_size) + "-byte elements) overflows a 64-bit size");
  }
  return static_cast<size_t>(bytes);
}

}  // namespace tr
