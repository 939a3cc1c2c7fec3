// SIGINT/SIGTERM handling: the handler only sets a flag; long-running loops poll
// interrupted() and unwind, removing their temporary files, then the CLI exits 130.
#pragma once

namespace tr {

void install_interrupt_handlers();
bool interrupted();
// For tests: raise or clear the flag by hand.
void set_interrupted(bool v);

}  // namespace tr
