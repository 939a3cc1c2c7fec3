// talkrender: speech audio + avatar package -> lip-synced talking-head video.
#include <unistd.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "cli/commands.h"
#include "common/interrupt.h"
#include "io/av_util.h"

namespace {

struct Command {
  const char* name;
  const char* summary;
  int (*run)(int, char**);
};

// The one table of subcommands: names, help and dispatch.
constexpr Command kCommands[] = {
    {"render", "render an avatar package + speech to MP4 or an image sequence",
     tr::cli::cmd_render},
    {"inspect", "describe an avatar package: frames, size, rects, models", tr::cli::cmd_inspect},
    {"demo", "render a synthetic avatar with the small trained demo model (no data needed)",
     tr::cli::cmd_demo},
    {"bench", "pipeline benchmark: the batch x workers table", tr::cli::cmd_bench},
    {"infer", "run an ONNX model on .npy inputs", tr::cli::cmd_infer},
    {"infer-bench", "time a model's inference at several batch sizes", tr::cli::cmd_infer_bench},
    {"mel", "audio file -> normalised mel spectrogram [80, T] (.npy)", tr::cli::cmd_mel},
    {"features", "audio file -> padded audio-encoder features [n+2, 512] (.npy)",
     tr::cli::cmd_features},
    {"package", "dataset folder (full_body_img/, landmarks/) -> avatar package",
     tr::cli::cmd_package},
    {"sync-check", "estimate a talking-head video's audio/video offset (lip sync)",
     tr::cli::cmd_sync_check},
    {"worker", "render farm worker: render jobs from a Redis stream", tr::cli::cmd_worker},
    {"submit", "put a render job on the farm's Redis stream", tr::cli::cmd_submit},
    {"jobs", "list the farm's pending, running, done and dead jobs", tr::cli::cmd_jobs},
    {"serve", "live talking-head sessions over HTTP + WebSocket (docs/serve.md)",
     tr::cli::cmd_serve},
};

void usage(FILE* out) {
  std::fprintf(out,
               "talkrender: lip-synced talking-head video from speech audio\n\n"
               "usage: talkrender <command> [options]   (talkrender <command> --help)\n"
               "       talkrender --version | --help\n\n"
               "commands:\n");
  for (const auto& c : kCommands) std::fprintf(out, "  %-12s %s\n", c.name, c.summary);
  std::fprintf(out,
               "\noptions:\n"
               "  --help       this list\n"
               "  --version    the version\n"
               "\nexit codes: 0 ok, 2 bad input or usage, 3 runtime or I/O failure, "
               "130 interrupted\n");
}

}  // namespace

int main(int argc, char** argv) {
  // The cpu backend's oneDNN runs on libgomp, which by default spins ~300000 times at each
  // barrier. On a CPU shared with other work (or with other inference threads) the spinning
  // thread starves its partner: a 320 generator frame took 4.0 s instead of 1.1 s at load 20
  // on the 2-core build host (ORT: 3.1 s). Not spinning at all (OMP_WAIT_POLICY=PASSIVE)
  // puts a futex wake-up between every two of the plan's ~70 primitives: the 160 generator
  // at batch 1 took 46 ms a frame against 34 spinning (2-core Xeon, AVX-512). A short spin,
  // 3000 rounds (libgomp reckons 100000 a millisecond), keeps the steps back to back without
  // the starvation: with 4 busy processes beside it that frame took 126-133 ms, against
  // 150 passive, 148-151 with 10000 rounds and 265-280 with 30000. libgomp reads these only
  // when it loads, so set them and re-exec once, unless the user chose a policy.
  if (!std::getenv("OMP_WAIT_POLICY") && !std::getenv("GOMP_SPINCOUNT")) {
    setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
    setenv("GOMP_SPINCOUNT", "3000", 1);  // overrides PASSIVE's 0
    execv("/proc/self/exe", argv);        // returns only on failure: then go on as we are
  }
#ifdef __GLIBC__
  // Buffers of 128 KiB and more (weights, frames, tensors) are mapped on their own and go
  // back to the system when freed. glibc's default raises this threshold each time such a
  // block is freed, after which large blocks come from the heap, where freed ones stay
  // resident: the weights the runtime lets go after compiling, the decoder's frames. Fixed,
  // a 60-frame render peaked 58 MiB lower (547 -> 490 MiB). The cost, a few page faults
  // per large allocation, is nothing next to a frame's inference.
  mallopt(M_MMAP_THRESHOLD, 128 * 1024);
#endif
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h") ||
      !std::strcmp(argv[1], "help")) {
    usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  if (!std::strcmp(argv[1], "--version")) {
    std::printf("talkrender 0.1.0\n");
    return 0;
  }
  tr::install_interrupt_handlers();
  // FFmpeg's own log stays quiet (talkrender reports errors itself); a command's --verbose
  // turns it on.
  tr::io::set_ffmpeg_log_level(false);
  for (const auto& c : kCommands) {
    if (std::string(argv[1]) == c.name) return c.run(argc - 1, argv + 1);
  }
  std::fprintf(stderr, "talkrender: unknown command '%s' (see talkrender --help)\n", argv[1]);
  return 2;
}
