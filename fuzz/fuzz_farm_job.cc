// Fuzz target: the render farm's job JSON (farm/job.h), as a worker reads it from a Redis
// stream entry. Byte 0 bit 0: whether the entry carries audio bytes; the rest is the
// "job" field. Paths are only checked here (resolving touches the file system).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "farm/job.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const bool inline_audio = data[0] & 1;
  const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  auto job = tr::farm::parse_job(text, inline_audio);
  if (job.ok()) {
    // What a worker does next with a parsed job, short of the file system.
    (void)job->canonical_json();
    tr::render::RenderJobOptions o;
    (void)tr::farm::apply_job_options(*job, &o);
    (void)tr::farm::is_safe_component(job->avatar, false);
  }
  (void)tr::farm::fnv1a64_hex(text);
  return 0;
}
