// Fragmented MP4 into memory: libx264 (zerolatency) + FFmpeg's AAC encoder, muxed by
// FFmpeg's mp4 muxer with empty_moov + default_base_moof + frag_custom (one fragment per
// av_write_frame(ctx, nullptr), which we call after each video frame) into a custom
// AVIOContext whose bytes are handed to the sink at each flush.
//
// AAC priming: FFmpeg's AAC encoder delays its output by initial_padding (1024) samples;
// its first packet (pts -1024) decodes to silence. Fragmented MP4 gets no edit list here
// (and MSE would need one per track), so the muxer would shift both tracks to make that
// pts 0, putting the audio 21 ms behind the video. Instead the first initial_padding
// samples given are dropped before the encoder and the packets' pts shifted by as much:
// the track starts at 0 with the encoder's silent priming frame where those samples were,
// and every later sample plays exactly at (its index / audio_rate). It costs the first
// 21 ms of audio (at 48 kHz), which for speech is the silence before the first word.
#include "io/fmp4_stream.h"

#include <algorithm>
#include <cstdio>
#include <vector>

#include "io/av_encoders.h"
#include "io/frame_writer.h"

namespace tr::io {

namespace {
constexpr const char* kWhat = "fmp4 stream";
constexpr int kAvioBufferSize = 64 * 1024;

// FFmpeg 5.x's write callback takes a non-const buffer (const from FFmpeg 7).
int collect_bytes(void* opaque, uint8_t* buf, int size) {
  static_cast<std::string*>(opaque)->append(reinterpret_cast<const char*>(buf), size);
  return size;
}
}  // namespace

struct Fmp4Stream::Impl {
  Fmp4Options opts;
  Fmp4Sink sink;
  AVFormatContext* out = nullptr;
  AVIOContext* pb = nullptr;
  std::string pending;  // bytes the muxer wrote since the last sink call
  av::CodecCtxPtr venc, aenc;
  AVStream* vstream = nullptr;
  AVStream* astream = nullptr;
  av::BgrConverter bgr;
  av::PacketPtr pkt{av_packet_alloc()};
  av::FramePtr aframe;
  av::SwrPtr swr;               // audio_rate -> aac_rate, when they differ
  AVAudioFifo* fifo = nullptr;  // AAC-rate planar float, waiting for the encoder
  std::vector<float> scratch;
  int64_t skip_left = 0;  // priming compensation still to drop (see the top)
  int64_t priming = 0;    // aenc->initial_padding
  int64_t audio_fed = 0;  // samples sent to the AAC encoder
  int64_t frames = 0, fragments = 0, bytes = 0;
  bool closed = false;

  ~Impl() {
    if (out) avformat_free_context(out);
    if (pb) {
      av_freep(&pb->buffer);
      avio_context_free(&pb);
    }
    if (fifo) av_audio_fifo_free(fifo);
  }

