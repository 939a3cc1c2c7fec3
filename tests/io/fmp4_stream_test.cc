// Fmp4Stream: the bytes a browser's MSE would get, read back with libavformat from memory.
#include "io/fmp4_stream.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <opencv2/imgproc.hpp>
#include <regex>
#include <string>
#include <vector>

#include "io/av_util.h"

namespace tr::io {
namespace {

constexpr int kW = 320, kH = 240, kFrames = 50, kRate = 16000;

// A moving gradient with a moving box; `bright` lifts it all (the alignment test's cue).
cv::Mat synthetic_frame(int i, bool bright = false) {
  cv::Mat m(kH, kW, CV_8UC3);
  for (int y = 0; y < kH; ++y)
    for (int x = 0; x < kW; ++x)
      m.at<cv::Vec3b>(y, x) = cv::Vec3b((x + 2 * i) & 127, (y / 2) & 127, (x + y + i) & 127);
  cv::rectangle(m, cv::Rect((i * 3) % (kW - 20), 30, 20, 20), cv::Scalar(20, 100, 120), cv::FILLED);
  if (bright) m += cv::Scalar(120, 120, 120);
  return m;
}

std::vector<int16_t> tone(double seconds, double start_s = 0.0) {
  std::vector<int16_t> pcm(static_cast<size_t>(seconds * kRate));
  for (size_t i = 0; i < pcm.size(); ++i) {
    double t = static_cast<double>(i) / kRate;
    pcm[i] = t < start_s ? 0 : static_cast<int16_t>(16000 * std::sin(2 * M_PI * 440 * t));
  }
  return pcm;
}

// What the sink got: all bytes, and each call's [offset, offset + size) and init flag.
struct Capture {
  std::string bytes;
  struct Segment {
    size_t offset, size;
    bool init;
  };
  std::vector<Segment> segments;
  Fmp4Sink sink() {
    return [this](const uint8_t* d, size_t n, bool init) {
      segments.push_back({bytes.size(), n, init});
      bytes.append(reinterpret_cast<const char*>(d), n);
      return Status::Ok();
    };
  }
  // The media fragment (0-based, init segment excluded) holding byte `pos`, or -1.
  int fragment_at(int64_t pos) const {
    int k = -1;
    for (const Segment& s : segments) {
      if (!s.init) ++k;
      if (pos >= static_cast<int64_t>(s.offset) && pos < static_cast<int64_t>(s.offset + s.size))
        return s.init ? -1 : k;
    }
    return -1;
  }
};

// Top-level ISO BMFF box types of bytes[begin, end).
std::vector<std::string> boxes(const std::string& b, size_t begin, size_t end) {
  std::vector<std::string> types;
  while (begin + 8 <= end) {
    const auto* p = reinterpret_cast<const uint8_t*>(b.data() + begin);
    uint32_t size = (uint32_t(p[0]) << 24) | (p[1] << 16) | (p[2] << 8) | p[3];
    types.emplace_back(b.data() + begin + 4, 4);
    if (size < 8) break;
    begin += size;
  }
  return types;
}

struct Packet {
  bool video;
  double pts, end;  // seconds
  int64_t pos;
};

// Demuxes and decodes the stream from memory.
struct Readback {
  int video_streams = 0, audio_streams = 0;
  int video_profile = -1, video_level = -1, audio_rate = 0;
  std::vector<Packet> packets;
  std::vector<double> frame_pts, frame_mean;  // decoded video frames
  double audio_start = -1;
  std::vector<float> audio;  // decoded mono samples from audio_start
};

struct MemIo {
  const std::string* data;
  int64_t pos = 0;
};
int mem_read(void* opaque, uint8_t* buf, int size) {
  auto* m = static_cast<MemIo*>(opaque);
  int64_t n = std::min<int64_t>(size, static_cast<int64_t>(m->data->size()) - m->pos);
  if (n <= 0) return AVERROR_EOF;
  std::memcpy(buf, m->data->data() + m->pos, n);
  m->pos += n;
  return static_cast<int>(n);
}
int64_t mem_seek(void* opaque, int64_t offset, int whence) {
  auto* m = static_cast<MemIo*>(opaque);
  const int64_t size = static_cast<int64_t>(m->data->size());
  if (whence & AVSEEK_SIZE) return size;
  whence &= ~AVSEEK_FORCE;
  int64_t p = whence == SEEK_SET ? offset : whence == SEEK_CUR ? m->pos + offset : size + offset;
  if (p < 0 || p > size) return -1;
  return m->pos = p;
}

void read_back(const std::string& bytes, Readback* r) {
  MemIo mem{&bytes};
  auto* buf = static_cast<uint8_t*>(av_malloc(4096));
  AVIOContext* pb = avio_alloc_context(buf, 4096, 0, &mem, mem_read, nullptr, mem_seek);
  ASSERT_TRUE(pb);
  AVFormatContext* fmt = avformat_alloc_context();
  fmt->pb = pb;
  ASSERT_EQ(avformat_open_input(&fmt, nullptr, nullptr, nullptr), 0);
  ASSERT_GE(avformat_find_stream_info(fmt, nullptr), 0);
  std::vector<av::CodecCtxPtr> dec(fmt->nb_streams);
  for (unsigned i = 0; i < fmt->nb_streams; ++i) {
    const AVCodecParameters* par = fmt->streams[i]->codecpar;
    if (par->codec_type == AVMEDIA_TYPE_VIDEO) {
      ++r->video_streams;
      r->video_profile = par->profile;
      r->video_level = par->level;
    } else if (par->codec_type == AVMEDIA_TYPE_AUDIO) {
      ++r->audio_streams;
      r->audio_rate = par->sample_rate;
    }
    const AVCodec* codec = avcodec_find_decoder(par->codec_id);
    ASSERT_TRUE(codec);
    dec[i].reset(avcodec_alloc_context3(codec));
    ASSERT_GE(avcodec_parameters_to_context(dec[i].get(), par), 0);
    dec[i]->pkt_timebase = fmt->streams[i]->time_base;
    ASSERT_GE(avcodec_open2(dec[i].get(), codec, nullptr), 0);
  }
  av::PacketPtr pkt(av_packet_alloc());
  av::FramePtr frame(av_frame_alloc());
  auto drain = [&](unsigned si) {
    const AVStream* st = fmt->streams[si];
    while (avcodec_receive_frame(dec[si].get(), frame.get()) == 0) {
      const double t = frame->best_effort_timestamp * av_q2d(st->time_base);
      if (st->codecpar->codec_type == AVMEDIA_TYPE_VIDEO) {
        r->frame_pts.push_back(t);
        cv::Mat y(frame->height, frame->width, CV_8UC1, frame->data[0], frame->linesize[0]);
        r->frame_mean.push_back(cv::mean(y)[0]);
      } else {
        if (r->audio_start < 0) r->audio_start = t;
        const auto* s = reinterpret_cast<const float*>(frame->extended_data[0]);
        EXPECT_EQ(frame->format, AV_SAMPLE_FMT_FLTP);
        r->audio.insert(r->audio.end(), s, s + frame->nb_samples);
      }
      av_frame_unref(frame.get());
    }
  };
  while (av_read_frame(fmt, pkt.get()) >= 0) {
    const AVStream* st = fmt->streams[pkt->stream_index];
    const double tb = av_q2d(st->time_base);
    r->packets.push_back({st->codecpar->codec_type == AVMEDIA_TYPE_VIDEO, pkt->pts * tb,
                          (pkt->pts + pkt->duration) * tb, pkt->pos});
    const unsigned si = pkt->stream_index;
    EXPECT_GE(avcodec_send_packet(dec[si].get(), pkt.get()), 0);
    av_packet_unref(pkt.get());
    drain(si);
  }
  for (unsigned i = 0; i < fmt->nb_streams; ++i) {
    avcodec_send_packet(dec[i].get(), nullptr);
    drain(i);
  }
  avformat_close_input(&fmt);
  av_freep(&pb->buffer);
  avio_context_free(&pb);
}

Fmp4Options options() {
  Fmp4Options o;
  o.width = kW;
  o.height = kH;
  o.audio_rate = kRate;
  return o;
}

TEST(Fmp4Stream, InitSegmentThenOneFragmentPerFrame) {
  Capture cap;
  auto s = Fmp4Stream::create(options(), cap.sink());
  ASSERT_TRUE(s.ok()) << s.error().message;
  // The init segment comes out at creation, before any frame.
  ASSERT_EQ(cap.segments.size(), 1u);
  EXPECT_TRUE(cap.segments[0].init);
  EXPECT_EQ(boxes(cap.bytes, 0, cap.bytes.size()), (std::vector<std::string>{"ftyp", "moov"}));

  const std::vector<int16_t> pcm = tone(2.0);
  const size_t per_frame = kRate / 25;  // 640
  for (int i = 0; i < kFrames; ++i) {
    ASSERT_TRUE((*s)->write_audio(pcm.data() + i * per_frame, per_frame).ok());
    const size_t before = cap.segments.size();
    ASSERT_TRUE((*s)->write_frame(synthetic_frame(i)).ok());
    ASSERT_EQ(cap.segments.size(), before + 1) << "frame " << i << " must be sent at once";
  }
  Status st = (*s)->finish();
  ASSERT_TRUE(st.ok()) << st.message();
  EXPECT_FALSE((*s)->write_frame(synthetic_frame(0)).ok()) << "closed after finish";

  // Every later segment is moof + mdat, none flagged init; 50 + the tail finish() flushed.
  int moofs = 0;
  for (size_t k = 1; k < cap.segments.size(); ++k) {
    const auto& seg = cap.segments[k];
    EXPECT_FALSE(seg.init);
    EXPECT_EQ(boxes(cap.bytes, seg.offset, seg.offset + seg.size),
              (std::vector<std::string>{"moof", "mdat"}))
        << "segment " << k;
    // MSE places a fragment by its tfdt (default_base_moof: offsets from the moof).
    EXPECT_NE(cap.bytes.substr(seg.offset, seg.size).find("tfdt"), std::string::npos);
    ++moofs;
  }
  EXPECT_EQ(moofs, kFrames + 1) << "one per frame, and the audio tail from finish()";
  EXPECT_EQ((*s)->fragments_sent(), moofs);
  EXPECT_EQ((*s)->bytes_sent(), static_cast<int64_t>(cap.bytes.size()));

  Readback r;
  read_back(cap.bytes, &r);
  ASSERT_EQ(r.video_streams, 1);
  ASSERT_EQ(r.audio_streams, 1);
  EXPECT_EQ(r.audio_rate, 48000);
  ASSERT_EQ(r.frame_pts.size(), size_t(kFrames));
  double v_first = 1e9, v_end = 0, a_first = 1e9, a_end = 0;
  int video_packets = 0;
  for (const Packet& p : r.packets) {
    if (p.video) {
      // Frame i is the only video sample of fragment i.
      EXPECT_EQ(cap.fragment_at(p.pos), video_packets) << "video packet at " << p.pts;
      EXPECT_NEAR(p.pts, video_packets / 25.0, 1e-9);
      ++video_packets;
    }
    (p.video ? v_first : a_first) = std::min(p.video ? v_first : a_first, p.pts);
    (p.video ? v_end : a_end) = std::max(p.video ? v_end : a_end, p.end);
  }
  EXPECT_EQ(video_packets, kFrames);
  EXPECT_EQ(v_first, 0.0);
  EXPECT_EQ(a_first, 0.0);
  EXPECT_NEAR(v_end, 2.0, 1e-9);
  EXPECT_NEAR(a_end, 2.0, 1024.0 / 48000);
  EXPECT_NEAR(r.audio.size() / 48000.0, 2.0, 1024.0 / 48000);

  // The MSE type names the profile and level the stream really has.
  const std::string mime = (*s)->mime_codecs();
  std::smatch m;
  ASSERT_TRUE(std::regex_match(
      mime, m,
      std::regex(
          R"re(video/mp4; codecs="avc1\.([0-9A-F]{2})[0-9A-F]{2}([0-9A-F]{2}), mp4a\.40\.2")re")))
      << mime;
  // (FFmpeg's profile carries the constraint flags above the profile_idc byte.)
  EXPECT_EQ(std::stoi(m[1].str(), nullptr, 16), r.video_profile & 0xFF) << mime;
  EXPECT_EQ(std::stoi(m[2].str(), nullptr, 16), r.video_level) << mime;
}

// The same cue (a tone from 1.0 s, bright frames from frame 25 = 1.0 s) lands at the same
// time whether the audio comes all first, ahead of or behind the video in 333-sample chunks.
enum class Schedule { kAllFirst, kAhead, kBehind };

void check_alignment(Schedule schedule) {
  Capture cap;
  auto s = Fmp4Stream::create(options(), cap.sink());
  ASSERT_TRUE(s.ok()) << s.error().message;
  const std::vector<int16_t> pcm = tone(2.0, /*start_s=*/1.0);
  size_t pushed = 0;
  auto push_until = [&](size_t want) {
    while (pushed < std::min(want, pcm.size())) {
      const size_t n = std::min<size_t>(333, pcm.size() - pushed);
      ASSERT_TRUE((*s)->write_audio(pcm.data() + pushed, n).ok());
      pushed += n;
    }
  };
  if (schedule == Schedule::kAllFirst) push_until(pcm.size());
  for (int i = 0; i < kFrames; ++i) {
    const int lead = schedule == Schedule::kAhead ? 10 : schedule == Schedule::kBehind ? -10 : 0;
    push_until(std::max(0, i + lead) * size_t(kRate / 25));
    ASSERT_TRUE((*s)->write_frame(synthetic_frame(i, i >= 25)).ok());
  }
  push_until(pcm.size());
  Status st = (*s)->finish();
  ASSERT_TRUE(st.ok()) << st.message();

  Readback r;
  read_back(cap.bytes, &r);
  ASSERT_EQ(r.frame_pts.size(), size_t(kFrames));
  int first_bright = -1;
  for (size_t i = 0; i < r.frame_mean.size() && first_bright < 0; ++i)
    if (r.frame_mean[i] > 150) first_bright = static_cast<int>(i);
  ASSERT_GE(first_bright, 0);
  EXPECT_NEAR(r.frame_pts[first_bright], 1.0, 1e-9);

  ASSERT_EQ(r.audio_start, 0.0);
  size_t onset = 0;
  while (onset < r.audio.size() && std::fabs(r.audio[onset]) < 0.2) ++onset;
  ASSERT_LT(onset, r.audio.size()) << "no tone decoded";
  EXPECT_NEAR(r.audio_start + onset / 48000.0, 1.0, 0.003) << "audio cue vs video cue";
  EXPECT_NEAR(r.audio.size() / 48000.0, 2.0, 1024.0 / 48000);

  // Interleaving: an audio packet never goes out before the frame whose period it ends in;
  // given ahead, it goes out with that frame (or within an AAC frame or two of encoder delay).
  const double aac = 1024.0 / 48000;
  for (const Packet& p : r.packets) {
    if (p.video) continue;
    const int k = cap.fragment_at(p.pos);
    ASSERT_GE(k, 0);
    if (k >= kFrames) continue;  // finish()'s tail
    const double frame_end = (k + 1) / 25.0;
    EXPECT_LE(p.end, frame_end + 1e-9) << "audio " << p.pts << " in fragment " << k;
    // A fragment spans a frame (40 ms); the encoder's lookahead holds back one AAC frame.
    if (schedule != Schedule::kBehind) {
      EXPECT_GT(p.end, frame_end - 1 / 25.0 - 2 * aac - 1e-9)
          << "audio " << p.pts << " held back to fragment " << k;
    }
  }
}

TEST(Fmp4Stream, AudioAllFirstStaysAligned) { check_alignment(Schedule::kAllFirst); }
TEST(Fmp4Stream, AudioAheadInOddChunksStaysAligned) { check_alignment(Schedule::kAhead); }
TEST(Fmp4Stream, AudioBehindInOddChunksStaysAligned) { check_alignment(Schedule::kBehind); }

TEST(Fmp4Stream, VideoOnlyAndErrors) {
  Capture cap;
  Fmp4Options o = options();
  o.audio_rate = 0;
  auto s = Fmp4Stream::create(o, cap.sink());
  ASSERT_TRUE(s.ok()) << s.error().message;
  EXPECT_EQ((*s)->mime_codecs().find("mp4a"), std::string::npos) << (*s)->mime_codecs();
  const int16_t pcm[4] = {};
  Status a = (*s)->write_audio(pcm, 4);
  EXPECT_EQ(a.error().kind, ErrorKind::kBadInput);
  // A failed call closes the stream.
  EXPECT_FALSE((*s)->write_frame(synthetic_frame(0)).ok());

  auto s2 = Fmp4Stream::create(o, cap.sink());
  ASSERT_TRUE(s2.ok());
  Status wrong = (*s2)->write_frame(cv::Mat(100, 100, CV_8UC3, cv::Scalar(0)));
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.error().kind, ErrorKind::kBadInput);
  EXPECT_NE(wrong.message().find("expected 320x240"), std::string::npos) << wrong.message();

  o.width = 0;
  auto bad = Fmp4Stream::create(o, cap.sink());
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().kind, ErrorKind::kBadInput);

  // A sink error fails the write that produced the bytes.
  o = options();
  int calls = 0;
  auto s3 = Fmp4Stream::create(o, [&](const uint8_t*, size_t, bool) -> Status {
    if (++calls > 1) return RuntimeError("socket closed");
    return Status::Ok();
  });
  ASSERT_TRUE(s3.ok());
  Status failed = (*s3)->write_frame(synthetic_frame(0));
  ASSERT_FALSE(failed.ok());
  EXPECT_NE(failed.message().find("socket closed"), std::string::npos) << failed.message();
}

}  // namespace
}  // namespace tr::io
