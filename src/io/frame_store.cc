// FrameStore: decoded avatar frames in the decoder's compact format (see frame_store.h).
//
// Streaming mode, how the decoder thread works:
//   - open() reads every packet of the video stream into RAM (decode order) and indexes
//     them: the display index of each packet (rank of its pts), and for each frame the
//     keyframe to start decoding from (the last keyframe at or before its packet whose pts
//     is not after the frame's, so open-GOP leading pictures start one GOP earlier).
//   - The "window" is the next distinct frames the order asks for from the consumer's
//     position, up to the cache's capacity in frames. When fewer than half of the window's
//     leading frames are resident, the decoder evicts everything outside the window and
//     fills the window: missing frames are grouped by their start keyframe and each group
//     is decoded in one pass from that keyframe. Refilling by half-windows keeps the number
//     of restarts per frame small when ping-pong walks backwards.
//   - acquire() moves the consumer's position and waits for the frame.
#include "io/frame_store.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "common/files.h"
#include "common/interrupt.h"
#include "common/thread_priority.h"
#include "io/decoder_internal.h"
#include "io/jpeg_file.h"

namespace tr::io {

struct StoredFrame {
  av::FramePtr frame;  // a reference to the decoder's buffers
  JpegFrame jpeg;      // instead of `frame` for a JPEG sequence (open_jpegs)
  int index = 0;
};

namespace {

int64_t frame_buffer_bytes(const AVFrame* f) {
  int64_t n = 0;
  for (int i = 0; i < AV_NUM_DATA_POINTERS && f->buf[i]; ++i) n += f->buf[i]->size;
  return n;
}

Result<FrameHandle> keep_frame(AVFrame* decoded, int index, const std::string& path) {
  auto sf = std::make_shared<StoredFrame>();
  sf->frame.reset(av_frame_clone(decoded));
  if (!sf->frame) return RuntimeError(path + ": out of memory keeping a decoded frame");
  sf->index = index;
  return FrameHandle(std::move(sf));
}

}  // namespace

struct FrameStore::Impl {
  VideoReader::Impl reader;  // demuxer + decoder (+ path and info)
  bool streaming = false;
  int decode_nice = 0;  // streaming: added to the decoding threads' nice values
  int count = 0;
  int64_t frame_bytes = 0;
  std::atomic<int64_t> decoded{0};

  // Full cache.
  std::vector<FrameHandle> frames;

  // A JPEG sequence (open_jpegs) instead of a video: frame k is jpeg_paths[k].
  bool jpegs = false;
  std::vector<std::string> jpeg_paths;

  // Streaming.
  std::vector<av::PacketPtr> packets;  // decode order
  int64_t packet_bytes = 0;
  std::vector<int> frame_packet;  // frame k -> position of its packet
  std::vector<int> frame_start;   // frame k -> position of the keyframe to start from
  std::unordered_map<int64_t, int> frame_of_pts;
  int64_t capacity = 0;  // frames the cache may hold

  std::mutex mu;
  std::condition_variable cv;
  std::map<int, FrameHandle> cache;
  std::function<int(int64_t)> frame_for;
  int64_t total = 0;
  int64_t pos = 0;  // the consumer's current request
  bool stop = false;
  std::optional<Error> error;
  std::thread decoder_thread;

  ~Impl() {
    {
      std::lock_guard lock(mu);
      stop = true;
    }
    cv.notify_all();
    if (decoder_thread.joinable()) decoder_thread.join();
  }

  const std::string& path() const { return reader.path; }

  Status decode_all() {
    if (reader.info.frame_count > 0) frames.reserve(reader.info.frame_count);
    for (;;) {
      if (interrupted()) return Interrupted(path() + ": decoding interrupted");
      TR_ASSIGN_OR_RETURN(AVFrame * f, reader.next_av_frame());
      if (!f) break;
      auto kept = keep_frame(f, static_cast<int>(frames.size()), path());
      if (frame_bytes == 0) frame_bytes = frame_buffer_bytes(f);
      av_frame_unref(f);
      TR_RETURN_IF_ERROR(kept.status());
      frames.push_back(std::move(*kept));
    }
    TR_RETURN_IF_ERROR(reader.check_complete());
    count = static_cast<int>(frames.size());
    decoded = count;
    return Status::Ok();
  }

