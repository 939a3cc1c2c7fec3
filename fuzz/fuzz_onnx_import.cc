// Fuzz target: the ONNX importer and the graph passes (folding, fusion) on arbitrary bytes.
// Model::load_from_bytes must return an error for anything it cannot take, never crash.
#include <cstddef>
#include <cstdint>
#include <string>

#include "nn/nn.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  // Once with the passes (what render does) and once without, so the importer's own
  // checks are reached even where a pass would reject the graph first.
  for (bool optimize : {true, false}) {
    tr::nn::LoadOptions opts;
    opts.optimize = optimize;
    auto model = tr::nn::Model::load_from_bytes(bytes, "fuzz.onnx", opts);
    if (model.ok()) {
      // Touch what callers read after a successful load.
      size_t n = 0;
      for (const auto& t : (*model)->inputs()) n += t.name.size() + t.shape.size();
      for (const auto& t : (*model)->outputs()) n += t.name.size() + t.shape.size();
      (void)n;
    }
  }
  return 0;
}
