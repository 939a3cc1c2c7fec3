#include "common/thread_priority.h"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>

namespace tr {

void lower_this_thread_priority(int nice) {
  if (nice <= 0) return;
  const pid_t tid = static_cast<pid_t>(::syscall(SYS_gettid));
  const int current = ::getpriority(PRIO_PROCESS, static_cast<id_t>(tid));
  (void)::setpriority(PRIO_PROCESS, static_cast<id_t>(tid), std::min(19, current + nice));
}

}  // namespace tr