  // Reads and indexes every packet of the stream (streaming mode).
  Status index_packets() {
    AVFormatContext* fmt = reader.fmt.get();
    std::vector<int64_t> pts;
    for (;;) {
      av::PacketPtr p(av_packet_alloc());
      if (!p) return RuntimeError(path() + ": out of memory");
      int rc = av_read_frame(fmt, p.get());
      if (rc == AVERROR_EOF) break;
      if (rc < 0) return BadInput(path() + ": read error: " + av::err_str(rc));
      if (p->stream_index != reader.stream_index) continue;
      if (p->pts == AV_NOPTS_VALUE) {
        return BadInput(path() +
                        ": packets without timestamps cannot be streamed; use the full "
                        "frame cache (no --cache-mb)");
      }
      packet_bytes += p->size;
      pts.push_back(p->pts);
      packets.push_back(std::move(p));
    }
    if (packets.empty()) return BadInput(path() + ": video has no frames");
    if (reader.info.frame_count > 0 &&
        static_cast<int64_t>(packets.size()) < reader.info.frame_count)
      return BadInput(path() + ": truncated or corrupt: " + std::to_string(packets.size()) +
                      " packets of " + std::to_string(reader.info.frame_count) + " frames");
    std::vector<int64_t> sorted = pts;
    std::sort(sorted.begin(), sorted.end());
    if (std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end()) {
      return BadInput(path() +
                      ": duplicate packet timestamps; this video cannot be streamed, use the "
                      "full frame cache (no --cache-mb)");
    }
    count = static_cast<int>(packets.size());
    frame_packet.assign(count, 0);
    frame_start.assign(count, 0);
    for (int d = 0; d < count; ++d) {
      const int k =
          static_cast<int>(std::lower_bound(sorted.begin(), sorted.end(), pts[d]) - sorted.begin());
      frame_of_pts[pts[d]] = k;
      frame_packet[k] = d;
    }
    if (!(packets[0]->flags & AV_PKT_FLAG_KEY))
      return BadInput(path() + ": the first packet is not a keyframe");
    for (int k = 0; k < count; ++k) {
      int d = frame_packet[k];
      while (d > 0 && (!(packets[d]->flags & AV_PKT_FLAG_KEY) || packets[d]->pts > sorted[k])) --d;
      frame_start[k] = d;
    }
    return Status::Ok();
  }

  // Reads and decodes JPEG frame k; its size must be the sequence's.
  Result<FrameHandle> decode_jpeg(int k) {
    const std::string& file = jpeg_paths[k];
    TR_ASSIGN_OR_RETURN(std::string bytes, read_file(file));
    auto sf = std::make_shared<StoredFrame>();
    TR_ASSIGN_OR_RETURN(sf->jpeg, decode_jpeg_compact(bytes, file));
    if (sf->jpeg.width != reader.info.width || sf->jpeg.height != reader.info.height) {
      return BadInput(fmt_size_mismatch(file, sf->jpeg.width, sf->jpeg.height));
    }
    sf->index = k;
    ++decoded;
    return FrameHandle(std::move(sf));
  }

  std::string fmt_size_mismatch(const std::string& file, int w, int h) const {
    return file + ": " + std::to_string(w) + "x" + std::to_string(h) + ", but " + jpeg_paths[0] +
           " is " + std::to_string(reader.info.width) + "x" + std::to_string(reader.info.height) +
           " (all frames must be one size)";
  }

  // Full cache of a JPEG sequence: every file decoded on `threads` threads. The first
  // error by frame index is the one reported, whatever the threads' timing.
  Status decode_all_jpegs(int threads) {
    frames.assign(jpeg_paths.size(), nullptr);
    std::vector<std::optional<Error>> errors(jpeg_paths.size());
    std::atomic<size_t> next{0};
    std::atomic<bool> failed{false};
    auto work = [&] {
      for (;;) {
        const size_t k = next++;
        if (k >= jpeg_paths.size() || failed) return;
        if (interrupted()) {
          errors[k] = Interrupted(path() + ": decoding interrupted");
          failed = true;
          return;
        }
        auto f = decode_jpeg(static_cast<int>(k));
        if (!f.ok()) {
          errors[k] = f.error();
          failed = true;
          return;
        }
        frames[k] = std::move(*f);
      }
    };
    const int n =
        std::max(1, threads > 0 ? threads : static_cast<int>(std::thread::hardware_concurrency()));
    std::vector<std::thread> pool;
    for (int t = 1; t < n; ++t) pool.emplace_back(work);
    work();
    for (auto& t : pool) t.join();
    for (auto& e : errors)
      if (e) return *e;
    count = static_cast<int>(frames.size());
    frame_bytes = static_cast<int64_t>(frames[0]->jpeg.data.size());
    return Status::Ok();
  }

