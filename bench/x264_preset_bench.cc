// x264 preset table at 720p through talkrender's own MP4 writer (tr::io::create_mp4_writer:
// BGR -> YUV420P swscale + libx264 + mux), so users can pick --preset and the default is
// chosen by measurement (issue 5).
//
// The MP4 writer runs beside inference on the same cores, so the column that decides the
// default is CPU ms/frame (user + sys of the whole process, x264's threads included), not
// the stand-alone FPS: a preset's CPU time per frame is taken away from the generator.
//
// Frames: ~100 real frames of the sample avatar video when it is found
// ($TALKRENDER_SHARED/sanders or <source>/../shared/data/sanders), else synthetic moving
// content. Each row encodes the same frames (already in RAM) `--reps` times and keeps the
// fastest run, so a noisy neighbour inflates fewer rows. Outputs go to a temporary
// directory that is removed at exit.
//
// With --generator M.onnx a second table runs the encoder the way a render does: beside
// the generator on the cpu backend (batch --batch, --infer-threads threads), one frame
// encoded per frame inferred through a bounded queue, and reports FPS as a fraction of
// inference-only FPS. That is the ratio issue 5's acceptance asks for, minus compositing
// (measure that with bench_render_micro), so it shows directly which presets leave room.
//
// Run: build-x/bench_x264_presets [--frames 100] [--reps 2] [--crf 20] [--threads 0,1]
//      [--presets ultrafast,superfast,veryfast,faster,fast,medium] [--video FILE]
//      [--generator M.onnx [--batch 2] [--infer-threads 2] [--contend-frames 40]]
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "io/frame_writer.h"
#include "io/video_reader.h"
#include "nn/nn.h"

#ifndef TR_SOURCE_DIR
#define TR_SOURCE_DIR "."
#endif

namespace fs = std::filesystem;

namespace {

struct Args {
  int frames = 100;
  int reps = 2;
  int crf = 20;
  std::vector<int> threads = {0, 1};
  std::vector<std::string> presets = {"ultrafast", "superfast", "veryfast",
                                      "faster",    "fast",      "medium"};
  std::string video;      // empty: the sample package's video if found
  std::string generator;  // non-empty: also run the encode-beside-inference table
  int batch = 2;
  int infer_threads = 0;  // 0: one per core, as talkrender render
  int contend_frames = 40;
};

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');)
    if (!item.empty()) out.push_back(item);
  return out;
}

bool parse_args(int argc, char** argv, Args* a) {
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    if (k == "--help" || k == "-h") return false;
    if (i + 1 >= argc) return false;
    const std::string v = argv[++i];
    if (k == "--frames") {
      a->frames = std::max(1, std::atoi(v.c_str()));
    } else if (k == "--reps") {
      a->reps = std::max(1, std::atoi(v.c_str()));
    } else if (k == "--crf") {
      a->crf = std::atoi(v.c_str());
    } else if (k == "--threads") {
      a->threads.clear();
      for (const auto& t : split(v)) a->threads.push_back(std::atoi(t.c_str()));
    } else if (k == "--presets") {
      a->presets = split(v);
    } else if (k == "--video") {
      a->video = v;
    } else if (k == "--generator") {
      a->generator = v;
    } else if (k == "--batch") {
      a->batch = std::max(1, std::atoi(v.c_str()));
    } else if (k == "--infer-threads") {
      a->infer_threads = std::max(0, std::atoi(v.c_str()));
    } else if (k == "--contend-frames") {
      a->contend_frames = std::max(1, std::atoi(v.c_str()));
    } else {
      return false;
    }
  }
  return true;
}

std::string find_sample_video() {
  std::vector<fs::path> roots;
  if (const char* s = std::getenv("TALKRENDER_SHARED"); s && *s) roots.emplace_back(s);
  roots.push_back(fs::path(TR_SOURCE_DIR) / ".." / "shared" / "data");
  for (const auto& r : roots) {
    std::error_code ec;
    const fs::path p = r / "sanders" / "full_body_video.mp4";
    if (fs::is_regular_file(p, ec)) return p.string();
  }
  return "";
}

