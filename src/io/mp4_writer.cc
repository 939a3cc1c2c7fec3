// MP4 output: H.264 (libx264, yuv420p) + AAC audio, muxed interleaved with +faststart.
//
// Audio is pulled from the input file as video frames arrive (so memory stays bounded and
// the file is interleaved): after video frame i, audio is encoded up to the end time of that
// frame. finish() encodes the rest of the audio (all of it: the speech is never cut, unless
// the caller asked for cut_audio_at_video_end), then reads the finished file back and
// checks its durations before renaming it into place.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <thread>

#include "common/files.h"
#include "io/av_encoders.h"
#include "io/frame_writer.h"
#include "io/video_reader.h"

namespace tr::io {
namespace {

// "1.234" and "1.234 s", for messages.
std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3f", v);
  return buf;
}
std::string secs(double s) { return num(s) + " s"; }

// Decodes an audio file and resamples it to the encoder's format, rate and layout.
class AudioSource {
 public:
  Status open(const std::string& path, int out_rate, const AVChannelLayout& out_layout,
              AVSampleFormat out_fmt) {
    path_ = path;
    AVFormatContext* raw = nullptr;
    int rc = avformat_open_input(&raw, path.c_str(), nullptr, nullptr);
    if (rc < 0) {
      if (rc == AVERROR(ENOENT)) return BadInput(path + ": audio file not found");
      return BadInput(path + ": cannot open audio: " + av::err_str(rc));
    }
    fmt_.reset(raw);
    rc = avformat_find_stream_info(raw, nullptr);
    if (rc < 0) return BadInput(path + ": cannot read stream info: " + av::err_str(rc));
    const AVCodec* codec = nullptr;
    stream_ = av_find_best_stream(raw, AVMEDIA_TYPE_AUDIO, -1, -1, &codec, 0);
    if (stream_ < 0 || !codec) return BadInput(path + ": no decodable audio stream");
    dec_.reset(avcodec_alloc_context3(codec));
    if (!dec_) return RuntimeError(path + ": out of memory");
    rc = avcodec_parameters_to_context(dec_.get(), raw->streams[stream_]->codecpar);
    if (rc < 0) return BadInput(path + ": bad audio parameters: " + av::err_str(rc));
    dec_->pkt_timebase = raw->streams[stream_]->time_base;
    rc = avcodec_open2(dec_.get(), codec, nullptr);
    if (rc < 0) return BadInput(path + ": cannot open audio decoder: " + av::err_str(rc));
    if (dec_->ch_layout.order == AV_CHANNEL_ORDER_UNSPEC)
      av_channel_layout_default(&dec_->ch_layout, dec_->ch_layout.nb_channels);
    SwrContext* swr = nullptr;
    // FFmpeg 5.1 takes the layouts as non-const pointers but does not modify them.
    rc = swr_alloc_set_opts2(&swr, const_cast<AVChannelLayout*>(&out_layout), out_fmt, out_rate,
                             &dec_->ch_layout, dec_->sample_fmt, dec_->sample_rate, 0, nullptr);
    if (rc < 0 || !swr) return RuntimeError(path + ": cannot set up resampler");
    swr_.reset(swr);
    rc = swr_init(swr);
    if (rc < 0) return RuntimeError(path + ": cannot set up resampler: " + av::err_str(rc));
    pkt_.reset(av_packet_alloc());
    frame_.reset(av_frame_alloc());
    fifo_ = av_audio_fifo_alloc(out_fmt, out_layout.nb_channels, 4096);
    if (!pkt_ || !frame_ || !fifo_) return RuntimeError(path + ": out of memory");
    return Status::Ok();
  }
  ~AudioSource() {
    if (fifo_) av_audio_fifo_free(fifo_);
  }

  AVAudioFifo* fifo() { return fifo_; }
  bool exhausted() const { return done_; }
  // Samples the resampler has produced so far: the whole input, once exhausted().
  int64_t samples_out() const { return samples_out_; }

  // Decodes until the FIFO holds at least `samples` or the input ends.
  Status fill(int samples) {
    while (!done_ && av_audio_fifo_size(fifo_) < samples) TR_RETURN_IF_ERROR(decode_some());
    return Status::Ok();
  }

