// Internal to src/io: the demuxer + decoder of one video stream and the BGR converter that
// reproduces the ffmpeg CLI's `-pix_fmt bgr24` pixels. Shared by video_reader.cc (BGR
// frames) and frame_store.cc (compact YUV frames converted on demand).
#pragma once

#include <string>

#include "common/status.h"
#include "io/av_util.h"
#include "io/video_reader.h"

namespace tr::io {

inline std::string pix_fmt_name(int fmt) {
  const char* name = av_get_pix_fmt_name(static_cast<AVPixelFormat>(fmt));
  return name ? name : "unknown";
}

// vf_scale's parse_yuv_type("auto", frame colorspace): invalid/unknown -> BT.601.
inline const int* coefficients_for(AVColorSpace cs) {
  int c = static_cast<int>(cs);
  if (c < 1 || c > 10 || c == 8) c = AVCOL_SPC_BT470BG;
  return sws_getCoefficients(c);
}

// swscale's SIMD BGR writers store whole vectors and may run a few bytes past the end of
// the last row; a buffer allocated to the exact size would have its heap neighbour
// overwritten. Frames therefore live in a buffer with spare rows after the image.
inline constexpr size_t kWritePadding = 64;

// One swscale context, rebuilt when the input geometry/format/colour tags change.
class BgrConverter {
 public:
  Status convert(const AVFrame* f, cv::Mat& out, const std::string& path) {
    if (!ctx_ || f->width != w_ || f->height != h_ || f->format != fmt_ || f->colorspace != cs_ ||
        f->color_range != range_) {
      ctx_.reset(sws_getContext(f->width, f->height, static_cast<AVPixelFormat>(f->format),
                                f->width, f->height, AV_PIX_FMT_BGR24, SWS_BICUBIC, nullptr,
                                nullptr, nullptr));
      if (!ctx_) {
        return RuntimeError(path + ": cannot convert pixel format " + pix_fmt_name(f->format) +
                            " to BGR");
      }
      int *inv_table, *table, src_full, dst_full, brightness, contrast, saturation;
      sws_getColorspaceDetails(ctx_.get(), &inv_table, &src_full, &table, &dst_full, &brightness,
                               &contrast, &saturation);
      const int* matrix = coefficients_for(f->colorspace);
      if (f->color_range != AVCOL_RANGE_UNSPECIFIED) src_full = f->color_range == AVCOL_RANGE_JPEG;
      // As vf_scale: out matrix follows the in matrix when one is given ("auto" is one).
      sws_setColorspaceDetails(ctx_.get(), matrix, src_full, matrix, dst_full, brightness, contrast,
                               saturation);
      w_ = f->width;
      h_ = f->height;
      fmt_ = f->format;
      cs_ = f->colorspace;
      range_ = f->color_range;
    }
    if (!has_padding(out, f->height, f->width)) out = allocate_bgr_frame(f->height, f->width);
    // swscale's x86 yuv2rgb converts 8 pixels at a time and, when the row stride has no
    // room for the rounded-up width, leaves the last columns to a different code path. The
    // CLI's frames have 64-byte-aligned strides, so for widths that are not a multiple of
    // 8 convert into such a buffer and copy, to get the CLI's exact pixels.
    const bool direct = f->width % 8 == 0;
    cv::Mat& target = direct ? out : scratch_;
    if (!direct) {
      const int stride = (f->width * 3 + 8 * 3 + 63) / 64 * 64;
      if (scratch_.rows != f->height + 1 || static_cast<int>(scratch_.step[0]) != stride)
        scratch_ = cv::Mat(f->height + 1, stride / 3, CV_8UC3);
    }
    uint8_t* dst[4] = {target.data, nullptr, nullptr, nullptr};
    int dst_stride[4] = {static_cast<int>(target.step[0]), 0, 0, 0};
    int rows = sws_scale(ctx_.get(), f->data, f->linesize, 0, f->height, dst, dst_stride);
    if (rows != f->height) return RuntimeError(path + ": colour conversion failed");
    if (!direct) scratch_(cv::Rect(0, 0, f->width, f->height)).copyTo(out);
    return Status::Ok();
  }

 private:
  av::SwsPtr ctx_;
  cv::Mat scratch_;  // aligned-stride target for widths that are not a multiple of 8
  int w_ = 0, h_ = 0, fmt_ = -1;
  AVColorSpace cs_ = AVCOL_SPC_UNSPECIFIED;
  AVColorRange range_ = AVCOL_RANGE_UNSPECIFIED;
};

struct VideoReader::Impl {
  std::string path;
  VideoInfo info;
  av::FormatInputPtr fmt;
  av::CodecCtxPtr dec;
  av::PacketPtr pkt;
  av::FramePtr frame;
  BgrConverter converter;
  int stream_index = -1;
  bool input_done = false;  // demuxer exhausted, decoder flushed
  bool finished = false;    // decoder returned EOF
  int64_t frames_out = 0;
  double frame_time_s = 0.0;  // presentation time of the frame last returned

