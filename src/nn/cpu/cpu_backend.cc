// The optimised CPU backend: compiles a shape-inferred Graph (cpu_compiler.h) into a flat list
// of steps over one preallocated arena (cpu_executable.h).
//
// Layout, chosen per CPU when a plan is compiled: every float rank-4 activation lives in
// oneDNN's nChw16c on CPUs with AVX-512 (one pixel's 16 channels are one zmm register; oneDNN
// then runs its avx512_core kernels, about 2x the avx2 ones on a Zen 5) and in nChw8c
// otherwise (one ymm register), converted once where the graph's NCHW inputs enter and its
// outputs leave. TALKRENDER_CPU_BLOCK=8|16 forces either, so tests check both on any CPU.
//
// Precision: fp32, or bf16 on CPUs that compute it natively (AVX512_BF16, AMX): weights are
// converted once at compile, activations are bf16 in nChw16c between convs, and the first and
// the output conv stay fp32 (cpu_conv.cc).
#include <cpuid.h>
#include <omp.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include "nn/cpu/cpu_compiler.h"

namespace tr::nn {

namespace cpu {
namespace {

const char* isa_name(dnnl::cpu_isa isa) {
  switch (isa) {
    case dnnl::cpu_isa::sse41:
      return "sse41";
    case dnnl::cpu_isa::avx:
      return "avx";
    case dnnl::cpu_isa::avx2:
      return "avx2";
    case dnnl::cpu_isa::avx2_vnni:
      return "avx2_vnni";
    case dnnl::cpu_isa::avx512_mic:
      return "avx512_mic";
    case dnnl::cpu_isa::avx512_mic_4ops:
      return "avx512_mic_4ops";
    case dnnl::cpu_isa::avx512_core:
      return "avx512_core";
    case dnnl::cpu_isa::avx512_core_vnni:
      return "avx512_core_vnni";
    case dnnl::cpu_isa::avx512_core_bf16:
      return "avx512_core_bf16";
    case dnnl::cpu_isa::avx512_core_amx:
      return "avx512_core_amx";
    default:
      return "unknown";
  }
}

// oneDNN's ISA values are bit sets: a richer ISA contains the bits of the ones it extends.
// The 12-byte cpuid vendor string (leaf 0), or "" where cpuid is unavailable.
std::string cpuid_vendor() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (!__get_cpuid(0, &eax, &ebx, &ecx, &edx)) return "";
  char v[13] = {};
  std::memcpy(v, &ebx, 4);
  std::memcpy(v + 4, &edx, 4);
  std::memcpy(v + 8, &ecx, 4);
  return v;
}

bool has_isa(dnnl::cpu_isa effective, dnnl::cpu_isa want) {
  const unsigned e = static_cast<unsigned>(effective), w = static_cast<unsigned>(want);
  return (e & w) == w;
}

class CpuBackend final : public Backend {
 public:
  CpuBackend(Precision precision, bool profile)
      : eng_(dnnl::engine::kind::cpu, 0), precision_(precision), profile_(profile) {}
  const char* name() const override { return "cpu"; }
  Result<std::unique_ptr<Executable>> compile(const Graph& g, int threads) override {
    if (threads <= 0) threads = omp_get_num_procs();
    auto ex = std::make_unique<CpuExecutable>(eng_, threads, g.name);
    // Weight reorders and primitive creation use the threads of the Session too.
    omp_set_num_threads(threads);
    CompileOptions opts;
    opts.bf16 = precision_ == Precision::kBFloat16;
    // bf16 always runs in nChw16c: oneDNN has no jit bf16 kernel for nChw8c (ref:any, ~1000x
    // slower).
    opts.block = opts.bf16 ? 16 : cpu_info().block;
    opts.profile = profile_;
    Compiler c(g, *ex, opts);
    TR_RETURN_IF_ERROR(c.compile());
    return std::unique_ptr<Executable>(std::move(ex));
  }

 private:
  dnnl::engine eng_;
  Precision precision_;
  bool profile_;
};

}  // namespace
}  // namespace cpu

CpuInfo cpu_info() {
  const dnnl::cpu_isa isa = dnnl::get_effective_cpu_isa();
  CpuInfo info;
  info.isa = cpu::isa_name(isa);
  info.native_bf16 = cpu::has_isa(isa, dnnl::cpu_isa::avx512_core_bf16) ||
                     cpu::has_isa(isa, dnnl::cpu_isa::avx512_core_amx);
  info.vendor = cpu::cpuid_vendor();
  info.bf16_faster = cpu::has_isa(isa, dnnl::cpu_isa::avx512_core_amx) ||
                     (info.native_bf16 && info.vendor == "AuthenticAMD");
  info.block = cpu::has_isa(isa, dnnl::cpu_isa::avx512_core) ? 16 : 8;
  if (const char* forced = std::getenv("TALKRENDER_CPU_BLOCK")) {
    if (std::strcmp(forced, "8") == 0) info.block = 8;
    if (std::strcmp(forced, "16") == 0) info.block = 16;
  }
  return info;
}

std::unique_ptr<Backend> make_cpu_backend(Precision precision, bool profile) {
  return std::make_unique<cpu::CpuBackend>(precision, profile);
}

}  // namespace tr::nn
