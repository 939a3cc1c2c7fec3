// PNG through libpng directly, not cv::imwrite. Why: cv::imwrite lives in
// libopencv_imgcodecs, which pulls in GDAL, Poppler, HDF5, OpenBLAS and about 80 other
// shared libraries; every talkrender process loaded and relocated them at start (about
// 0.13 s of CPU and 30 MB resident, `talkrender --help` included) for this one call.
#include "io/png_file.h"

#include <png.h>
#include <sys/stat.h>

#include <csetjmp>
#include <cstdio>

namespace tr::io {
namespace {

struct ErrorState {
  char message[256];
};

// libpng's default error handler prints and longjmps to png_jmpbuf; keep the message.
void on_error(png_structp png, png_const_charp msg) {
  auto* st = static_cast<ErrorState*>(png_get_error_ptr(png));
  std::snprintf(st->message, sizeof(st->message), "%s", msg);
  png_longjmp(png, 1);
}
void on_warning(png_structp, png_const_charp) {}

// Only trivially destructible locals live between setjmp and longjmp here, so the jump
// skips no destructor. Returns false with `st.message` set on failure.
bool encode(std::FILE* file, const cv::Mat& bgr, int compression, ErrorState& st) {
  st.message[0] = '\0';
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &st, on_error, on_warning);
  if (!png) {
    std::snprintf(st.message, sizeof(st.message), "out of memory");
    return false;
  }
  png_infop info = png_create_info_struct(png);
  if (!info || setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, info ? &info : nullptr);
    return false;
  }
  png_init_io(png, file);
  png_set_IHDR(png, info, static_cast<png_uint_32>(bgr.cols), static_cast<png_uint_32>(bgr.rows), 8,
               PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  png_set_compression_level(png, compression);
  png_write_info(png, info);
  png_set_bgr(png);  // our rows are BGR; libpng swaps while writing
  for (int y = 0; y < bgr.rows; ++y) {
    png_write_row(png, const_cast<png_bytep>(bgr.ptr<unsigned char>(y)));
  }
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  return true;
}

}  // namespace

Status write_png_bgr(const std::string& path, const cv::Mat& bgr, int compression) {
  if (bgr.empty() || bgr.type() != CV_8UC3) return BadInput(path + ": frame is not 8-bit BGR");
  if (compression < 0 || compression > 9)
    return BadInput(path + ": PNG compression " + std::to_string(compression) + " is not in 0..9");
  std::FILE* file = std::fopen(path.c_str(), "wb");
  if (!file) return RuntimeError(path + ": cannot create file");
  ErrorState st;
  const bool encoded = encode(file, bgr, compression, st);
  const bool written = !std::ferror(file);
  const bool closed = std::fclose(file) == 0;
  if (encoded && written && closed) return Status::Ok();
  // Only a regular file we created is removed (not, say, /dev/full given as the path).
  struct stat s {};
  if (::stat(path.c_str(), &s) == 0 && S_ISREG(s.st_mode)) std::remove(path.c_str());
  if (!encoded) return RuntimeError(path + ": PNG encoding failed: " + st.message);
  return RuntimeError(path + ": cannot write file (disk full?)");
}

}  // namespace tr::io
