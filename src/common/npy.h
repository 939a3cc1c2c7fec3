// NumPy .npy files (format versions 1.0-3.0, little-endian, C order).
#pragma once

#include <string>

#include "common/status.h"
#include "common/tensor.h"

namespace tr {

// Reads float32/float64/int64/int32/uint8/bool arrays. float64 is converted to float32.
// Errors name the file and say what is wrong with it.
Result<Tensor> read_npy(const std::string& path);
// Parses an in-memory .npy image (used by read_npy and the fuzz targets).
Result<Tensor> parse_npy(const void* data, size_t size, const std::string& name);
// Writes through a temporary file renamed into place, so a failed write leaves nothing.
Status write_npy(const std::string& path, const Tensor& t);

}  // namespace tr
