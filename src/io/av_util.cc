#include "io/av_util.h"

#include <algorithm>
#include <thread>

namespace tr::io::av {

void quiet_logs() { av_log_set_level(AV_LOG_QUIET); }

int thread_count(int requested) {
  if (requested > 0) return requested;
  return std::max(1u, std::thread::hardware_concurrency());
}

}  // namespace tr::io::av
