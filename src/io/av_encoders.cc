#include "io/av_encoders.h"

#include <thread>

#include "io/video_reader.h"

namespace tr::io::av {

Result<CodecCtxPtr> open_h264_encoder(const H264Config& cfg, const std::string& what) {
  const char* encoder = cfg.rgb ? "libx264rgb" : "libx264";
  const AVCodec* codec = avcodec_find_encoder_by_name(encoder);
  if (!codec) return RuntimeError(std::string("this FFmpeg build has no ") + encoder + " encoder");
  CodecCtxPtr enc(avcodec_alloc_context3(codec));
  if (!enc) return RuntimeError(what + ": out of memory");
  AVCodecContext* c = enc.get();
  c->width = cfg.width;
  c->height = cfg.height;
  c->pix_fmt = cfg.rgb ? AV_PIX_FMT_BGR24 : AV_PIX_FMT_YUV420P;
  c->time_base = AVRational{cfg.fps_den, cfg.fps_num};
  c->framerate = AVRational{cfg.fps_num, cfg.fps_den};
  // BGR -> YUV (BgrConverter) uses swscale's default BT.601 limited-range matrix: tag it so.
  c->colorspace = cfg.rgb ? AVCOL_SPC_RGB : AVCOL_SPC_BT470BG;
  c->color_range = cfg.rgb ? AVCOL_RANGE_JPEG : AVCOL_RANGE_MPEG;
  // Sized to the machine: x264's own default (1.5 threads per core, plus lookahead) on
  // machines with cores to spare; one thread on 1-2 cores, where the generator already
  // fills every core and frame threads only add memory (~40 MB at 720p) and latency for
  // the same CPU per frame (measured: bench_x264_presets, threads 0 vs 1).
  c->thread_count =
      cfg.threads > 0 ? cfg.threads : (std::thread::hardware_concurrency() <= 2 ? 1 : 0);
  if (cfg.gop > 0) c->gop_size = cfg.gop;
  if (cfg.no_b_frames) c->max_b_frames = 0;
  if (cfg.global_header) c->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
  AVDictionary* enc_opts = nullptr;
  av_dict_set(&enc_opts, "preset", cfg.preset.c_str(), 0);
  if (!cfg.tune.empty()) av_dict_set(&enc_opts, "tune", cfg.tune.c_str(), 0);
  if (cfg.lossless) {
    av_dict_set_int(&enc_opts, "qp", 0, 0);
  } else {
    av_dict_set_int(&enc_opts, "crf", cfg.crf, 0);
  }
  int rc = avcodec_open2(c, codec, &enc_opts);
  av_dict_free(&enc_opts);
  if (rc < 0)
    return BadInput(what + ": cannot open the H.264 encoder (preset \"" + cfg.preset + "\"" +
                    (cfg.tune.empty() ? "" : ", tune \"" + cfg.tune + "\"") + "?): " + err_str(rc));
  return enc;
}

Result<CodecCtxPtr> open_aac_encoder(int rate, int channels, int bit_rate, bool global_header,
                                     const std::string& what) {
  const AVCodec* codec = avcodec_find_encoder(AV_CODEC_ID_AAC);
  if (!codec) return RuntimeError("this FFmpeg build has no AAC encoder");
  CodecCtxPtr enc(avcodec_alloc_context3(codec));
  if (!enc) return RuntimeError(what + ": out of memory");
  AVCodecContext* c = enc.get();
  c->sample_fmt = AV_SAMPLE_FMT_FLTP;
  c->sample_rate = rate;
  av_channel_layout_default(&c->ch_layout, channels);
  c->bit_rate = bit_rate;
  c->time_base = AVRational{1, rate};
  if (global_header) c->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
  int rc = avcodec_open2(c, codec, nullptr);
  if (rc < 0) return RuntimeError(what + ": cannot open the AAC encoder: " + err_str(rc));
  return enc;
}

Result<AVStream*> add_stream(AVFormatContext* out, const AVCodecContext* enc,
                             const std::string& what) {
  AVStream* st = avformat_new_stream(out, nullptr);
  if (!st) return RuntimeError(what + ": out of memory");
  st->time_base = enc->time_base;
  if (enc->codec_type == AVMEDIA_TYPE_VIDEO) st->avg_frame_rate = enc->framerate;
  int rc = avcodec_parameters_from_context(st->codecpar, enc);
  if (rc < 0) return RuntimeError(what + ": " + err_str(rc));
  return st;
}

Status BgrConverter::init(const AVCodecContext* enc, int width, int height,
                          const std::string& what) {
  what_ = what;
  width_ = width;
  height_ = height;
  encoded_ = cv::Size(enc->width, enc->height);
  frame_.reset(av_frame_alloc());
  if (!frame_) return RuntimeError(what + ": out of memory");
  frame_->format = enc->pix_fmt;
  frame_->width = enc->width;
  frame_->height = enc->height;
  frame_->colorspace = enc->colorspace;
  frame_->color_range = enc->color_range;
  if (av_frame_get_buffer(frame_.get(), 0) < 0) return RuntimeError(what + ": out of memory");
  sws_.reset(sws_getContext(enc->width, enc->height, AV_PIX_FMT_BGR24, enc->width, enc->height,
                            enc->pix_fmt, SWS_BICUBIC, nullptr, nullptr, nullptr));
  if (!sws_) return RuntimeError(what + ": cannot set up BGR -> YUV conversion");
  staging_ = allocate_bgr_frame(enc->height, enc->width);
  return Status::Ok();
}

Status BgrConverter::convert(const cv::Mat& bgr, int64_t index) {
  if (bgr.type() != CV_8UC3 || bgr.cols != width_ || bgr.rows != height_)
    return BadInput(what_ + ": frame " + std::to_string(index) + " is " + std::to_string(bgr.cols) +
                    "x" + std::to_string(bgr.rows) +
                    (bgr.type() == CV_8UC3 ? "" : " (not 8-bit BGR)") + ", expected " +
                    std::to_string(width_) + "x" + std::to_string(height_) + " BGR");
  int rc = av_frame_make_writable(frame_.get());
  if (rc < 0) return RuntimeError(what_ + ": out of memory");
  // swscale may read a few bytes past the last row: stage frames that lack the slack.
  // An odd size is padded to even here by repeating the last column / row. ISOLATED: a
  // frame that is a view into a larger buffer (decoded frames have spare rows) must not
  // borrow that buffer's bytes as its border.
  const cv::Mat* src_mat = &bgr;
  if (encoded_.width != bgr.cols || encoded_.height != bgr.rows) {
    cv::copyMakeBorder(bgr, staging_, 0, encoded_.height - bgr.rows, 0, encoded_.width - bgr.cols,
                       cv::BORDER_REPLICATE | cv::BORDER_ISOLATED);
    src_mat = &staging_;
  } else if (!has_padding(bgr, bgr.rows, bgr.cols)) {
    bgr.copyTo(staging_);
    src_mat = &staging_;
  }
  const uint8_t* src[4] = {src_mat->data, nullptr, nullptr, nullptr};
  int src_stride[4] = {static_cast<int>(src_mat->step[0]), 0, 0, 0};
  sws_scale(sws_.get(), src, src_stride, 0, src_mat->rows, frame_->data, frame_->linesize);
  frame_->pts = index;
  return Status::Ok();
}

Status encode(AVCodecContext* enc, const AVFrame* frame, AVPacket* pkt,
              const std::function<Status(AVPacket*)>& sink, const std::string& what) {
  int rc = avcodec_send_frame(enc, frame);
  if (rc < 0) return RuntimeError(what + ": encoding failed: " + err_str(rc));
  for (;;) {
    rc = avcodec_receive_packet(enc, pkt);
    if (rc == AVERROR(EAGAIN) || rc == AVERROR_EOF) return Status::Ok();
    if (rc < 0) return RuntimeError(what + ": encoding failed: " + err_str(rc));
    Status s = sink(pkt);
    av_packet_unref(pkt);
    TR_RETURN_IF_ERROR(s);
  }
}

}  // namespace tr::io::av