 private:
  Status decode_some() {
    int rc = avcodec_receive_frame(dec_.get(), frame_.get());
    if (rc == 0) {
      Status s = push_resampled(frame_.get());
      av_frame_unref(frame_.get());
      return s;
    }
    if (rc == AVERROR_EOF) {
      // Drain what the resampler still holds.
      TR_RETURN_IF_ERROR(push_resampled(nullptr));
      done_ = true;
      return Status::Ok();
    }
    if (rc != AVERROR(EAGAIN))
      return BadInput(path_ + ": audio decoding failed: " + av::err_str(rc));
    for (;;) {
      rc = av_read_frame(fmt_.get(), pkt_.get());
      if (rc == AVERROR_EOF) {
        avcodec_send_packet(dec_.get(), nullptr);
        return Status::Ok();
      }
      if (rc < 0) return BadInput(path_ + ": audio read error: " + av::err_str(rc));
      if (pkt_->stream_index != stream_) {
        av_packet_unref(pkt_.get());
        continue;
      }
      rc = avcodec_send_packet(dec_.get(), pkt_.get());
      av_packet_unref(pkt_.get());
      // A damaged audio packet is skipped (as the ffmpeg CLI does), not fatal.
      if (rc < 0 && rc != AVERROR(EAGAIN) && rc != AVERROR_INVALIDDATA)
        return BadInput(path_ + ": audio decoding failed: " + av::err_str(rc));
      return Status::Ok();
    }
  }

  Status push_resampled(const AVFrame* in) {
    int max_out = swr_get_out_samples(swr_.get(), in ? in->nb_samples : 0);
    if (max_out <= 0) return Status::Ok();
    uint8_t** buf = nullptr;
    int rc = av_samples_alloc_array_and_samples(&buf, nullptr, nb_channels(), max_out,
                                                fifo_sample_fmt(), 0);
    if (rc < 0) return RuntimeError(path_ + ": out of memory");
    int got =
        swr_convert(swr_.get(), buf, max_out, in ? (const uint8_t**)in->extended_data : nullptr,
                    in ? in->nb_samples : 0);
    Status s;
    if (got < 0)
      s = RuntimeError(path_ + ": resampling failed: " + av::err_str(got));
    else if (got > 0 && av_audio_fifo_write(fifo_, (void**)buf, got) < got)
      s = RuntimeError(path_ + ": out of memory");
    else
      samples_out_ += got;
    av_freep(&buf[0]);
    av_freep(&buf);
    return s;
  }

  int nb_channels() const { return out_channels_; }
  AVSampleFormat fifo_sample_fmt() const { return out_fmt_; }

 public:
  void set_output(int channels, AVSampleFormat fmt) {
    out_channels_ = channels;
    out_fmt_ = fmt;
  }

 private:
  std::string path_;
  av::FormatInputPtr fmt_;
  av::CodecCtxPtr dec_;
  av::SwrPtr swr_;
  av::PacketPtr pkt_;
  av::FramePtr frame_;
  AVAudioFifo* fifo_ = nullptr;
  int stream_ = -1;
  bool done_ = false;
  int64_t samples_out_ = 0;
  int out_channels_ = 2;
  AVSampleFormat out_fmt_ = AV_SAMPLE_FMT_FLTP;
};

class Mp4Writer final : public FrameWriter {
 public:
  ~Mp4Writer() override { abort(); }

  Status open(const std::string& path, const Mp4Options& o) {
    av::quiet_logs();
    path_ = path;
    opts_ = o;
    tmp_path_ = temp_path_for(path);
    if (o.width <= 0 || o.height <= 0)
      return BadInput(path + ": frame size " + std::to_string(o.width) + "x" +
                      std::to_string(o.height) + " must be positive");
    encoded_ = mp4_encoded_size(o.width, o.height);
    if (o.fps_num <= 0 || o.fps_den <= 0) return BadInput(path + ": invalid frame rate");
    if (o.crf < 0 || o.crf > 51) return BadInput(path + ": crf must be in 0..51");

    int rc = avformat_alloc_output_context2(&out_, nullptr, "mp4", tmp_path_.c_str());
    if (rc < 0 || !out_) return RuntimeError(path + ": cannot create MP4 muxer");
    TR_RETURN_IF_ERROR(open_video());
    if (!o.audio_path.empty()) TR_RETURN_IF_ERROR(open_audio());

    rc = avio_open(&out_->pb, tmp_path_.c_str(), AVIO_FLAG_WRITE);
    if (rc < 0) return RuntimeError(tmp_path_ + ": cannot create file: " + av::err_str(rc));
    file_created_ = true;
    AVDictionary* mux_opts = nullptr;
    av_dict_set(&mux_opts, "movflags", "+faststart", 0);
    rc = avformat_write_header(out_, &mux_opts);
    av_dict_free(&mux_opts);
    if (rc < 0) return RuntimeError(path + ": cannot write MP4 header: " + av::err_str(rc));
    return Status::Ok();
  }