// Moving content that x264 has to work for: a textured background panning slowly (static
// noise that moves, as a camera would; fresh noise per frame would be incompressible) and a
// face-sized ellipse whose "mouth" opens and closes.
std::vector<cv::Mat> synthetic_frames(int n) {
  const int w = 1280, h = 720, pad = 64;
  cv::Mat bg(h + pad, w + pad, CV_8UC3);
  std::mt19937 rng(7);
  std::normal_distribution<float> noise(0.f, 8.f);
  for (int y = 0; y < bg.rows; ++y)
    for (int x = 0; x < bg.cols; ++x)
      for (int c = 0; c < 3; ++c)
        bg.at<cv::Vec3b>(y, x)[c] = cv::saturate_cast<uint8_t>(
            60 + 100.f * x / bg.cols + 60.f * y / bg.rows * c / 2 + noise(rng));
  cv::GaussianBlur(bg, bg, {3, 3}, 0);
  std::vector<cv::Mat> frames;
  for (int i = 0; i < n; ++i) {
    cv::Mat f = tr::io::allocate_bgr_frame(h, w);
    bg(cv::Rect(i % pad, (i / 2) % pad, w, h)).copyTo(f);
    const cv::Point c(640 + int(20 * std::sin(i * 0.05)), 330);
    cv::ellipse(f, c, {150, 190}, 0, 0, 360, {120, 150, 200}, cv::FILLED, cv::LINE_AA);
    const int open = 5 + int(25 * std::abs(std::sin(i * 0.4)));
    cv::ellipse(f, c + cv::Point(0, 100), {45, open}, 0, 0, 360, {40, 30, 90}, cv::FILLED,
                cv::LINE_AA);
    frames.push_back(f);
  }
  return frames;
}

double cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  auto sec = [](const timeval& t) { return double(t.tv_sec) + 1e-6 * double(t.tv_usec); };
  return sec(ru.ru_utime) + sec(ru.ru_stime);
}

std::string loadavg() {
  std::ifstream f("/proc/loadavg");
  std::string a, b, c;
  f >> a >> b >> c;
  return a + " " + b + " " + c;
}

struct Row {
  double wall_s = 0, cpu_s = 0;
  uintmax_t bytes = 0;
  double psnr = 0;
};

// Mean PSNR (BGR, all channels) of the encoded file against the source frames: the same
// crf gives each preset a somewhat different quality, which the size column alone hides.
double psnr_of(const std::string& path, const std::vector<cv::Mat>& src) {
  auto reader = tr::io::VideoReader::open(path);
  if (!reader.ok()) return 0;
  cv::Mat f;
  double sum = 0;
  int n = 0;
  for (; n < int(src.size()); ++n) {
    auto got = (*reader)->next_frame(f);
    if (!got.ok() || !*got) break;
    sum += cv::PSNR(f, src[n]);
  }
  return n ? sum / n : 0;
}

// One encode of all frames; times write_frame for every frame plus finish() (which drains
// x264's lookahead and frame threads), not the encoder's set-up.
bool encode_once(const std::vector<cv::Mat>& frames, const tr::io::Mp4Options& o,
                 const std::string& path, Row* row) {
  auto w = tr::io::create_mp4_writer(path, o);
  if (!w.ok()) {
    std::fprintf(stderr, "%s\n", w.status().message().c_str());
    return false;
  }
  const double cpu0 = cpu_seconds();
  const auto t0 = std::chrono::steady_clock::now();
  for (const auto& f : frames) {
    if (auto s = (*w)->write_frame(f); !s.ok()) {
      std::fprintf(stderr, "%s\n", s.message().c_str());
      return false;
    }
  }
  if (auto s = (*w)->finish(); !s.ok()) {
    std::fprintf(stderr, "%s\n", s.message().c_str());
    return false;
  }
  row->wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  row->cpu_s = cpu_seconds() - cpu0;
  row->bytes = fs::file_size(path);
  return true;
}

// ---------------------------------------------------------------------------------------
// Encoding beside inference.

class Inference {
 public:
  static std::unique_ptr<Inference> create(const std::string& path, int batch, int threads) {
    auto model = tr::nn::Model::load(path);
    if (!model.ok()) {
      std::fprintf(stderr, "%s\n", model.status().message().c_str());
      return nullptr;
    }
    tr::nn::SessionOptions o;
    o.threads = threads;
    auto session = tr::nn::Session::create(*model, o);
    if (!session.ok()) {
      std::fprintf(stderr, "%s\n", session.status().message().c_str());
      return nullptr;
    }
    auto inf = std::unique_ptr<Inference>(new Inference);
    inf->session_ = std::move(*session);
    inf->batch_ = batch;
    // Seeded inputs in [0, 1]: the cpu backend's time does not depend on the values.
    std::mt19937 rng(1234);
    std::uniform_real_distribution<float> dist(0.f, 1.f);
    for (const auto& info : (*model)->inputs()) {
      tr::Shape s = info.shape;
      if (!s.empty() && s[0] < 0) s[0] = batch;
      tr::Tensor t = tr::Tensor::f32(s);
      for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = dist(rng);
      inf->inputs_.emplace_back(info.name, std::move(t));
    }
    if (!inf->run()) return nullptr;  // compiles the plan for this batch
    return inf;
  }
  bool run() {
    auto out = session_->run(inputs_);
    if (!out.ok()) std::fprintf(stderr, "%s\n", out.status().message().c_str());
    return out.ok();
  }
  int batch() const { return batch_; }

