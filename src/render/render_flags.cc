#include "render/render_flags.h"

#include <fmt/format.h>

#include <climits>

namespace tr::render {

Status set_batch_option(RenderJobOptions* o, int64_t batch, const std::string& name) {
  if (batch < 1) {
    return BadInput(
        fmt::format("{} must be >= 1, got {} (leave it out for the default)", name, batch));
  }
  // Any size is taken (the job caps it at the frames to render); only the int must hold it.
  if (batch > INT_MAX) return BadInput(fmt::format("{} is too large: {}", name, batch));
  o->batch = static_cast<int>(batch);
  return Status::Ok();
}

Status set_frames_option(RenderJobOptions* o, int64_t frames, const std::string& name) {
  if (frames < 1) return BadInput(fmt::format("{} must be >= 1, got {}", name, frames));
  o->frames = frames;
  return Status::Ok();
}

Status set_crf_option(RenderJobOptions* o, int64_t crf, const std::string& name) {
  if (crf < 0 || crf > 51) {
    return BadInput(fmt::format("{} must be an x264 CRF in 0..51, got {}", name, crf));
  }
  o->crf = static_cast<int>(crf);
  return Status::Ok();
}

Status set_format_option(RenderJobOptions* o, const std::string& format, const std::string& name) {
  if (format != "png" && format != "jpg") {
    return BadInput(fmt::format("{} must be png or jpg, got '{}'", name, format));
  }
  o->image_format = format;
  return Status::Ok();
}

Status set_precision_option(RenderJobOptions* o, const std::string& precision,
                            const std::string& name) {
  auto p = nn::parse_precision(precision);
  if (!p.ok()) return BadInput(name + ": " + p.error().message);
  o->precision = *p;
  return Status::Ok();
}

}  // namespace tr::render
