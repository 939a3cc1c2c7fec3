// Fuzz target: PyTorch .pth checkpoints (nn/checkpoint/pth_reader.h) and the pickle reader
// behind them.
//
// Byte 0 picks the form. Bit 0 clear: the rest is a whole .pth file. Bit 0 set: the rest is
// a data.pkl, put into a zip here beside fixed storages (data/0: 16 floats, data/1: 3
// halves, data/2: empty, data/3: 64 int64s), so that mutations reach the pickle reader and
// the tensor views instead of stopping at the zip's CRC checks.
#include <zip.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "nn/checkpoint/pth_reader.h"

namespace {

// Writes a zip of `entries` (name, bytes), stored uncompressed as torch.save does, into a
// string; "" on any libzip failure.
std::string make_zip(const std::vector<std::pair<std::string, std::string>>& entries) {
  zip_error_t err;
  zip_error_init(&err);
  zip_source_t* buf = zip_source_buffer_create(nullptr, 0, 0, &err);
  zip_error_fini(&err);
  if (!buf) return "";
  zip_source_keep(buf);  // zip_close must leave the written buffer for us to read
  zip_t* za = zip_open_from_source(buf, ZIP_TRUNCATE, nullptr);
  if (!za) {
    zip_source_free(buf);
    return "";
  }
  for (const auto& [name, data] : entries) {
    zip_source_t* s = zip_source_buffer(za, data.data(), data.size(), 0);
    const zip_int64_t i = s ? zip_file_add(za, name.c_str(), s, ZIP_FL_OVERWRITE) : -1;
    if (i < 0) {
      if (s) zip_source_free(s);
      zip_discard(za);
      zip_source_free(buf);
      return "";
    }
    zip_set_file_compression(za, static_cast<zip_uint64_t>(i), ZIP_CM_STORE, 0);
  }
  if (zip_close(za) != 0) {
    zip_discard(za);
    zip_source_free(buf);
    return "";
  }
  std::string out;
  if (zip_source_open(buf) == 0) {
    char chunk[4096];
    zip_int64_t n;
    while ((n = zip_source_read(buf, chunk, sizeof chunk)) > 0) {
      out.append(chunk, static_cast<size_t>(n));
    }
    zip_source_close(buf);
  }
  zip_source_free(buf);
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const std::string rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  std::string file = rest;
  if (data[0] & 1) {
    file = make_zip({{"f/data.pkl", rest},
                     {"f/data/0", std::string(16 * 4, '\x3f')},
                     {"f/data/1", std::string(3 * 2, '\x3c')},
                     {"f/data/2", std::string()},
                     {"f/data/3", std::string(64 * 8, '\x01')},
                     {"f/version", "3\n"}});
    if (file.empty()) return 0;
  }
  auto sd = tr::nn::read_pth_bytes(file, "fuzz.pth");
  if (sd.ok()) {
    // Every tensor must really hold what its shape says: read its last element.
    for (const auto& [name, t] : sd->entries) {
      if (t.numel() > 0) {
        volatile float last = t.data<float>()[t.numel() - 1];
        (void)last;
      }
    }
  }
  return 0;
}