  Status write_frame(const cv::Mat& bgr) override {
    if (closed_) return RuntimeError(path_ + ": write after finish/abort");
    TR_RETURN_IF_ERROR(bgr_.convert(bgr, frames_));
    TR_RETURN_IF_ERROR(encode(venc_.get(), vstream_, bgr_.frame()));
    ++frames_;
    if (aenc_) TR_RETURN_IF_ERROR(pump_audio(samples_at_frame(frames_), /*final=*/false));
    return Status::Ok();
  }

  Status finish() override {
    if (closed_) return RuntimeError(path_ + ": finish called twice or after abort");
    Status s = finish_impl();
    if (!s.ok()) {
      abort();
      return s;
    }
    closed_ = true;
    return Status::Ok();
  }

  void abort() override {
    if (closed_) return;
    closed_ = true;
    if (out_) {
      if (out_->pb) avio_closep(&out_->pb);
      avformat_free_context(out_);
      out_ = nullptr;
    }
    if (file_created_) std::remove(tmp_path_.c_str());
  }

  int64_t frames_written() const override { return frames_; }

 private:
  Status open_video() {
    av::H264Config cfg;
    cfg.width = encoded_.width;
    cfg.height = encoded_.height;
    cfg.fps_num = opts_.fps_num;
    cfg.fps_den = opts_.fps_den;
    cfg.crf = opts_.crf;
    cfg.rgb = opts_.rgb;
    cfg.lossless = opts_.lossless;
    cfg.preset = opts_.preset;
    cfg.threads = opts_.threads;
    cfg.global_header = out_->oformat->flags & AVFMT_GLOBALHEADER;
    TR_ASSIGN_OR_RETURN(venc_, av::open_h264_encoder(cfg, path_));
    TR_ASSIGN_OR_RETURN(vstream_, av::add_stream(out_, venc_.get(), path_));
    return bgr_.init(venc_.get(), opts_.width, opts_.height, path_);
  }

  Status open_audio() {
    const AVCodec* codec = avcodec_find_encoder(AV_CODEC_ID_AAC);
    if (!codec) return RuntimeError("this FFmpeg build has no AAC encoder");
    // Probe the input for its rate and channel count first.
    int in_rate = 0, in_channels = 0;
    {
      AVFormatContext* probe = nullptr;
      int rc = avformat_open_input(&probe, opts_.audio_path.c_str(), nullptr, nullptr);
      if (rc < 0) {
        if (rc == AVERROR(ENOENT)) return BadInput(opts_.audio_path + ": audio file not found");
        return BadInput(opts_.audio_path + ": cannot open audio: " + av::err_str(rc));
      }
      av::FormatInputPtr guard(probe);
      if (avformat_find_stream_info(probe, nullptr) < 0)
        return BadInput(opts_.audio_path + ": cannot read stream info");
      int si = av_find_best_stream(probe, AVMEDIA_TYPE_AUDIO, -1, -1, nullptr, 0);
      if (si < 0) return BadInput(opts_.audio_path + ": no audio stream");
      in_rate = probe->streams[si]->codecpar->sample_rate;
      in_channels = probe->streams[si]->codecpar->ch_layout.nb_channels;
    }
    // Keep the input's rate when AAC supports it, else 48 kHz; mono stays mono.
    int rate = 48000;
    for (const int* r = codec->supported_samplerates; r && *r; ++r)
      if (*r == in_rate) rate = in_rate;
    int channels = in_channels == 1 ? 1 : 2;

    TR_ASSIGN_OR_RETURN(aenc_,
                        av::open_aac_encoder(rate, channels, opts_.audio_bitrate,
                                             out_->oformat->flags & AVFMT_GLOBALHEADER, path_));
    AVCodecContext* c = aenc_.get();
    TR_ASSIGN_OR_RETURN(astream_, av::add_stream(out_, c, path_));

    audio_ = std::make_unique<AudioSource>();
    audio_->set_output(channels, c->sample_fmt);
    TR_RETURN_IF_ERROR(audio_->open(opts_.audio_path, rate, c->ch_layout, c->sample_fmt));
    aframe_.reset(av_frame_alloc());
    if (!aframe_) return RuntimeError(path_ + ": out of memory");
    return Status::Ok();
  }

