#include "test_util.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>

namespace tr::audio::test {
namespace fs = std::filesystem;

std::string source_root() {
  const char* s = std::getenv("TALKRENDER_SOURCE");
  return s ? s : fs::current_path().string();
}

std::string build_dir() {
  const char* s = std::getenv("TALKRENDER_BUILD");
  return s ? s : "";
}

std::string shared_file(const std::string& rel) {
  const char* env = std::getenv("TALKRENDER_SHARED");
  const std::string base = env ? env : source_root() + "/../shared/data";
  const std::string p = base + "/" + rel;
  return fs::exists(p) ? p : "";
}

namespace {
struct TempRoot {
  std::string path;
  TempRoot() {
    std::string tmpl = (fs::temp_directory_path() / "tr_audio_test_XXXXXX").string();
    char* p = mkdtemp(tmpl.data());
    path = p ? p : "/tmp";
  }
  ~TempRoot() {
    std::error_code ec;
    if (path != "/tmp") fs::remove_all(path, ec);
  }
};
}  // namespace

std::string temp_dir() {
  static TempRoot root;
  static int counter = 0;
  const std::string d = root.path + "/" + std::to_string(counter++);
  fs::create_directories(d);
  return d;
}

int run_command(const std::string& cmd, std::string* output) {
  FILE* f = popen((cmd + " 2>&1").c_str(), "r");
  if (!f) return -1;
  char buf[4096];
  std::string out;
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  const int st = pclose(f);
  if (output) *output = out;
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

bool have_program(const std::string& name) {
  return run_command("command -v " + name + " >/dev/null") == 0;
}

bool have_reference_python(bool with_torch) {
  static int plain = -1, torch = -1;
  int& v = with_torch ? torch : plain;
  if (v < 0) {
    v = run_command(std::string("/usr/bin/python3 -c 'import numpy") +
                    (with_torch ? ", torch, onnx" : "") + "'") == 0;
  }
  return v == 1;
}

static void put_u32(std::ofstream& f, uint32_t v) { f.write(reinterpret_cast<char*>(&v), 4); }
static void put_u16(std::ofstream& f, uint16_t v) { f.write(reinterpret_cast<char*>(&v), 2); }

static void write_wav(const std::string& path, const void* data, uint32_t bytes, int rate,
                      int channels, int bits, int format) {
  std::ofstream f(path, std::ios::binary);
  f.write("RIFF", 4);
  put_u32(f, 36 + bytes);
  f.write("WAVEfmt ", 8);
  put_u32(f, 16);
  put_u16(f, static_cast<uint16_t>(format));
  put_u16(f, static_cast<uint16_t>(channels));
  put_u32(f, static_cast<uint32_t>(rate));
  put_u32(f, static_cast<uint32_t>(rate * channels * bits / 8));
  put_u16(f, static_cast<uint16_t>(channels * bits / 8));
  put_u16(f, static_cast<uint16_t>(bits));
  f.write("data", 4);
  put_u32(f, bytes);
  f.write(static_cast<const char*>(data), bytes);
}

void write_wav_pcm16(const std::string& path, const std::vector<float>& mono, int rate) {
  std::vector<int16_t> pcm(mono.size());
  for (size_t i = 0; i < mono.size(); ++i) {
    // x 32768, as decoders divide: int16 input round-trips exactly.
    pcm[i] = static_cast<int16_t>(
        std::lround(std::fmax(-32768.0f, std::fmin(32767.0f, mono[i] * 32768.0f))));
  }
  write_wav(path, pcm.data(), static_cast<uint32_t>(pcm.size() * 2), rate, 1, 16, 1);
}

void write_wav_float(const std::string& path, const std::vector<float>& samples, int rate,
                     int channels) {
  write_wav(path, samples.data(), static_cast<uint32_t>(samples.size() * 4), rate, channels, 32, 3);
}

float max_abs_diff(const Tensor& a, const Tensor& b) {
  float m = 0.0f;
  for (int64_t i = 0; i < a.numel(); ++i) {
    m = std::fmax(m, std::fabs(a.data<float>()[i] - b.data<float>()[i]));
  }
  return m;
}

}  // namespace tr::audio::test
