// Fuzz target: the precomputed-feature reader (audio::read_feature_file) for both forms it
// takes: a .npy file, or a raw float32 .bin with its .json shape sidecar.
//
// Input layout: byte 0 picks the form and the expected block size; for .bin, the rest is
// "<sidecar json>\0<bin bytes>" (no NUL: the whole rest is the .bin and there is no
// sidecar). The reader takes paths, so the parts are written to a private temp folder.
#include <sys/stat.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>

#include "audio/audio.h"

namespace {

const std::string& scratch_dir() {
  static const std::string dir = [] {
    std::string d = "/tmp/tr_fuzz_features_" + std::to_string(::getpid());
    mkdir(d.c_str(), 0700);
    return d;
  }();
  return dir;
}

void write_all(const std::string& path, const uint8_t* data, size_t size) {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) return;
  if (size) std::fwrite(data, 1, size, f);
  std::fclose(f);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t mode = data[0];
  const int64_t blocks[] = {0, 512, 2048, 8192};
  const int64_t expected_block = blocks[(mode >> 1) & 3];
  const uint8_t* rest = data + 1;
  const size_t rest_size = size - 1;
  const std::string dir = scratch_dir();
  const std::string npy = dir + "/f.npy", bin = dir + "/f.bin", json = dir + "/f.json";
  std::remove(json.c_str());
  std::string path;
  if (mode & 1) {
    write_all(npy, rest, rest_size);
    path = npy;
  } else {
    const void* nul = std::memchr(rest, 0, rest_size);
    if (nul) {
      const size_t json_size = static_cast<const uint8_t*>(nul) - rest;
      write_all(json, rest, json_size);
      write_all(bin, rest + json_size + 1, rest_size - json_size - 1);
    } else {
      write_all(bin, rest, rest_size);
    }
    path = bin;
  }
  auto t = tr::audio::read_feature_file(path, expected_block);
  if (t.ok() && t->numel() > 0) {
    volatile float last = t->data<float>()[t->numel() - 1];
    (void)last;
  }
  return 0;
}