  // Audio samples that cover video frames [0, n).
  int64_t samples_at_frame(int64_t n) const {
    return av_rescale(n * opts_.fps_den, aenc_->sample_rate, opts_.fps_num);
  }

  // Encodes audio up to `target` samples or the input's end, whichever comes first. Not
  // final: only whole encoder frames. Final: the last, shorter frame too. Never pads: the
  // audio track holds exactly the input's samples (or its first `target`).
  Status pump_audio(int64_t target, bool final) {
    const int frame_size = aenc_->frame_size > 0 ? aenc_->frame_size : 1024;
    for (;;) {
      int64_t left = target - audio_samples_;
      if (left <= 0) return Status::Ok();
      int n = static_cast<int>(std::min<int64_t>(frame_size, left));
      if (n < frame_size && !final) return Status::Ok();
      TR_RETURN_IF_ERROR(audio_->fill(n));
      AVAudioFifo* fifo = audio_->fifo();
      const int available = av_audio_fifo_size(fifo);
      if (available < n) {  // fill() stops short only at the input's end
        if (!final || available == 0) return Status::Ok();
        n = available;
      }
      aframe_->nb_samples = n;
      aframe_->format = aenc_->sample_fmt;
      aframe_->sample_rate = aenc_->sample_rate;
      av_channel_layout_copy(&aframe_->ch_layout, &aenc_->ch_layout);
      if (av_frame_get_buffer(aframe_.get(), 0) < 0) return RuntimeError(path_ + ": out of memory");
      if (av_audio_fifo_read(fifo, (void**)aframe_->data, n) < n) {
        av_frame_unref(aframe_.get());
        return RuntimeError(path_ + ": audio FIFO read failed");
      }
      aframe_->pts = audio_samples_;
      audio_samples_ += n;
      Status s = encode(aenc_.get(), astream_, aframe_.get());
      av_frame_unref(aframe_.get());
      TR_RETURN_IF_ERROR(s);
    }
  }

  // Sends a frame (or nullptr to flush) and muxes every packet that comes out.
  Status encode(AVCodecContext* enc, AVStream* st, const AVFrame* frame) {
    return av::encode(
        enc, frame, pkt_.get(),
        [&](AVPacket* pkt) -> Status {
          av_packet_rescale_ts(pkt, enc->time_base, st->time_base);
          pkt->stream_index = st->index;
          int rc = av_interleaved_write_frame(out_, pkt);
          if (rc < 0) return RuntimeError(tmp_path_ + ": write failed: " + av::err_str(rc));
          return Status::Ok();
        },
        path_);
  }

  Status finish_impl() {
    if (frames_ == 0) return BadInput(path_ + ": no frames were written");
    TR_RETURN_IF_ERROR(encode(venc_.get(), vstream_, nullptr));
    if (aenc_) {
      const int64_t target = opts_.cut_audio_at_video_end ? samples_at_frame(frames_)
                                                          : std::numeric_limits<int64_t>::max();
      TR_RETURN_IF_ERROR(pump_audio(target, /*final=*/true));
      TR_RETURN_IF_ERROR(encode(aenc_.get(), astream_, nullptr));
    }
    int rc = av_write_trailer(out_);
    if (rc < 0) return RuntimeError(tmp_path_ + ": cannot finish MP4: " + av::err_str(rc));
    rc = avio_closep(&out_->pb);
    if (rc < 0) return RuntimeError(tmp_path_ + ": close failed: " + av::err_str(rc));
    avformat_free_context(out_);
    out_ = nullptr;
    TR_RETURN_IF_ERROR(check_durations());
    if (std::rename(tmp_path_.c_str(), path_.c_str()) != 0)
      return RuntimeError(path_ + ": cannot rename the finished file into place");
    file_created_ = false;
    return Status::Ok();
  }