 private:
  Inference() = default;
  std::unique_ptr<tr::nn::Session> session_;
  std::vector<tr::nn::NamedTensor> inputs_;
  int batch_ = 1;
};

// Frame indices handed from the inference thread to the encoder thread. The bound is the
// pipeline's backpressure: inference stops when the encoder falls this far behind.
class IndexQueue {
 public:
  explicit IndexQueue(size_t cap) : cap_(cap) {}
  void push(int i) {
    std::unique_lock<std::mutex> l(m_);
    cv_.wait(l, [&] { return q_.size() < cap_; });
    q_.push_back(i);
    cv_.notify_all();
  }
  int pop() {  // -1: closed and empty
    std::unique_lock<std::mutex> l(m_);
    cv_.wait(l, [&] { return !q_.empty() || closed_; });
    if (q_.empty()) return -1;
    int i = q_.front();
    q_.pop_front();
    cv_.notify_all();
    return i;
  }
  void close() {
    std::lock_guard<std::mutex> l(m_);
    closed_ = true;
    cv_.notify_all();
  }

 private:
  size_t cap_;
  std::mutex m_;
  std::condition_variable cv_;
  std::deque<int> q_;
  bool closed_ = false;
};

// FPS of `n` frames from the first inference to the last frame written (finish() included),
// as the render report measures it. No options: inference alone.
double run_pipeline(Inference& inf, int n, const std::vector<cv::Mat>& frames,
                    const tr::io::Mp4Options* o, const std::string& path) {
  const int batches = (n + inf.batch() - 1) / inf.batch();
  n = batches * inf.batch();
  std::unique_ptr<tr::io::FrameWriter> writer;
  if (o) {
    auto w = tr::io::create_mp4_writer(path, *o);
    if (!w.ok()) {
      std::fprintf(stderr, "%s\n", w.status().message().c_str());
      return 0;
    }
    writer = std::move(*w);
  }
  IndexQueue queue(size_t(2 * inf.batch() + 4));
  bool enc_ok = true;
  const auto t0 = std::chrono::steady_clock::now();
  std::thread encoder;
  if (writer) {
    encoder = std::thread([&] {
      for (int i; (i = queue.pop()) >= 0;)
        if (enc_ok && !writer->write_frame(frames[i % frames.size()]).ok()) enc_ok = false;
      if (enc_ok && !writer->finish().ok()) enc_ok = false;
    });
  }
  bool inf_ok = true;
  for (int b = 0; b < batches && inf_ok; ++b) {
    inf_ok = inf.run();
    if (writer)
      for (int k = 0; k < inf.batch(); ++k) queue.push(b * inf.batch() + k);
  }
  queue.close();
  if (encoder.joinable()) encoder.join();
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (writer) {
    std::error_code ec;
    fs::remove(path, ec);
  }
  return inf_ok && enc_ok ? n / wall : 0;
}

int contention_table(const Args& a, const std::vector<cv::Mat>& frames, const fs::path& dir) {
  const int threads = a.infer_threads > 0 ? a.infer_threads
                                          : int(std::max(1u, std::thread::hardware_concurrency()));
  auto inf = Inference::create(a.generator, a.batch, threads);
  if (!inf) return 3;
  std::printf(
      "\nencoding beside inference: %s, batch %d, %d inference threads, %d frames per row, "
      "load %s\n",
      a.generator.c_str(), a.batch, threads, a.contend_frames, loadavg().c_str());
  const double base0 = run_pipeline(*inf, a.contend_frames, frames, nullptr, "");
  std::printf("inference only: %.2f fps\n", base0);
  std::printf("%-10s %7s %8s %12s\n", "preset", "threads", "fps", "ratio");
  std::fflush(stdout);
  struct Done {
    std::string preset;
    int threads;
    double fps;
  };
  std::vector<Done> rows;
  int rc = 0;
  for (int t : a.threads) {
    for (const auto& preset : a.presets) {
      tr::io::Mp4Options o;
      o.width = frames[0].cols;
      o.height = frames[0].rows;
      o.crf = a.crf;
      o.preset = preset;
      o.threads = t;
      const double fps = run_pipeline(*inf, a.contend_frames, frames, &o,
                                      (dir / ("contend_" + preset + ".mp4")).string());
      if (fps == 0) rc = 3;
      rows.push_back({preset, t, fps});
      std::printf("%-10s %7d %8.2f %12.3f\n", preset.c_str(), t, fps, fps / base0);
      std::fflush(stdout);
    }
  }
  // Inference alone again: if the machine's load changed during the table, this differs
  // from the first figure and the ratios above carry that uncertainty.
  const double base1 = run_pipeline(*inf, a.contend_frames, frames, nullptr, "");
  std::printf("inference only again: %.2f fps (ratios against the mean %.2f: ", base1,
              0.5 * (base0 + base1));
  for (size_t i = 0; i < rows.size(); ++i)
    std::printf("%s%s/t%d %.3f", i ? ", " : "", rows[i].preset.c_str(), rows[i].threads,
                rows[i].fps / (0.5 * (base0 + base1)));
  std::printf(")\nload at end %s\n", loadavg().c_str());
  return rc;
}

}  // namespace

