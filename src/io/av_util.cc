#include "io/av_util.h"

#include <algorithm>
#include <atomic>
#include <thread>

namespace tr::io::av {
namespace {
std::atomic<bool> g_verbose_logs{false};
}  // namespace

void quiet_logs() {
  if (!g_verbose_logs.load()) av_log_set_level(AV_LOG_QUIET);
}

int thread_count(int requested) {
  if (requested > 0) return requested;
  return std::max(1u, std::thread::hardware_concurrency());
}

}  // namespace tr::io::av

namespace tr::io {

void set_ffmpeg_log_level(bool verbose) {
  av::g_verbose_logs.store(verbose);
  av_log_set_level(verbose ? AV_LOG_INFO : AV_LOG_QUIET);
}

}  // namespace tr::io