  // Reads the finished file back (its header: the moov atom is at the front) and checks
  // what a player will see: video = frames / fps; audio = the input's samples (or those up
  // to the video's end when cutting), within one AAC frame; the audio not running past the
  // video's end by more than kMaxAudioOverhangFrames.
  Status check_durations() const {
    AVFormatContext* raw = nullptr;
    int rc = avformat_open_input(&raw, tmp_path_.c_str(), nullptr, nullptr);
    if (rc < 0) return RuntimeError(tmp_path_ + ": cannot read back the MP4: " + av::err_str(rc));
    av::FormatInputPtr in(raw);
    // (Our AVStreams went with the muxer: the file's streams are found by type.)
    auto seconds = [&](AVMediaType type) -> double {
      for (unsigned i = 0; i < in->nb_streams; ++i) {
        const AVStream* st = in->streams[i];
        if (st->codecpar->codec_type != type || st->duration == AV_NOPTS_VALUE) continue;
        return st->duration * av_q2d(st->time_base);
      }
      return -1.0;
    };
    const double fps = static_cast<double>(opts_.fps_num) / opts_.fps_den;
    const double frame_s = 1.0 / fps;
    const double video_want = static_cast<double>(frames_) / fps;
    const double video_got = seconds(AVMEDIA_TYPE_VIDEO);
    if (std::fabs(video_got - video_want) > 0.5 * frame_s) {
      return RuntimeError(path_ + ": the video lasts " + secs(video_got) + "; " +
                          std::to_string(frames_) + " frames at " + num(fps) + " fps should last " +
                          secs(video_want));
    }
    if (!aenc_) return Status::Ok();
    const double rate = aenc_->sample_rate;
    const double aac_frame_s = (aenc_->frame_size > 0 ? aenc_->frame_size : 1024) / rate;
    const double input_s = audio_->samples_out() / rate;
    const double audio_want =
        opts_.cut_audio_at_video_end ? std::min(input_s, video_want) : input_s;
    const double audio_got = seconds(AVMEDIA_TYPE_AUDIO);
    if (std::fabs(audio_got - audio_want) > aac_frame_s) {
      return RuntimeError(path_ + ": the muxed audio lasts " + secs(audio_got) +
                          " but should last " + secs(audio_want) + " (" + opts_.audio_path +
                          " has " + secs(input_s) + ")");
    }
    if (audio_got > video_got + kMaxAudioOverhangFrames * frame_s + aac_frame_s) {
      return RuntimeError(path_ + ": the audio (" + secs(audio_got) + ", " + opts_.audio_path +
                          ") outlasts the video (" + std::to_string(frames_) + " frames at " +
                          num(fps) + " fps = " + secs(video_got) +
                          "): too few frames for the speech, which would be cut");
    }
    return Status::Ok();
  }

  std::string path_, tmp_path_;
  Mp4Options opts_;
  cv::Size encoded_;  // opts_ size rounded up to even
  AVFormatContext* out_ = nullptr;
  bool file_created_ = false;
  bool closed_ = false;
  av::CodecCtxPtr venc_, aenc_;
  AVStream* vstream_ = nullptr;
  AVStream* astream_ = nullptr;
  av::FramePtr aframe_;
  av::BgrConverter bgr_;
  av::PacketPtr pkt_{av_packet_alloc()};
  std::unique_ptr<AudioSource> audio_;
  int64_t frames_ = 0;
  int64_t audio_samples_ = 0;
};

}  // namespace

cv::Size mp4_encoded_size(int width, int height) {
  return {width + (width & 1), height + (height & 1)};
}

Result<std::unique_ptr<FrameWriter>> create_mp4_writer(const std::string& path,
                                                       const Mp4Options& opts) {
  auto w = std::make_unique<Mp4Writer>();
  Status s = w->open(path, opts);
  if (!s.ok()) {
    w->abort();
    return s.error();
  }
  return std::unique_ptr<FrameWriter>(std::move(w));
}

}  // namespace tr::io
