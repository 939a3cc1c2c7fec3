// Checked size arithmetic for every count or byte size computed from file or network input
// (.npy headers, .json sidecars, ONNX dims, package metadata). Shapes there are attacker
// controlled: a product that wraps or saturates turns into a small allocation, a bogus
// "N bytes is not a whole number of rows of -4 bytes" message, or undefined behaviour.
// These return an error instead, and the error prints the declared shape, never the wrapped
// number. The kind is BadInput: the numbers came from the user's file.
//
// shape_numel (tensor.h) stays for shapes already validated (tensors that exist in memory);
// anything that has not been allocated yet goes through here first.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "common/status.h"
#include "common/tensor.h"

namespace tr {

// a * b and a + b, or an error "<what>: a * b overflows a 64-bit size" when they do not fit.
Result<int64_t> checked_mul(int64_t a, int64_t b, const std::string& what = "size");
Result<int64_t> checked_add(int64_t a, int64_t b, const std::string& what = "size");

// Element count of a declared shape: an error when a dimension is negative or the product
// overflows int64. An empty shape is a scalar (1); a zero dimension gives 0, but only if the
// product of the other dimensions fits too ([0, INT64_MAX, 2] is an error): the count then
// equals shape_numel's in any order of the dimensions. `what` names the source
// ("f.json: \"shape\"") and starts the message.
Result<int64_t> checked_numel(const Shape& shape, const std::string& what = "shape");

// count * elem_size as a byte count: an error when count is negative or the product does
// not fit int64 (and so size_t).
Result<size_t> checked_bytes(int64_t count, size_t elem_size, const std::string& what = "size");

// Bytes for a declared shape of elem_size-byte elements: checked_numel, then the product
// with elem_size, which must fit both int64 and size_t (so callers may compare it with a
// file size or an offset either way).
Result<size_t> checked_bytes(const Shape& shape, size_t elem_size,
                             const std::string& what = "shape");

}  // namespace tr
