// The talkrender subcommands. Each lives in its own cmd_<name>.cc, parses its own flags
// (CLI11) and returns the process exit code: 0 ok, 2 bad input or usage, 3 runtime or I/O
// failure, 130 interrupted (see common/status.h).
#pragma once

namespace tr::cli {

// argv[0] is the subcommand name.
int cmd_render(int argc, char** argv);
int cmd_inspect(int argc, char** argv);
int cmd_demo(int argc, char** argv);
int cmd_bench(int argc, char** argv);
int cmd_infer(int argc, char** argv);
int cmd_infer_bench(int argc, char** argv);
int cmd_mel(int argc, char** argv);
int cmd_features(int argc, char** argv);
int cmd_package(int argc, char** argv);
int cmd_sync_check(int argc, char** argv);
int cmd_worker(int argc, char** argv);
int cmd_submit(int argc, char** argv);
int cmd_jobs(int argc, char** argv);
int cmd_serve(int argc, char** argv);

}  // namespace tr::cli
