// Per-thread scheduling priority for helper threads that share the cores with the runtime.
#pragma once

namespace tr {

// Adds `nice` (> 0) to the calling thread's nice value, capped at 19 (Linux keeps one per
// thread; threads this one creates afterwards inherit it). 0 or less does nothing. Failure
// (a sandbox forbidding it) only costs speed, so it is ignored.
void lower_this_thread_priority(int nice);

}  // namespace tr