  // Decodes from packet `start` until every frame of `wanted` has come out; keeps those.
  // A JPEG sequence decodes each wanted file on its own.
  Status decode_group(int start, std::unordered_set<int> wanted) {
    if (jpegs) {
      std::vector<int> ks(wanted.begin(), wanted.end());
      std::sort(ks.begin(), ks.end());
      for (int k : ks) {
        {
          std::lock_guard lock(mu);
          if (stop) return Status::Ok();
        }
        TR_ASSIGN_OR_RETURN(FrameHandle h, decode_jpeg(k));
        if (frame_bytes == 0) frame_bytes = static_cast<int64_t>(h->jpeg.data.size());
        std::lock_guard lock(mu);
        cache[k] = std::move(h);
        cv.notify_all();
      }
      return Status::Ok();
    }
    AVCodecContext* dec = reader.dec.get();
    avcodec_flush_buffers(dec);
    AVFrame* f = reader.frame.get();
    size_t next = static_cast<size_t>(start);
    bool flushed = false;
    while (!wanted.empty()) {
      int rc = avcodec_receive_frame(dec, f);
      if (rc == 0) {
        ++decoded;
        const int64_t ts =
            f->best_effort_timestamp != AV_NOPTS_VALUE ? f->best_effort_timestamp : f->pts;
        auto it = frame_of_pts.find(ts);
        if (it != frame_of_pts.end() && wanted.erase(it->second)) {
          if (frame_bytes == 0) frame_bytes = frame_buffer_bytes(f);
          auto kept = keep_frame(f, it->second, path());
          av_frame_unref(f);
          TR_RETURN_IF_ERROR(kept.status());
          std::lock_guard lock(mu);
          cache[it->second] = std::move(*kept);
          cv.notify_all();
        } else {
          av_frame_unref(f);
        }
        continue;
      }
      if (rc != AVERROR(EAGAIN) && rc != AVERROR_EOF)
        return BadInput(path() + ": decoding failed: " + av::err_str(rc));
      if (rc == AVERROR_EOF || (flushed && rc == AVERROR(EAGAIN))) break;
      {
        std::lock_guard lock(mu);
        if (stop) return Status::Ok();
      }
      if (next < packets.size()) {
        rc = avcodec_send_packet(dec, packets[next].get());
        if (rc == AVERROR(EAGAIN)) continue;  // output first; the packet is sent again
        if (rc < 0)
          return BadInput(path() + ": corrupt video data near packet " + std::to_string(next) +
                          ": " + av::err_str(rc));
        ++next;
      } else {
        avcodec_send_packet(dec, nullptr);
        flushed = true;
      }
    }
    if (!wanted.empty()) {
      return BadInput(path() + ": frame " + std::to_string(*wanted.begin()) +
                      " could not be decoded (corrupt video?)");
    }
    return Status::Ok();
  }

  // The next distinct frames the order asks for from request `from`, capacity at most.
  std::vector<int> window_from(int64_t from) const {
    std::vector<int> w;
    std::unordered_set<int> seen;
    const int64_t limit = std::min<int64_t>(capacity, count);
    for (int64_t j = from; j < total && static_cast<int64_t>(w.size()) < limit; ++j) {
      const int k = frame_for(j);
      if (seen.insert(k).second) w.push_back(k);
    }
    return w;
  }

