#include "common/npy.h"

#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <vector>

#include "common/checked_math.h"
#include "common/files.h"

namespace tr {
namespace {

Result<DType> dtype_from_descr(const std::string& d, const std::string& name) {
  if (d == "<f4") return DType::kFloat32;
  if (d == "<f8") return DType::kFloat64;
  if (d == "<i8") return DType::kInt64;
  if (d == "<i4") return DType::kInt32;
  if (d == "|u1") return DType::kUint8;
  if (d == "|b1") return DType::kBool;
  return BadInput(name + ": unsupported .npy dtype '" + d +
                  "' (expected little-endian float32, float64, int64, int32, uint8 or bool)");
}

const char* descr_of(DType t) {
  switch (t) {
    case DType::kFloat32:
      return "<f4";
    case DType::kFloat64:
      return "<f8";
    case DType::kInt64:
      return "<i8";
    case DType::kInt32:
      return "<i4";
    case DType::kUint8:
      return "|u1";
    case DType::kBool:
      return "|b1";
    case DType::kFloat16:
      return "<f2";
  }
  return "?";
}

// Extracts the value text after 'key': in the header dict.
bool find_value(const std::string& h, const std::string& key, std::string* out) {
  size_t k = h.find("'" + key + "'");
  if (k == std::string::npos) return false;
  size_t c = h.find(':', k);
  if (c == std::string::npos) return false;
  size_t s = h.find_first_not_of(' ', c + 1);
  if (s == std::string::npos) return false;
  size_t e;
  if (h[s] == '(') {
    e = h.find(')', s);
    if (e == std::string::npos) return false;
    *out = h.substr(s + 1, e - s - 1);
  } else if (h[s] == '\'') {
    e = h.find('\'', s + 1);
    if (e == std::string::npos) return false;
    *out = h.substr(s + 1, e - s - 1);
  } else {
    e = h.find_first_of(",}", s);
    if (e == std::string::npos) return false;
    *out = h.substr(s, e - s);
  }
  return true;
}

}  // namespace

Result<Tensor> parse_npy(const void* data, size_t size, const std::string& name) {
  const auto* p = static_cast<const uint8_t*>(data);
  if (size < 10 || std::memcmp(p, "\x93NUMPY", 6) != 0)
    return BadInput(name + ": not a .npy file (missing \\x93NUMPY magic)");
  int major = p[6];
  size_t header_len, off;
  if (major == 1) {
    header_len = p[8] | (p[9] << 8);
    off = 10;
  } else if (major == 2 || major == 3) {
    if (size < 12) return BadInput(name + ": truncated .npy header");
    header_len = p[8] | (p[9] << 8) | (size_t(p[10]) << 16) | (size_t(p[11]) << 24);
    off = 12;
  } else {
    return BadInput(name + ": unsupported .npy format version " + std::to_string(major));
  }
  if (header_len > size - off) return BadInput(name + ": truncated .npy header");
  std::string h(reinterpret_cast<const char*>(p + off), header_len);
  std::string descr, fortran, shape_txt;
  if (!find_value(h, "descr", &descr) || !find_value(h, "fortran_order", &fortran) ||
      !find_value(h, "shape", &shape_txt))
    return BadInput(name + ": malformed .npy header: " + h);
  if (fortran.find("True") != std::string::npos)
    return BadInput(name + ": Fortran-order .npy arrays are not supported (save with C order)");
  TR_ASSIGN_OR_RETURN(DType dt, dtype_from_descr(descr, name));
  Shape shape;
  size_t i = 0;
  while (i < shape_txt.size()) {
    while (i < shape_txt.size() && (shape_txt[i] == ' ' || shape_txt[i] == ',')) ++i;
    if (i >= shape_txt.size()) break;
    if (shape_txt[i] < '0' || shape_txt[i] > '9')
      return BadInput(name + ": malformed .npy shape (" + shape_txt + ")");
    int64_t v = 0;
    while (i < shape_txt.size() && shape_txt[i] >= '0' && shape_txt[i] <= '9') {
      v = v * 10 + (shape_txt[i] - '0');
      if (v > (int64_t(1) << 40)) return BadInput(name + ": .npy dimension too large");
      ++i;
    }
    shape.push_back(v);
  }
  if (shape.size() > 8) return BadInput(name + ": .npy rank above 8 is not supported");
  // Checked element and byte counts (the header is untrusted); the file's own size then
  // bounds what is allocated.
  TR_ASSIGN_OR_RETURN(const int64_t numel, checked_numel(shape, name + ": .npy shape"));
  TR_ASSIGN_OR_RETURN(const size_t need,
                      checked_bytes(shape, dtype_size(dt), name + ": .npy shape"));
  size_t payload = off + header_len;
  if (size - payload < need)
    return BadInput(name + ": truncated .npy data: header says " + shape_str(shape) + " " +
                    dtype_name(dt) + " (" + std::to_string(need) + " bytes), file holds " +
                    std::to_string(size - payload));
  if (dt == DType::kFloat64) {
    Tensor t(DType::kFloat32, shape);
    const double* src = reinterpret_cast<const double*>(p + payload);
    float* dst = t.data<float>();
    for (int64_t k = 0; k < numel; ++k) {
      double v;
      std::memcpy(&v, src + k, 8);
      dst[k] = static_cast<float>(v);
    }
    return t;
  }
  Tensor t(dt, shape);
  std::memcpy(t.raw(), p + payload, need);
  return t;
}

Result<Tensor> read_npy(const std::string& path) {
  TR_ASSIGN_OR_RETURN(std::string bytes, read_file(path));
  return parse_npy(bytes.data(), bytes.size(), path);
}

Status write_npy(const std::string& path, const Tensor& t) {
  std::string shape = "(";
  for (size_t i = 0; i < t.rank(); ++i) shape += std::to_string(t.dim(i)) + ",";
  if (t.rank() > 1) shape.pop_back();
  shape += ")";
  std::string h = std::string("{'descr': '") + descr_of(t.dtype()) +
                  "', 'fortran_order': False, 'shape': " + shape + ", }";
  size_t total = 10 + h.size() + 1;
  h.append((64 - total % 64) % 64, ' ');
  h += '\n';
  std::string out = "\x93NUMPY";
  out += char(1);
  out += char(0);
  out += char(h.size() & 0xff);
  out += char((h.size() >> 8) & 0xff);
  out += h;
  out.append(static_cast<const char*>(t.raw()), t.nbytes());
  return write_file_atomic(path, out);
}

}  // namespace tr