  Status open() {
    av::quiet_logs();
    const Fmp4Options& o = opts;
    if (o.width <= 0 || o.height <= 0)
      return BadInput(std::string(kWhat) + ": frame size " + std::to_string(o.width) + "x" +
                      std::to_string(o.height) + " must be positive");
    if (o.fps_num <= 0 || o.fps_den <= 0)
      return BadInput(std::string(kWhat) + ": invalid frame rate");
    if (o.crf < 0 || o.crf > 51) return BadInput(std::string(kWhat) + ": crf must be in 0..51");
    if (o.audio_rate < 0 || (o.audio_rate > 0 && o.aac_rate <= 0))
      return BadInput(std::string(kWhat) + ": invalid audio rate");
    if (!sink) return BadInput(std::string(kWhat) + ": no sink");

    int rc = avformat_alloc_output_context2(&out, nullptr, "mp4", nullptr);
    if (rc < 0 || !out) return RuntimeError(std::string(kWhat) + ": cannot create MP4 muxer");
    const cv::Size enc_size = mp4_encoded_size(o.width, o.height);
    av::H264Config cfg;
    cfg.width = enc_size.width;
    cfg.height = enc_size.height;
    cfg.fps_num = o.fps_num;
    cfg.fps_den = o.fps_den;
    cfg.crf = o.crf;
    cfg.preset = o.preset;
    cfg.tune = "zerolatency";
    cfg.no_b_frames = true;
    cfg.gop = o.keyframe_interval > 0 ? o.keyframe_interval
                                      : static_cast<int>((o.fps_num + o.fps_den - 1) / o.fps_den);
    cfg.threads = o.threads;
    cfg.global_header = true;  // avcC in the init segment
    TR_ASSIGN_OR_RETURN(venc, av::open_h264_encoder(cfg, kWhat));
    TR_ASSIGN_OR_RETURN(vstream, av::add_stream(out, venc.get(), kWhat));
    TR_RETURN_IF_ERROR(bgr.init(venc.get(), o.width, o.height, kWhat));
    if (o.audio_rate > 0) TR_RETURN_IF_ERROR(open_audio());

    uint8_t* buf = static_cast<uint8_t*>(av_malloc(kAvioBufferSize));
    if (!buf) return RuntimeError(std::string(kWhat) + ": out of memory");
    pb = avio_alloc_context(buf, kAvioBufferSize, 1, &pending, nullptr, collect_bytes, nullptr);
    if (!pb) {
      av_free(buf);
      return RuntimeError(std::string(kWhat) + ": out of memory");
    }
    out->pb = pb;
    out->flags |= AVFMT_FLAG_CUSTOM_IO;
    AVDictionary* mux_opts = nullptr;
    // skip_trailer: no mfra index at the end, which a stream has no use for.
    av_dict_set(&mux_opts, "movflags", "empty_moov+default_base_moof+frag_custom+skip_trailer", 0);
    rc = avformat_write_header(out, &mux_opts);
    av_dict_free(&mux_opts);
    if (rc < 0)
      return RuntimeError(std::string(kWhat) + ": cannot write MP4 header: " + av::err_str(rc));
    return emit(/*init=*/true);
  }

  Status open_audio() {
    TR_ASSIGN_OR_RETURN(aenc, av::open_aac_encoder(opts.aac_rate, 1, opts.audio_bitrate,
                                                   /*global_header=*/true, kWhat));
    TR_ASSIGN_OR_RETURN(astream, av::add_stream(out, aenc.get(), kWhat));
    priming = skip_left = std::max(0, aenc->initial_padding);
    if (opts.aac_rate != opts.audio_rate) {
      SwrContext* s = nullptr;
      AVChannelLayout mono = AV_CHANNEL_LAYOUT_MONO;
      int rc = swr_alloc_set_opts2(&s, &mono, AV_SAMPLE_FMT_FLTP, opts.aac_rate, &mono,
                                   AV_SAMPLE_FMT_FLT, opts.audio_rate, 0, nullptr);
      if (rc < 0 || !s) return RuntimeError(std::string(kWhat) + ": cannot set up resampler");
      swr.reset(s);
      rc = swr_init(s);
      if (rc < 0)
        return RuntimeError(std::string(kWhat) + ": cannot set up resampler: " + av::err_str(rc));
    }
    fifo = av_audio_fifo_alloc(AV_SAMPLE_FMT_FLTP, 1, 4096);
    aframe.reset(av_frame_alloc());
    if (!fifo || !aframe) return RuntimeError(std::string(kWhat) + ": out of memory");
    return Status::Ok();
  }

  // Sends what the muxer wrote since the last call to the sink.
  Status emit(bool init) {
    avio_flush(pb);
    if (pb->error < 0) return RuntimeError(std::string(kWhat) + ": " + av::err_str(pb->error));
    if (pending.empty()) return Status::Ok();
    Status s = sink(reinterpret_cast<const uint8_t*>(pending.data()), pending.size(), init);
    bytes += static_cast<int64_t>(pending.size());
    if (!init) ++fragments;
    pending.clear();
    return s.with_context(kWhat);
  }

  Status mux(AVCodecContext* enc, AVStream* st, AVPacket* p, int64_t pts_shift) {
    if (p->pts != AV_NOPTS_VALUE) p->pts += pts_shift;
    if (p->dts != AV_NOPTS_VALUE) p->dts += pts_shift;
    if (p->duration == 0 && enc->codec_type == AVMEDIA_TYPE_VIDEO) p->duration = 1;
    av_packet_rescale_ts(p, enc->time_base, st->time_base);
    p->stream_index = st->index;
    // Not interleaved: the fragment is cut by us, and packets come in time order per track.
    int rc = av_write_frame(out, p);
    if (rc < 0) return RuntimeError(std::string(kWhat) + ": muxing failed: " + av::err_str(rc));
    return Status::Ok();
  }