  void decoder_loop() {
    lower_this_thread_priority(decode_nice);
    std::unique_lock lock(mu);
    for (;;) {
      if (stop) return;
      std::vector<int> window = window_from(pos);
      // Leading resident frames of the window: refill once half of it has been consumed.
      size_t resident = 0;
      while (resident < window.size() && cache.count(window[resident])) ++resident;
      const size_t want_ahead = std::min(window.size(), static_cast<size_t>(capacity / 2));
      if (window.empty() || resident >= std::max<size_t>(want_ahead, 1) ||
          resident == window.size()) {
        cv.wait(lock);
        continue;
      }
      std::unordered_set<int> in_window(window.begin(), window.end());
      for (auto it = cache.begin(); it != cache.end();) {
        it = in_window.count(it->first) ? std::next(it) : cache.erase(it);
      }
      // Missing frames grouped by start keyframe, groups in order of first need.
      std::vector<std::pair<int, std::unordered_set<int>>> groups;
      for (int k : window) {
        if (cache.count(k)) continue;
        const int start = frame_start[k];
        auto g = std::find_if(groups.begin(), groups.end(),
                              [&](const auto& p) { return p.first == start; });
        if (g == groups.end()) {
          groups.push_back({start, {k}});
        } else {
          g->second.insert(k);
        }
      }
      lock.unlock();
      Status s;
      for (auto& [start, wanted] : groups) {
        s = decode_group(start, std::move(wanted));
        if (!s.ok()) break;
      }
      lock.lock();
      if (!s.ok()) {
        error = s.error();
        cv.notify_all();
        return;
      }
      cv.notify_all();
    }
  }
};

FrameStore::FrameStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
FrameStore::~FrameStore() = default;

Result<std::unique_ptr<FrameStore>> FrameStore::open(const std::string& path,
                                                     const FrameStoreOptions& opts) {
  if (opts.cache_bytes < 0) return BadInput("the frame cache size must not be negative");
  auto impl = std::make_unique<Impl>();
  impl->streaming = opts.cache_bytes > 0;
  impl->decode_nice = impl->streaming ? opts.stream_decode_nice : 0;
  // FFmpeg creates its frame-decoding threads when the decoder opens, and they take the
  // opening thread's nice value: a streaming cache opens it from a helper thread that has
  // lowered its own priority, so that decoding ahead does not take the runtime's cores at
  // equal priority. Measured 2026-11-28 (2-core VM, gen320, 60-frame MP4 renders, 8
  // rotations of the three): mean fps with --cache-mb 256 / full cache 0.970 at equal
  // priority, 0.999 with the decoder at the pipeline helpers' nice +10.
  Status opened;
  std::thread([&] {
    lower_this_thread_priority(impl->decode_nice);
    opened = impl->reader.open(path, DecodeOptions{opts.threads}, /*open_decoder=*/true);
  }).join();
  TR_RETURN_IF_ERROR(opened);
  if (!impl->streaming) {
    TR_RETURN_IF_ERROR(impl->decode_all());
    return std::unique_ptr<FrameStore>(new FrameStore(std::move(impl)));
  }
  TR_RETURN_IF_ERROR(impl->index_packets());
  // The size of a stored frame, from the first frame (which also shows the file decodes).
  TR_RETURN_IF_ERROR(impl->decode_group(impl->frame_start[0], {0}));
  impl->cache.clear();
  const int64_t frame_budget = opts.cache_bytes - impl->packet_bytes;
  impl->capacity = impl->frame_bytes > 0 ? frame_budget / impl->frame_bytes : 0;
  constexpr int64_t kMinFrames = 16;
  if (impl->capacity < kMinFrames) {
    const int64_t need = impl->packet_bytes + kMinFrames * impl->frame_bytes;
    return BadInput(path + ": a frame cache of " + std::to_string(opts.cache_bytes >> 20) +
                    " MB is too small for this video; it needs at least " +
                    std::to_string((need >> 20) + 1) + " MB (" + std::to_string(kMinFrames) +
                    " frames of " + std::to_string(impl->frame_bytes >> 10) + " KB and " +
                    std::to_string(impl->packet_bytes >> 10) + " KB of compressed video)");
  }
  return std::unique_ptr<FrameStore>(new FrameStore(std::move(impl)));
}

Result<std::unique_ptr<FrameStore>> FrameStore::open_jpegs(const std::string& name,
                                                           std::vector<std::string> jpeg_paths,
                                                           const FrameStoreOptions& opts) {
  if (opts.cache_bytes < 0) return BadInput("the frame cache size must not be negative");
  if (jpeg_paths.empty()) return BadInput(name + ": no frames");
  auto impl = std::make_unique<Impl>();
  impl->jpegs = true;
  impl->jpeg_paths = std::move(jpeg_paths);
  impl->streaming = opts.cache_bytes > 0;
  impl->decode_nice = impl->streaming ? opts.stream_decode_nice : 0;
  impl->reader.path = name;
  VideoInfo& info = impl->reader.info;
  info.frame_count = static_cast<int64_t>(impl->jpeg_paths.size());
  info.fps = 0;  // a folder of images has no rate of its own
  info.fps_num = 0;
  info.fps_den = 1;
  info.codec = "mjpeg";
  {
    TR_ASSIGN_OR_RETURN(std::string bytes, read_file(impl->jpeg_paths[0]));
    TR_ASSIGN_OR_RETURN(cv::Size size, probe_jpeg_size(bytes, impl->jpeg_paths[0]));
    info.width = size.width;
    info.height = size.height;
  }
  if (!impl->streaming) {
    TR_RETURN_IF_ERROR(impl->decode_all_jpegs(opts.threads));
    return std::unique_ptr<FrameStore>(new FrameStore(std::move(impl)));
  }
  // Streaming: every header now, so a frame of another size fails here, not mid-render.
  const int n = static_cast<int>(impl->jpeg_paths.size());
  for (int k = 1; k < n; ++k) {
    if (interrupted()) return Interrupted();
    const std::string& file = impl->jpeg_paths[k];
    TR_ASSIGN_OR_RETURN(std::string bytes, read_file(file));
    TR_ASSIGN_OR_RETURN(cv::Size size, probe_jpeg_size(bytes, file));
    if (size.width != info.width || size.height != info.height)
      return BadInput(impl->fmt_size_mismatch(file, size.width, size.height));
  }
  impl->count = n;
  impl->frame_start.resize(n);
  for (int k = 0; k < n; ++k) impl->frame_start[k] = k;
  TR_ASSIGN_OR_RETURN(FrameHandle first, impl->decode_jpeg(0));
  impl->frame_bytes = static_cast<int64_t>(first->jpeg.data.size());
  impl->capacity = impl->frame_bytes > 0 ? opts.cache_bytes / impl->frame_bytes : 0;
  constexpr int64_t kMinFrames = 16;
  if (impl->capacity < kMinFrames) {
    const int64_t need = kMinFrames * impl->frame_bytes;
    return BadInput(name + ": a frame cache of " + std::to_string(opts.cache_bytes >> 20) +
                    " MB is too small for these frames; it needs at least " +
                    std::to_string((need >> 20) + 1) + " MB (" + std::to_string(kMinFrames) +
                    " frames of " + std::to_string(impl->frame_bytes >> 10) + " KB)");
  }
  return std::unique_ptr<FrameStore>(new FrameStore(std::move(impl)));
}

const std::string& FrameStore::path() const { return impl_->path(); }
const VideoInfo& FrameStore::info() const { return impl_->reader.info; }
int FrameStore::count() const { return impl_->count; }
int FrameStore::width() const { return impl_->reader.info.width; }
int FrameStore::height() const { return impl_->reader.info.height; }
bool FrameStore::streaming() const { return impl_->streaming; }
int64_t FrameStore::frame_bytes() const { return impl_->frame_bytes; }
int64_t FrameStore::frames_decoded() const { return impl_->decoded; }

int64_t FrameStore::resident_bytes() const {
  if (!impl_->streaming) return impl_->frame_bytes * impl_->count;
  std::lock_guard lock(impl_->mu);
  return impl_->packet_bytes + impl_->frame_bytes * static_cast<int64_t>(impl_->cache.size());
}

void FrameStore::set_order(std::function<int(int64_t)> frame_for, int64_t total) {
  if (!impl_->streaming) return;
  {
    std::lock_guard lock(impl_->mu);
    impl_->frame_for = std::move(frame_for);
    impl_->total = total;
    impl_->pos = 0;
  }
  if (!impl_->decoder_thread.joinable()) {
    impl_->decoder_thread = std::thread([impl = impl_.get()] { impl->decoder_loop(); });
  } else {
    impl_->cv.notify_all();
  }
}

Result<FrameHandle> FrameStore::acquire(int64_t i, int k) {
  if (k < 0 || k >= impl_->count) {
    return RuntimeError(path() + ": frame " + std::to_string(k) + " requested of " +
                        std::to_string(impl_->count));
  }
  if (!impl_->streaming) return impl_->frames[k];
  std::unique_lock lock(impl_->mu);
  if (!impl_->frame_for || i < 0 || i >= impl_->total || impl_->frame_for(i) != k) {
    return RuntimeError(path() + ": request " + std::to_string(i) + " for frame " +
                        std::to_string(k) + " is not in the order given to the frame cache");
  }
  if (i > impl_->pos) {
    impl_->pos = i;
    impl_->cv.notify_all();
  }
  for (;;) {
    auto it = impl_->cache.find(k);
    if (it != impl_->cache.end()) return it->second;
    if (impl_->error) return *impl_->error;
    if (interrupted()) return Interrupted();
    // A request that went back behind the window (a caller holding requests longer than
    // the cache allows) must move the window back to be served.
    if (i < impl_->pos) {
      impl_->pos = i;
      impl_->cv.notify_all();
    }
    impl_->cv.wait_for(lock, std::chrono::milliseconds(50));
  }
}

Status FrameStore::to_bgr(const FrameHandle& frame, cv::Mat& out) const {
  if (frame && !frame->jpeg.data.empty()) {
    jpeg_frame_to_bgr(frame->jpeg, out);
    return Status::Ok();
  }
  if (!frame || !frame->frame) return RuntimeError(path() + ": no frame to convert");
  // swscale contexts are not thread-safe; each converting thread keeps its own.
  thread_local BgrConverter converter;
  return converter.convert(frame->frame.get(), out, path());
}

}  // namespace tr::io