int main(int argc, char** argv) {
  // As talkrender's main: libgomp (the cpu backend's OpenMP) spins at barriers unless told
  // otherwise, and a spinning inference thread would steal the encoder's core. libgomp reads
  // the policy only when it loads, hence the re-exec.
  if (!std::getenv("OMP_WAIT_POLICY")) {
    setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
    execv("/proc/self/exe", argv);  // returns only on failure: then go on as we are
  }
  Args a;
  if (!parse_args(argc, argv, &a)) {
    std::fprintf(stderr,
                 "usage: %s [--frames N] [--reps R] [--crf C] [--threads 0,1] "
                 "[--presets p1,p2,...] [--video FILE] [--generator M.onnx [--batch B] "
                 "[--infer-threads T] [--contend-frames N]]\n",
                 argv[0]);
    return 2;
  }
  if (a.video.empty()) a.video = find_sample_video();

  std::vector<cv::Mat> frames;
  std::string source = "synthetic moving content";
  int fps_num = 25, fps_den = 1;
  if (!a.video.empty()) {
    auto reader = tr::io::VideoReader::open(a.video);
    if (!reader.ok()) {
      std::fprintf(stderr, "%s\n", reader.status().message().c_str());
      return 3;
    }
    fps_num = (*reader)->info().fps_num;
    fps_den = (*reader)->info().fps_den;
    for (int i = 0; i < a.frames; ++i) {
      cv::Mat f;
      auto got = (*reader)->next_frame(f);
      if (!got.ok()) {
        std::fprintf(stderr, "%s\n", got.status().message().c_str());
        return 3;
      }
      if (!*got) break;
      frames.push_back(f);
    }
    source = a.video;
  } else {
    frames = synthetic_frames(a.frames);
  }
  if (frames.empty()) {
    std::fprintf(stderr, "no frames\n");
    return 3;
  }

  char tmpl[] = "/tmp/tr_x264_bench_XXXXXX";
  if (!mkdtemp(tmpl)) {
    std::perror("mkdtemp");
    return 3;
  }
  const fs::path dir = tmpl;

  const int n = int(frames.size());
  std::printf("x264 presets: %d frames %dx%d from %s, crf %d, best of %d, %u cores, load %s\n", n,
              frames[0].cols, frames[0].rows, source.c_str(), a.crf, a.reps,
              std::thread::hardware_concurrency(), loadavg().c_str());
  std::printf("%-10s %7s %8s %9s %13s %9s %9s\n", "preset", "threads", "fps", "ms/frame",
              "cpu ms/frame", "KB/frame", "PSNR dB");
  int rc = 0;
  for (int threads : a.threads) {
    for (const auto& preset : a.presets) {
      tr::io::Mp4Options o;
      o.width = frames[0].cols;
      o.height = frames[0].rows;
      o.fps_num = fps_num;
      o.fps_den = fps_den;
      o.crf = a.crf;
      o.preset = preset;
      o.threads = threads;
      const std::string path = (dir / (preset + "_t" + std::to_string(threads) + ".mp4")).string();
      Row best;
      bool ok = true;
      for (int r = 0; r < a.reps && ok; ++r) {
        Row row;
        ok = encode_once(frames, o, path, &row);
        if (ok && (r == 0 || row.wall_s < best.wall_s)) best = row;
      }
      if (!ok) {
        rc = 3;
        continue;
      }
      best.psnr = psnr_of(path, frames);
      fs::remove(path);
      std::printf("%-10s %7d %8.1f %9.2f %13.2f %9.1f %9.2f\n", preset.c_str(), threads,
                  n / best.wall_s, 1e3 * best.wall_s / n, 1e3 * best.cpu_s / n,
                  double(best.bytes) / n / 1024.0, best.psnr);
      std::fflush(stdout);
    }
  }
  std::printf("load at end %s\n", loadavg().c_str());
  if (!a.generator.empty() && contention_table(a, frames, dir) != 0) rc = 3;
  std::error_code ec;
  fs::remove_all(dir, ec);
  return rc;
}