  Status encode_video(const AVFrame* f) {
    return av::encode(
        venc.get(), f, pkt.get(), [&](AVPacket* p) { return mux(venc.get(), vstream, p, 0); },
        kWhat);
  }
  Status encode_audio(const AVFrame* f) {
    return av::encode(
        aenc.get(), f, pkt.get(), [&](AVPacket* p) { return mux(aenc.get(), astream, p, priming); },
        kWhat);
  }

  // Puts AAC-rate samples into the FIFO, dropping the first `priming` of them.
  Status push_fifo(const float* data, int n) {
    const int skip = static_cast<int>(std::min<int64_t>(skip_left, n));
    skip_left -= skip;
    data += skip;
    n -= skip;
    if (n <= 0) return Status::Ok();
    void* planes[1] = {const_cast<float*>(data)};
    if (av_audio_fifo_write(fifo, planes, n) < n)
      return RuntimeError(std::string(kWhat) + ": out of memory");
    return Status::Ok();
  }

  // Resamples (or not) audio_rate mono floats into the FIFO; nullptr flushes the resampler.
  Status push_pcm(const float* pcm, int n) {
    if (!swr) return pcm ? push_fifo(pcm, n) : Status::Ok();
    const int max_out = swr_get_out_samples(swr.get(), pcm ? n : 0);
    if (max_out <= 0) return Status::Ok();
    std::vector<float> resampled(static_cast<size_t>(max_out));
    uint8_t* out_planes[1] = {reinterpret_cast<uint8_t*>(resampled.data())};
    const uint8_t* in_planes[1] = {reinterpret_cast<const uint8_t*>(pcm)};
    const int got =
        swr_convert(swr.get(), out_planes, max_out, pcm ? in_planes : nullptr, pcm ? n : 0);
    if (got < 0)
      return RuntimeError(std::string(kWhat) + ": resampling failed: " + av::err_str(got));
    return push_fifo(resampled.data(), got);
  }

  // Encodes whole AAC frames while they end by `target` (encoder-input samples), or with
  // `final` everything left, the last frame shorter.
  Status pump_audio(int64_t target, bool final) {
    const int frame_size = aenc->frame_size > 0 ? aenc->frame_size : 1024;
    for (;;) {
      int n = std::min(frame_size, av_audio_fifo_size(fifo));
      if (n == 0 || (!final && (n < frame_size || audio_fed + n > target))) return Status::Ok();
      aframe->nb_samples = n;
      aframe->format = aenc->sample_fmt;
      aframe->sample_rate = aenc->sample_rate;
      av_channel_layout_copy(&aframe->ch_layout, &aenc->ch_layout);
      if (av_frame_get_buffer(aframe.get(), 0) < 0)
        return RuntimeError(std::string(kWhat) + ": out of memory");
      if (av_audio_fifo_read(fifo, reinterpret_cast<void**>(aframe->data), n) < n) {
        av_frame_unref(aframe.get());
        return RuntimeError(std::string(kWhat) + ": audio FIFO read failed");
      }
      aframe->pts = audio_fed;
      audio_fed += n;
      Status s = encode_audio(aframe.get());
      av_frame_unref(aframe.get());
      TR_RETURN_IF_ERROR(s);
    }
  }

  Status write_frame(const cv::Mat& image) {
    TR_RETURN_IF_ERROR(bgr.convert(image, frames));
    TR_RETURN_IF_ERROR(encode_video(bgr.frame()));
    ++frames;
    if (aenc) {
      // The frame's end on the AAC timeline; encoder-input sample j plays at j + priming.
      const int64_t end = av_rescale(frames * opts.fps_den, opts.aac_rate, opts.fps_num);
      TR_RETURN_IF_ERROR(pump_audio(end - priming, /*final=*/false));
    }
    int rc = av_write_frame(out, nullptr);  // frag_custom: cut the fragment here
    if (rc < 0) return RuntimeError(std::string(kWhat) + ": muxing failed: " + av::err_str(rc));
    return emit(false);
  }

  Status write_audio(const float* pcm, size_t samples) {
    if (!aenc) return BadInput(std::string(kWhat) + ": audio given, but audio_rate is 0");
    constexpr size_t kChunk = 1 << 16;
    for (size_t done = 0; done < samples; done += kChunk)
      TR_RETURN_IF_ERROR(push_pcm(pcm + done, static_cast<int>(std::min(kChunk, samples - done))));
    return Status::Ok();
  }

