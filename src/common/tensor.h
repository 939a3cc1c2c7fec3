// A dense, row-major tensor with shared, 64-byte aligned storage. Copies share the buffer
// (like a shared_ptr); use clone() for a deep copy. float32 is the working type; int64 and
// others exist for ONNX shape arithmetic and file I/O.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace tr {

enum class DType : uint8_t { kFloat32, kInt64, kInt32, kUint8, kBool, kFloat16, kFloat64 };

size_t dtype_size(DType t);
const char* dtype_name(DType t);

using Shape = std::vector<int64_t>;
int64_t shape_numel(const Shape& s);    // INT64_MAX when the product overflows
std::string shape_str(const Shape& s);  // "[1, 3, 320, 320]"

class Tensor {
 public:
  Tensor() = default;
  // Allocates uninitialised storage.
  Tensor(DType dtype, Shape shape);
  static Tensor zeros(DType dtype, Shape shape);
  static Tensor f32(Shape shape) { return Tensor(DType::kFloat32, std::move(shape)); }
  static Tensor f32(Shape shape, const std::vector<float>& values);
  static Tensor i64(Shape shape, const std::vector<int64_t>& values);

  bool empty() const { return !buf_; }
  DType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  int64_t dim(size_t i) const { return shape_[i]; }
  size_t rank() const { return shape_.size(); }
  int64_t numel() const { return shape_numel(shape_); }
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype_); }

  void* raw() { return buf_.get(); }
  const void* raw() const { return buf_.get(); }
  template <class T>
  T* data() {
    return static_cast<T*>(raw());
  }
  template <class T>
  const T* data() const {
    return static_cast<const T*>(raw());
  }

  Tensor clone() const;
  // Same storage, new shape with the same element count.
  Tensor reshaped(Shape shape) const;

 private:
  DType dtype_ = DType::kFloat32;
  Shape shape_;
  std::shared_ptr<uint8_t> buf_;
};

}  // namespace tr
