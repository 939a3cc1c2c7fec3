// Internal to src/io: small RAII wrappers and helpers around the FFmpeg C API.
#pragma once

#include <memory>
#include <opencv2/core.hpp>
#include <string>

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/audio_fifo.h>
#include <libavutil/avutil.h>
#include <libavutil/channel_layout.h>
#include <libavutil/error.h>
#include <libavutil/opt.h>
#include <libavutil/pixdesc.h>
#include <libswresample/swresample.h>
#include <libswscale/swscale.h>
}

namespace tr::io::av {

inline std::string err_str(int errnum) {
  char buf[AV_ERROR_MAX_STRING_SIZE] = {0};
  av_strerror(errnum, buf, sizeof buf);
  return buf;
}

struct FormatInputDeleter {
  void operator()(AVFormatContext* p) const { avformat_close_input(&p); }
};
struct CodecCtxDeleter {
  void operator()(AVCodecContext* p) const { avcodec_free_context(&p); }
};
struct FrameDeleter {
  void operator()(AVFrame* p) const { av_frame_free(&p); }
};
struct PacketDeleter {
  void operator()(AVPacket* p) const { av_packet_free(&p); }
};
struct SwsDeleter {
  void operator()(SwsContext* p) const { sws_freeContext(p); }
};
struct SwrDeleter {
  void operator()(SwrContext* p) const { swr_free(&p); }
};

using FormatInputPtr = std::unique_ptr<AVFormatContext, FormatInputDeleter>;
using CodecCtxPtr = std::unique_ptr<AVCodecContext, CodecCtxDeleter>;
using FramePtr = std::unique_ptr<AVFrame, FrameDeleter>;
using PacketPtr = std::unique_ptr<AVPacket, PacketDeleter>;
using SwsPtr = std::unique_ptr<SwsContext, SwsDeleter>;
using SwrPtr = std::unique_ptr<SwrContext, SwrDeleter>;

// FFmpeg logs to stderr by default; talkrender reports errors itself. Does nothing after
// set_ffmpeg_log_level(true).
void quiet_logs();

// Decoder/encoder thread count for `requested` (0 = one per core).
int thread_count(int requested);

}  // namespace tr::io::av

namespace tr::io {
// FFmpeg's own log: quiet (the default; errors are reported by talkrender), or on stderr
// at info level (the CLI's --verbose). Process-wide.
void set_ffmpeg_log_level(bool verbose);

// True when `m` is a continuous rows x cols CV_8UC3 image followed by enough spare bytes
// for swscale's vector loads/stores (see allocate_bgr_frame in video_reader.h).
bool has_padding(const cv::Mat& m, int rows, int cols);
}  // namespace tr::io
