// Internal to src/io's libjpeg users (jpeg_file.cc writes, jpeg_read.cc reads): the error
// manager both install, so a libjpeg error comes back as a message instead of exit().
#pragma once

#include <csetjmp>
#include <cstdio>

// jpeglib.h uses FILE and size_t without including their headers: after <cstdio>.
#include <jpeglib.h>

namespace tr::io {

// libjpeg reports errors through error_exit, which by default prints and calls exit().
// The one set up here formats the message into `message` and longjmps to `jump`; the caller
// calls setjmp(jump) itself (it must be in the function that holds the libjpeg state).
struct JpegErrorManager {
  jpeg_error_mgr base;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

// Resets `err` and returns what to put in cinfo.err. With `warnings_are_errors` libjpeg's
// warnings (a corrupt but decodable stream) jump too. Defined in jpeg_file.cc.
jpeg_error_mgr* setup_jpeg_errors(JpegErrorManager& err, bool warnings_are_errors);

}  // namespace tr::io
