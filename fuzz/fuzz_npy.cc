// Fuzz target: the in-memory .npy parser (common/npy.h).
#include <cstddef>
#include <cstdint>

#include "common/npy.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto t = tr::parse_npy(data, size, "fuzz.npy");
  if (t.ok()) {
    // The tensor must really hold what its shape says: read its last byte.
    const size_t bytes = t->nbytes();
    if (bytes > 0) {
      volatile uint8_t last = static_cast<const uint8_t*>(t->raw())[bytes - 1];
      (void)last;
    }
  }
  return 0;
}
