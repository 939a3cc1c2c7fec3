// PLACEHOLDER: replaced by the component that implements this command.
#include <cstdio>

#include "cli/commands.h"

namespace tr::cli {
int cmd_demo(int, char**) {
  std::fprintf(stderr, "talkrender: 'demo' is not built yet\n");
  return 3;
}
}  // namespace tr::cli