  Status open(const std::string& p, const DecodeOptions& opts, bool open_decoder) {
    av::quiet_logs();
    path = p;
    AVFormatContext* raw = nullptr;
    int rc = avformat_open_input(&raw, path.c_str(), nullptr, nullptr);
    if (rc < 0) {
      if (rc == AVERROR(ENOENT)) return BadInput(path + ": video file not found");
      return BadInput(path + ": cannot open video: " + av::err_str(rc));
    }
    fmt.reset(raw);
    rc = avformat_find_stream_info(raw, nullptr);
    if (rc < 0) return BadInput(path + ": cannot read stream info: " + av::err_str(rc));
    const AVCodec* codec = nullptr;
    stream_index = av_find_best_stream(raw, AVMEDIA_TYPE_VIDEO, -1, -1, &codec, 0);
    if (stream_index < 0 || !codec) return BadInput(path + ": no decodable video stream");
    AVStream* st = raw->streams[stream_index];
    const AVCodecParameters* par = st->codecpar;
    if (par->width <= 0 || par->height <= 0)
      return BadInput(path + ": video stream has no frame size (corrupt file?)");
    info.width = par->width;
    info.height = par->height;
    AVRational r = st->avg_frame_rate.num > 0 ? st->avg_frame_rate : st->r_frame_rate;
    if (r.num <= 0 || r.den <= 0) r = AVRational{25, 1};
    info.fps_num = r.num;
    info.fps_den = r.den;
    info.fps = av_q2d(r);
    info.frame_count = st->nb_frames > 0 ? st->nb_frames : -1;
    if (st->duration > 0)
      info.duration_s = st->duration * av_q2d(st->time_base);
    else if (raw->duration > 0)
      info.duration_s = raw->duration / double(AV_TIME_BASE);
    info.codec = avcodec_get_name(par->codec_id);
    if (st->start_time != AV_NOPTS_VALUE)
      info.start_time_s = st->start_time * av_q2d(st->time_base);
    if (!open_decoder) return Status::Ok();

    dec.reset(avcodec_alloc_context3(codec));
    if (!dec) return RuntimeError(path + ": out of memory");
    rc = avcodec_parameters_to_context(dec.get(), par);
    if (rc < 0) return BadInput(path + ": bad codec parameters: " + av::err_str(rc));
    dec->thread_count = av::thread_count(opts.threads);
    dec->thread_type = FF_THREAD_FRAME | FF_THREAD_SLICE;
    dec->pkt_timebase = st->time_base;
    rc = avcodec_open2(dec.get(), codec, nullptr);
    if (rc < 0) return BadInput(path + ": cannot open decoder: " + av::err_str(rc));
    pkt.reset(av_packet_alloc());
    frame.reset(av_frame_alloc());
    if (!pkt || !frame) return RuntimeError(path + ": out of memory");
    return Status::Ok();
  }

  // Next decoded frame (owned by `frame`, valid until the next call), or nullptr at end.
  Result<AVFrame*> next_av_frame() {
    while (!finished) {
      int rc = avcodec_receive_frame(dec.get(), frame.get());
      if (rc == 0) {
        const int64_t ts = frame->best_effort_timestamp;
        frame_time_s = ts != AV_NOPTS_VALUE ? ts * av_q2d(fmt->streams[stream_index]->time_base)
                                            : info.start_time_s + frames_out / info.fps;
        ++frames_out;
        return frame.get();
      }
      if (rc == AVERROR_EOF) {
        finished = true;
        break;
      }
      if (rc != AVERROR(EAGAIN))
        return BadInput(path + ": decoding failed at frame " + std::to_string(frames_out) + ": " +
                        av::err_str(rc));
      if (input_done) {
        finished = true;  // decoder wants input but there is none: treat as end
        break;
      }
      // Feed the decoder one packet of our stream (or the flush packet at the end).
      for (;;) {
        rc = av_read_frame(fmt.get(), pkt.get());
        if (rc == AVERROR_EOF) {
          avcodec_send_packet(dec.get(), nullptr);
          input_done = true;
          break;
        }
        if (rc < 0)
          return BadInput(path + ": read error after frame " + std::to_string(frames_out) + ": " +
                          av::err_str(rc));
        if (pkt->stream_index != stream_index) {
          av_packet_unref(pkt.get());
          continue;
        }
        rc = avcodec_send_packet(dec.get(), pkt.get());
        av_packet_unref(pkt.get());
        if (rc < 0 && rc != AVERROR(EAGAIN))
          return BadInput(path + ": corrupt video data near frame " + std::to_string(frames_out) +
                          ": " + av::err_str(rc));
        break;
      }
    }
    return static_cast<AVFrame*>(nullptr);
  }

  // After the last frame: a container that promised more frames than it held is truncated.
  Status check_complete() const {
    if (frames_out == 0) return BadInput(path + ": video has no frames");
    if (info.frame_count > 0 && frames_out < info.frame_count)
      return BadInput(path + ": truncated or corrupt: decoded " + std::to_string(frames_out) +
                      " of " + std::to_string(info.frame_count) + " frames");
    return Status::Ok();
  }
};

}  // namespace tr::io