  Status finish() {
    if (frames == 0) return BadInput(std::string(kWhat) + ": no frames were written");
    TR_RETURN_IF_ERROR(encode_video(nullptr));
    if (aenc) {
      TR_RETURN_IF_ERROR(push_pcm(nullptr, 0));
      TR_RETURN_IF_ERROR(pump_audio(0, /*final=*/true));
      TR_RETURN_IF_ERROR(encode_audio(nullptr));
    }
    int rc = av_write_trailer(out);  // the last fragment (skip_trailer: no mfra)
    if (rc < 0) return RuntimeError(std::string(kWhat) + ": cannot finish MP4: " + av::err_str(rc));
    return emit(false);
  }

  // Runs `f`; a failure closes the stream.
  template <class F>
  Status guarded(const char* call, F&& f) {
    if (closed)
      return RuntimeError(std::string(kWhat) + ": " + call + " after finish or a failure");
    Status s = f();
    if (!s.ok()) closed = true;
    return s;
  }
};

Result<std::unique_ptr<Fmp4Stream>> Fmp4Stream::create(const Fmp4Options& opts, Fmp4Sink sink) {
  auto impl = std::make_unique<Impl>();
  impl->opts = opts;
  impl->sink = std::move(sink);
  if (!impl->pkt) return RuntimeError(std::string(kWhat) + ": out of memory");
  TR_RETURN_IF_ERROR(impl->open());
  return std::unique_ptr<Fmp4Stream>(new Fmp4Stream(std::move(impl)));
}

Fmp4Stream::Fmp4Stream(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Fmp4Stream::~Fmp4Stream() = default;

Status Fmp4Stream::write_frame(const cv::Mat& bgr) {
  return impl_->guarded("write_frame", [&] { return impl_->write_frame(bgr); });
}

Status Fmp4Stream::write_audio(const float* pcm, size_t samples) {
  return impl_->guarded("write_audio", [&] { return impl_->write_audio(pcm, samples); });
}

Status Fmp4Stream::write_audio(const int16_t* pcm, size_t samples) {
  return impl_->guarded("write_audio", [&] {
    std::vector<float>& f = impl_->scratch;
    f.resize(samples);
    for (size_t i = 0; i < samples; ++i) f[i] = pcm[i] * (1.0f / 32768.0f);
    return impl_->write_audio(f.data(), samples);
  });
}

Status Fmp4Stream::finish() {
  Status s = impl_->guarded("finish", [&] { return impl_->finish(); });
  impl_->closed = true;
  return s;
}

std::string Fmp4Stream::mime_codecs() const {
  // avc1.PPCCLL: profile_idc, constraint flags, level_idc of the SPS, from the encoder's
  // extradata: avcC (first byte 1) or Annex B (libx264's global header).
  const AVCodecContext* v = impl_->venc.get();
  const uint8_t* e = v->extradata;
  const int n = v->extradata_size;
  int profile = 0x42, compat = 0xC0, level = 0x1E;  // unused unless the SPS is not found
  if (n >= 4 && e[0] == 1) {
    profile = e[1], compat = e[2], level = e[3];
  } else {
    for (int i = 0; i + 6 < n; ++i) {
      if (e[i] == 0 && e[i + 1] == 0 && e[i + 2] == 1 && (e[i + 3] & 0x1f) == 7) {
        profile = e[i + 4], compat = e[i + 5], level = e[i + 6];
        break;
      }
    }
  }
  char video[32];
  std::snprintf(video, sizeof video, "avc1.%02X%02X%02X", profile, compat, level);
  std::string codecs = video;
  if (impl_->aenc) {
    // The MPEG-4 audio object type is the FFmpeg AAC profile + 1 (LC: 1 -> 2).
    const int profile_aac = impl_->aenc->profile >= 0 ? impl_->aenc->profile : FF_PROFILE_AAC_LOW;
    codecs += ", mp4a.40." + std::to_string(profile_aac + 1);
  }
  return "video/mp4; codecs=\"" + codecs + "\"";
}

int64_t Fmp4Stream::frames_written() const { return impl_->frames; }
int64_t Fmp4Stream::fragments_sent() const { return impl_->fragments; }
int64_t Fmp4Stream::bytes_sent() const { return impl_->bytes; }

}  // namespace tr::io
