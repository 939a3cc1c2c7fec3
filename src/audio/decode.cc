// Audio decoding with libavformat/libavcodec and resampling to 16 kHz with libsoxr.
#include <soxr.h>

#include <cmath>
#include <cstring>
#include <memory>
#include <string>

#include "audio/audio.h"
#include "common/checked_math.h"
#include "common/interrupt.h"

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/error.h>
}

namespace tr::audio {
namespace {

std::string av_error_text(int err) {
  char buf[AV_ERROR_MAX_STRING_SIZE] = {0};
  av_strerror(err, buf, sizeof buf);
  return buf;
}

struct FormatCloser {
  void operator()(AVFormatContext* f) const { avformat_close_input(&f); }
};
struct CodecFreer {
  void operator()(AVCodecContext* c) const { avcodec_free_context(&c); }
};
struct PacketFreer {
  void operator()(AVPacket* p) const { av_packet_free(&p); }
};
struct FrameFreer {
  void operator()(AVFrame* f) const { av_frame_free(&f); }
};

// Sample value of channel c, index i, as a float in [-1, 1] (FFmpeg's own scaling).
template <class T>
double sample_at(const AVFrame* f, bool planar, int channels, int c, int i) {
  const T* p = planar ? reinterpret_cast<const T*>(f->extended_data[c])
                      : reinterpret_cast<const T*>(f->extended_data[0]) + c;
  return static_cast<double>(p[planar ? i : i * channels]);
}

// ceil(input_total * 16000 / input_rate): the output length so far. Checked, since the input
// length is as long as the file (or stream) makes it.
Result<int64_t> output_length(int64_t input_total, int input_rate) {
  TR_ASSIGN_OR_RETURN(const int64_t scaled,
                      checked_mul(input_total, int64_t{kSampleRate}, "audio length in samples"));
  TR_ASSIGN_OR_RETURN(const int64_t rounded,
                      checked_add(scaled, input_rate - 1, "audio length in samples"));
  return rounded / input_rate;
}

// Mixes one decoded frame to mono (mean of channels) into out.
Status mix_frame(const AVFrame* f, int channels, std::vector<float>* out, const std::string& path) {
  const auto fmt = static_cast<AVSampleFormat>(f->format);
  const bool planar = av_sample_fmt_is_planar(fmt);
  const int n = f->nb_samples;
  out->resize(n);
  for (int i = 0; i < n; ++i) {
    double sum = 0.0;
    for (int c = 0; c < channels; ++c) {
      double v;
      switch (fmt) {
        case AV_SAMPLE_FMT_U8:
        case AV_SAMPLE_FMT_U8P:
          v = (sample_at<uint8_t>(f, planar, channels, c, i) - 128.0) / 128.0;
          break;
        case AV_SAMPLE_FMT_S16:
        case AV_SAMPLE_FMT_S16P:
          v = sample_at<int16_t>(f, planar, channels, c, i) / 32768.0;
          break;
        case AV_SAMPLE_FMT_S32:
        case AV_SAMPLE_FMT_S32P:
          v = sample_at<int32_t>(f, planar, channels, c, i) / 2147483648.0;
          break;
        case AV_SAMPLE_FMT_S64:
        case AV_SAMPLE_FMT_S64P:
          v = sample_at<int64_t>(f, planar, channels, c, i) / 9223372036854775808.0;
          break;
        case AV_SAMPLE_FMT_FLT:
        case AV_SAMPLE_FMT_FLTP:
          v = sample_at<float>(f, planar, channels, c, i);
          break;
        case AV_SAMPLE_FMT_DBL:
        case AV_SAMPLE_FMT_DBLP:
          v = sample_at<double>(f, planar, channels, c, i);
          break;
        default:
          return BadInput(
              path + ": unsupported sample format " +
              std::string(av_get_sample_fmt_name(fmt) ? av_get_sample_fmt_name(fmt) : "?"));
      }
      sum += v;
    }
    const double mono = sum / channels;
    if (!std::isfinite(mono)) {
      return BadInput(path + ": sample " + std::to_string(i) +
                      " of a decoded frame is NaN or infinite (float audio must be finite)");
    }
    (*out)[i] = static_cast<float>(mono);
  }
  return Status::Ok();
}

}  // namespace

Status decode_audio(const std::string& path, const MonoSink& sink, AudioInfo* info) {
  AVFormatContext* raw_fmt = nullptr;
  int err = avformat_open_input(&raw_fmt, path.c_str(), nullptr, nullptr);
  if (err < 0) return BadInput(path + ": cannot open as audio: " + av_error_text(err));
  std::unique_ptr<AVFormatContext, FormatCloser> fmt(raw_fmt);
  err = avformat_find_stream_info(fmt.get(), nullptr);
  if (err < 0) return BadInput(path + ": cannot read stream info: " + av_error_text(err));
  const AVCodec* codec = nullptr;
  const int stream = av_find_best_stream(fmt.get(), AVMEDIA_TYPE_AUDIO, -1, -1, &codec, 0);
  if (stream < 0 || !codec) return BadInput(path + ": no decodable audio stream");
  std::unique_ptr<AVCodecContext, CodecFreer> ctx(avcodec_alloc_context3(codec));
  if (!ctx) return RuntimeError(path + ": out of memory allocating a decoder");
  const AVStream* st = fmt->streams[stream];
  err = avcodec_parameters_to_context(ctx.get(), st->codecpar);
  // With the packet time base set, libavcodec moves a frame's pts past the samples it
  // skips (AAC priming, an edit list's start), so the first frame's pts is the time of the
  // first sample we get (AudioInfo::start_time_s). It does not change the samples.
  ctx->pkt_timebase = st->time_base;
  if (err >= 0) err = avcodec_open2(ctx.get(), codec, nullptr);
  if (err < 0)
    return BadInput(path + ": cannot open the " + codec->name + " decoder: " + av_error_text(err));

  std::unique_ptr<AVPacket, PacketFreer> pkt(av_packet_alloc());
  std::unique_ptr<AVFrame, FrameFreer> frame(av_frame_alloc());
  if (!pkt || !frame) return RuntimeError(path + ": out of memory");
  AudioInfo local;
  local.codec = codec->name;
  int bad_packets = 0;
  std::vector<float> mono;

  // Pulls every frame the decoder has ready and hands it to the sink.
  auto drain = [&]() -> Status {
    while (true) {
      int r = avcodec_receive_frame(ctx.get(), frame.get());
      if (r == AVERROR(EAGAIN) || r == AVERROR_EOF) return Status::Ok();
      if (r < 0) {
        ++bad_packets;  // a corrupt frame: skipped, as the ffmpeg CLI does
        return Status::Ok();
      }
      const int channels = frame->ch_layout.nb_channels;
      if (channels <= 0) return BadInput(path + ": decoded audio has no channels");
      if (local.source_rate == 0) {
        local.source_rate = frame->sample_rate;
        local.channels = channels;
        const int64_t pts = frame->best_effort_timestamp != AV_NOPTS_VALUE
                                ? frame->best_effort_timestamp
                                : st->start_time;
        if (pts != AV_NOPTS_VALUE) local.start_time_s = pts * av_q2d(st->time_base);
      } else if (frame->sample_rate != local.source_rate) {
        return BadInput(path + ": the sample rate changes mid-stream (" +
                        std::to_string(local.source_rate) + " -> " +
                        std::to_string(frame->sample_rate) + " Hz); not supported");
      }
      TR_RETURN_IF_ERROR(mix_frame(frame.get(), channels, &mono, path));
      local.source_samples += static_cast<int64_t>(mono.size());
      av_frame_unref(frame.get());
      if (!mono.empty()) TR_RETURN_IF_ERROR(sink(mono.data(), mono.size(), local.source_rate));
    }
  };

  while (true) {
    if (interrupted()) return Interrupted();
    err = av_read_frame(fmt.get(), pkt.get());
    if (err == AVERROR_EOF) break;
    if (err < 0) {
      // A damaged container: keep what was decoded so far (ffmpeg CLI behaviour).
      ++bad_packets;
      break;
    }
    if (pkt->stream_index == stream) {
      int r = avcodec_send_packet(ctx.get(), pkt.get());
      if (r < 0 && r != AVERROR(EAGAIN)) ++bad_packets;
      av_packet_unref(pkt.get());
      TR_RETURN_IF_ERROR(drain());
    } else {
      av_packet_unref(pkt.get());
    }
  }
  avcodec_send_packet(ctx.get(), nullptr);  // flush the decoder
  TR_RETURN_IF_ERROR(drain());

  if (local.source_samples == 0) {
    return BadInput(path + ": no audio samples could be decoded" +
                    (bad_packets ? " (" + std::to_string(bad_packets) + " corrupt packets)"
                                 : std::string(" (empty audio stream)")));
  }
  if (info) *info = local;
  return Status::Ok();
}

// ---------------------------------------------------------------------------------------
// Resampler16k

Result<std::unique_ptr<Resampler16k>> Resampler16k::create(int input_rate) {
  if (input_rate <= 0 || input_rate > 1000000) {
    return BadInput("invalid input sample rate " + std::to_string(input_rate));
  }
  std::unique_ptr<Resampler16k> r(new Resampler16k());
  r->input_rate_ = input_rate;
  if (input_rate != kSampleRate) {
    soxr_error_t err = nullptr;
    const soxr_io_spec_t io = soxr_io_spec(SOXR_FLOAT32_I, SOXR_FLOAT32_I);
    const soxr_quality_spec_t quality = soxr_quality_spec(SOXR_HQ, 0);
    // One thread: the output must not depend on scheduling.
    const soxr_runtime_spec_t runtime = soxr_runtime_spec(1);
    soxr_t s = soxr_create(input_rate, kSampleRate, 1, &err, &io, &quality, &runtime);
    if (err || !s) {
      return RuntimeError("cannot create a soxr resampler " + std::to_string(input_rate) +
                          " -> 16000 Hz: " + (err ? err : "unknown error"));
    }
    r->soxr_ = s;
  }
  return r;
}

Resampler16k::~Resampler16k() {
  if (soxr_) soxr_delete(static_cast<soxr_t>(soxr_));
}

// Runs x through soxr (x == nullptr: flush) and appends everything produced to held_.
Status Resampler16k::drain(const float* x, size_t n, std::vector<float>* /*unused*/) {
  auto s = static_cast<soxr_t>(soxr_);
  const size_t chunk = 4096;
  if (scratch_.size() < chunk) scratch_.resize(chunk);
  size_t consumed = 0;
  while (true) {
    size_t idone = 0, odone = 0;
    const size_t ilen = x ? n - consumed : 0;
    soxr_error_t err =
        soxr_process(s, x ? x + consumed : nullptr, ilen, &idone, scratch_.data(), chunk, &odone);
    if (err) return RuntimeError(std::string("soxr: ") + err);
    consumed += idone;
    held_.insert(held_.end(), scratch_.begin(), scratch_.begin() + odone);
    if (x ? (consumed >= n && odone < chunk) : odone == 0) break;
  }
  return Status::Ok();
}

Status Resampler16k::push(const float* x, size_t n, std::vector<float>* out) {
  if (n == 0) return Status::Ok();
  for (size_t i = 0; i < n; ++i) {
    if (!std::isfinite(x[i])) {
      return BadInput("audio sample " + std::to_string(input_total_ + i) + " is NaN or infinite");
    }
  }
  input_total_ += static_cast<int64_t>(n);
  if (!soxr_) {
    out->insert(out->end(), x, x + n);
    output_total_ += static_cast<int64_t>(n);
    return Status::Ok();
  }
  TR_RETURN_IF_ERROR(drain(x, n, out));
  // Forward no more than ceil(input so far * 16000 / rate): that never exceeds the final
  // length, so nothing forwarded has to be taken back when finish() trims.
  TR_ASSIGN_OR_RETURN(const int64_t allowed, output_length(input_total_, input_rate_));
  const int64_t give =
      std::min<int64_t>(static_cast<int64_t>(held_.size()), allowed - output_total_);
  if (give > 0) {
    out->insert(out->end(), held_.begin(), held_.begin() + give);
    held_.erase(held_.begin(), held_.begin() + give);
    output_total_ += give;
  }
  return Status::Ok();
}

Status Resampler16k::finish(std::vector<float>* out) {
  if (!soxr_) return Status::Ok();
  TR_RETURN_IF_ERROR(drain(nullptr, 0, out));
  TR_ASSIGN_OR_RETURN(const int64_t target, output_length(input_total_, input_rate_));
  const int64_t give = std::max<int64_t>(0, target - output_total_);
  const int64_t from_held = std::min<int64_t>(give, static_cast<int64_t>(held_.size()));
  out->insert(out->end(), held_.begin(), held_.begin() + from_held);
  out->insert(out->end(), give - from_held, 0.0f);  // librosa's fix_length pads zeros
  held_.clear();
  output_total_ = target;
  return Status::Ok();
}

Result<std::vector<float>> load_audio(const std::string& path, AudioInfo* info) {
  std::unique_ptr<Resampler16k> resampler;
  std::vector<float> out;
  AudioInfo local;
  Status st = decode_audio(
      path,
      [&](const float* mono, size_t n, int rate) -> Status {
        if (!resampler) {
          auto created = Resampler16k::create(rate);
          if (!created.ok()) return created.status().with_context(path);
          resampler = std::move(created).value();
        }
        Status s = resampler->push(mono, n, &out);
        return s.ok() ? s : s.with_context(path);
      },
      &local);
  TR_RETURN_IF_ERROR(st);
  TR_RETURN_IF_ERROR(resampler->finish(&out).with_context(path));
  if (info) *info = local;
  return out;
}

}  // namespace tr::audio
