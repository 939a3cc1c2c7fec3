// The render options that `talkrender render` takes as flags and a farm job
// (farm/job.h) takes as JSON fields, checked here once, so both refuse the same values
// with the same message and a farm render is the render the same flags would give.
#pragma once

#include <cstdint>
#include <string>

#include "common/status.h"
#include "render/render_job.h"

namespace tr::render {

// `name` is how the caller's user wrote the option ("--batch", or a job's "batch").
// Each checks its value (kBadInput naming `name` and the value) and sets it in *o.
Status set_batch_option(RenderJobOptions* o, int64_t batch, const std::string& name);
Status set_frames_option(RenderJobOptions* o, int64_t frames, const std::string& name);
Status set_crf_option(RenderJobOptions* o, int64_t crf, const std::string& name);
Status set_format_option(RenderJobOptions* o, const std::string& format, const std::string& name);
Status set_precision_option(RenderJobOptions* o, const std::string& precision,
                            const std::string& name);

}  // namespace tr::render
