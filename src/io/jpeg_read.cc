// Reading JPEG frames (dataset folders' full_body_img/{i}.jpg) through libjpeg-turbo.
//
// Why not keep BGR: a dataset avatar is held in RAM like a package's video, and BGR is
// twice the bytes of the 4:2:0 planes the JPEG holds. libjpeg can hand out those planes
// (raw_data_out) but has no public call that upsamples and converts them later the way its
// full decode does (tj3DecodeYUV8 uses plain, not fancy, upsampling), so
// jpeg_frame_to_bgr redoes libjpeg-turbo's jdsample.c h2v2 "fancy" upsampling and
// jdcolor.c YCbCr -> RGB tables here. libjpeg-turbo's SIMD paths are bit-exact with that C
// code (its test suite checks the same MD5s with and without SIMD), and the dataset tests
// compare the result with cv2.imread byte for byte.
#include <cstdio>
#include <cstring>
#include <opencv2/core/hal/hal.hpp>

#include "io/av_util.h"
#include "io/jpeg_file.h"
#include "io/jpeg_internal.h"
#include "io/video_reader.h"

namespace tr::io {
namespace {

// The planes libjpeg delivers have whole blocks; `scratch` holds them at that size.
struct RawPlanes {
  std::vector<uint8_t> scratch[3];
  std::vector<JSAMPROW> rows[3];
  int stride[3] = {0, 0, 0};
};

enum class Mode { kCompact, kBgr, kHeader };

// Only trivially destructible locals live between setjmp and longjmp; the containers it
// fills belong to the caller. Returns false with err.message set on failure.
bool decode(const std::string& bytes, Mode mode, JpegFrame& out, RawPlanes& raw,
            JpegErrorManager& err) {
  jpeg_decompress_struct cinfo;
  // Warnings are errors: a frame that decodes to something else than the writer's pixels
  // must not render silently.
  cinfo.err = setup_jpeg_errors(err, true);
  if (setjmp(err.jump)) {
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, reinterpret_cast<const unsigned char*>(bytes.data()),
               static_cast<unsigned long>(bytes.size()));
  jpeg_read_header(&cinfo, TRUE);
  // Frames beyond 16k x 16k are refused before any allocation (a hostile header).
  if (cinfo.image_width > 16384 || cinfo.image_height > 16384) {
    std::snprintf(err.message, sizeof(err.message), "%ux%u is larger than 16384x16384",
                  cinfo.image_width, cinfo.image_height);
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  const auto& c = cinfo.comp_info;
  const bool ycc = cinfo.num_components == 3 && cinfo.jpeg_color_space == JCS_YCbCr &&
                   !cinfo.CCIR601_sampling && c[1].h_samp_factor == 1 && c[1].v_samp_factor == 1 &&
                   c[2].h_samp_factor == 1 && c[2].v_samp_factor == 1;
  const bool is420 = ycc && c[0].h_samp_factor == 2 && c[0].v_samp_factor == 2;
  const bool is444 = ycc && c[0].h_samp_factor == 1 && c[0].v_samp_factor == 1;
  // Tiny images take libjpeg's special cases (a one-sample chroma row): keep BGR.
  const bool raw_ok = mode == Mode::kCompact && (is420 || is444) && cinfo.image_width >= 8 &&
                      cinfo.image_height >= 8;
  out.width = static_cast<int>(cinfo.image_width);
  out.height = static_cast<int>(cinfo.image_height);
  if (mode == Mode::kHeader) {
    jpeg_destroy_decompress(&cinfo);
    return true;
  }
  if (raw_ok) {
    cinfo.raw_data_out = TRUE;
    jpeg_start_decompress(&cinfo);
    out.kind = is420 ? JpegFrame::Kind::kYuv420 : JpegFrame::Kind::kYuv444;
    const int rows_per_call = cinfo.max_v_samp_factor * DCTSIZE;
    const int imcu_rows = static_cast<int>(cinfo.total_iMCU_rows);
    for (int i = 0; i < 3; ++i) {
      const auto& ci = cinfo.comp_info[i];
      raw.stride[i] = static_cast<int>(ci.width_in_blocks) * DCTSIZE;
      const size_t plane_rows = static_cast<size_t>(imcu_rows) * ci.v_samp_factor * DCTSIZE;
      raw.scratch[i].resize(plane_rows * raw.stride[i]);
      raw.rows[i].resize(plane_rows);
      for (size_t r = 0; r < plane_rows; ++r)
        raw.rows[i][r] = raw.scratch[i].data() + r * raw.stride[i];
    }
    for (int m = 0; m < imcu_rows; ++m) {
      JSAMPARRAY planes[3];
      for (int i = 0; i < 3; ++i)
        planes[i] = raw.rows[i].data() +
                    static_cast<size_t>(m) * cinfo.comp_info[i].v_samp_factor * DCTSIZE;
      jpeg_read_raw_data(&cinfo, planes, static_cast<JDIMENSION>(rows_per_call));
    }
    out.chroma_width = static_cast<int>(cinfo.comp_info[1].downsampled_width);
    out.chroma_height = static_cast<int>(cinfo.comp_info[1].downsampled_height);
    const size_t luma = static_cast<size_t>(out.width) * out.height;
    const size_t chroma = static_cast<size_t>(out.chroma_width) * out.chroma_height;
    out.data.resize(luma + 2 * chroma);
    uint8_t* dst = out.data.data();
    for (int i = 0; i < 3; ++i) {
      const int w = i == 0 ? out.width : out.chroma_width;
      const int h = i == 0 ? out.height : out.chroma_height;
      for (int r = 0; r < h; ++r, dst += w) std::memcpy(dst, raw.rows[i][r], w);
    }
  } else {
    cinfo.out_color_space = JCS_EXT_BGR;
    jpeg_start_decompress(&cinfo);
    out.kind = JpegFrame::Kind::kBgr;
    const size_t row_bytes = static_cast<size_t>(out.width) * 3;
    out.data.resize(row_bytes * out.height);
    while (cinfo.output_scanline < cinfo.output_height) {
      JSAMPROW row = out.data.data() + row_bytes * cinfo.output_scanline;
      jpeg_read_scanlines(&cinfo, &row, 1);
    }
  }
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  return true;
}

Result<JpegFrame> decode_as(const std::string& bytes, const std::string& source_name, Mode mode) {
  if (bytes.size() < 4 || static_cast<unsigned char>(bytes[0]) != 0xFF ||
      static_cast<unsigned char>(bytes[1]) != 0xD8)
    return BadInput(source_name + ": not a JPEG file");
  JpegFrame out;
  RawPlanes raw;
  JpegErrorManager err;
  if (!decode(bytes, mode, out, raw, err))
    return BadInput(source_name + ": cannot decode JPEG: " + err.message);
  return out;
}

// The hot loops below are written planar so the compiler vectorises them; GCC also builds
// an AVX2 copy picked at load time (the baseline build targets SSE2 only).
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define TR_VECTOR_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define TR_VECTOR_CLONES
#endif

// jdcolor.c build_ycc_rgb_table, computed instead of looked up (the same integers):
// 16-bit fixed point constants FIX(x) = round(x * 65536), ONE_HALF rounding, >> 16.
constexpr int kCrR = 91881;   // FIX(1.40200)
constexpr int kCbB = 116130;  // FIX(1.77200)
constexpr int kCrG = 46802;   // FIX(0.71414)
constexpr int kCbG = 22554;   // FIX(0.34414)
constexpr int kHalf = 1 << 15;

inline int clamp255(int v) { return v < 0 ? 0 : (v > 255 ? 255 : v); }

// One row of YCbCr -> planar B, G, R (jdcolext.c ycc_rgb_convert).
TR_VECTOR_CLONES void convert_row(const uint8_t* __restrict y, const uint8_t* __restrict cb,
                                  const uint8_t* __restrict cr, int width, uint8_t* __restrict b,
                                  uint8_t* __restrict g, uint8_t* __restrict r) {
  for (int x = 0; x < width; ++x) {
    const int yy = y[x], u = cb[x] - 128, v = cr[x] - 128;
    r[x] = static_cast<uint8_t>(clamp255(yy + ((kCrR * v + kHalf) >> 16)));
    g[x] = static_cast<uint8_t>(clamp255(yy + ((-kCbG * u + kHalf - kCrG * v) >> 16)));
    b[x] = static_cast<uint8_t>(clamp255(yy + ((kCbB * u + kHalf) >> 16)));
  }
}

// jdsample.c h2v2_fancy_upsample for one output row: vertically 3/4 of the nearer chroma
// row plus 1/4 of the further one (the edge row repeated beyond the image), then
// horizontally 3:1 with libjpeg's alternating rounding bias (8 and 7, >> 4). libjpeg's
// first and last columns (4 * sum) are the same formula with the edge sum repeated, which
// `cs` holds at both ends: cs[i + 1] is the column sum of chroma column i.
TR_VECTOR_CLONES void upsample_row(const uint8_t* __restrict near, const uint8_t* __restrict far,
                                   int cw, int* __restrict cs, uint8_t* __restrict out) {
  for (int i = 0; i < cw; ++i) cs[i + 1] = near[i] * 3 + far[i];
  cs[0] = cs[1];
  cs[cw + 1] = cs[cw];
  for (int i = 0; i < cw; ++i) {
    out[2 * i] = static_cast<uint8_t>((cs[i + 1] * 3 + cs[i] + 8) >> 4);
    out[2 * i + 1] = static_cast<uint8_t>((cs[i + 1] * 3 + cs[i + 2] + 7) >> 4);
  }
}

// Planar B, G, R rows -> one interleaved BGR row (OpenCV's SIMD merge).
void interleave(const uint8_t* b, const uint8_t* g, const uint8_t* r, int width, uint8_t* bgr) {
  const uchar* planes[3] = {b, g, r};
  cv::hal::merge8u(planes, bgr, width, 3);
}

}  // namespace

Result<JpegFrame> decode_jpeg_compact(const std::string& bytes, const std::string& source_name) {
  return decode_as(bytes, source_name, Mode::kCompact);
}

Result<cv::Size> probe_jpeg_size(const std::string& bytes, const std::string& source_name) {
  TR_ASSIGN_OR_RETURN(JpegFrame f, decode_as(bytes, source_name, Mode::kHeader));
  return cv::Size(f.width, f.height);
}

Result<cv::Mat> decode_jpeg_bgr(const std::string& bytes, const std::string& source_name) {
  TR_ASSIGN_OR_RETURN(JpegFrame f, decode_as(bytes, source_name, Mode::kBgr));
  cv::Mat out;
  jpeg_frame_to_bgr(f, out);
  return out;
}

void jpeg_frame_to_bgr(const JpegFrame& f, cv::Mat& out) {
  if (!has_padding(out, f.height, f.width)) out = allocate_bgr_frame(f.height, f.width);
  const int w = f.width, h = f.height;
  if (f.kind == JpegFrame::Kind::kBgr) {
    for (int r = 0; r < h; ++r)
      std::memcpy(out.ptr(r), f.data.data() + static_cast<size_t>(r) * w * 3,
                  static_cast<size_t>(w) * 3);
    return;
  }
  const uint8_t* yp = f.data.data();
  const size_t chroma = static_cast<size_t>(f.chroma_width) * f.chroma_height;
  const uint8_t* cbp = yp + static_cast<size_t>(w) * h;
  const uint8_t* crp = cbp + chroma;
  const int cw = f.chroma_width, ch = f.chroma_height;
  // Per-call scratch: B, G, R rows, upsampled Cb and Cr rows (2 * cw >= w), column sums.
  std::vector<uint8_t> rows(static_cast<size_t>(w) * 3 + static_cast<size_t>(cw) * 4);
  uint8_t* b = rows.data();
  uint8_t* g = b + w;
  uint8_t* rr = g + w;
  uint8_t* cb_row = rr + w;
  uint8_t* cr_row = cb_row + 2 * static_cast<size_t>(cw);
  std::vector<int> cs(static_cast<size_t>(cw) + 2);
  for (int r = 0; r < h; ++r) {
    const uint8_t* y_row = yp + static_cast<size_t>(r) * w;
    if (f.kind == JpegFrame::Kind::kYuv444) {
      convert_row(y_row, cbp + static_cast<size_t>(r) * w, crp + static_cast<size_t>(r) * w, w, b,
                  g, rr);
    } else {
      const int c = r >> 1;
      const int other = (r & 1) ? std::min(c + 1, ch - 1) : std::max(c - 1, 0);
      const size_t near_off = static_cast<size_t>(c) * cw;
      const size_t far_off = static_cast<size_t>(other) * cw;
      upsample_row(cbp + near_off, cbp + far_off, cw, cs.data(), cb_row);
      upsample_row(crp + near_off, crp + far_off, cw, cs.data(), cr_row);
      convert_row(y_row, cb_row, cr_row, w, b, g, rr);
    }
    interleave(b, g, rr, w, out.ptr(r));
  }
}

}  // namespace tr::io
