// The CUDA executor: runs a CudaPlan (nn/cuda/plan.h) with cuBLASLt GEMMs and the own
// kernels of kernels.cu, all on one stream over one device arena.
//
// Per compiled plan (Session keeps one per batch size):
//   - the packed weights, converted once to the storage type;
//   - one cuBLASLt descriptor set per GEMM step, its algorithm chosen at compile by timing
//     cuBLASLt's top heuristics on the real operands (TR_CUDA_AUTOTUNE=0: take the first);
//   - pinned host staging for inputs and outputs, so the copies are true async DMA.
// run(): host -> pinned, async upload, the steps, async download, one synchronise. The
// first run goes eagerly (module load, cuBLASLt's lazy init stay out of the capture); the
// second captures the steps into a CUDA graph, which every later run replays
// (TR_CUDA_GRAPH=0 keeps eager launches, for debugging).
#include "nn/cuda/exec/cuda_backend.h"

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "nn/cuda/exec/kernels.h"
#include "nn/cuda/plan.h"

namespace tr::nn {
namespace cuda {
namespace {

#define TR_CUDA_TRY(expr, what)                                                               \
  do {                                                                                        \
    const cudaError_t tr_e_ = (expr);                                                         \
    if (tr_e_ != cudaSuccess)                                                                 \
      return RuntimeError(std::string("cuda: ") + (what) + ": " + cudaGetErrorString(tr_e_)); \
  } while (0)

#define TR_CUBLAS_TRY(expr, what)                                     \
  do {                                                                \
    const cublasStatus_t tr_s_ = (expr);                              \
    if (tr_s_ != CUBLAS_STATUS_SUCCESS)                               \
      return RuntimeError(std::string("cublasLt: ") + (what) + ": " + \
                          cublasLtGetStatusString(tr_s_));            \
  } while (0)

constexpr size_t kWorkspaceBytes = size_t{32} << 20;

bool env_off(const char* name) {
  const char* v = std::getenv(name);
  return v && std::string(v) == "0";
}

cudaDataType_t cuda_type(Storage s) {
  switch (s) {
    case Storage::kF32:
      return CUDA_R_32F;
    case Storage::kF16:
      return CUDA_R_16F;
    case Storage::kBF16:
      return CUDA_R_16BF;
  }
  return CUDA_R_32F;
}

// The largest power of two (<= 256) dividing the address: cuBLASLt's heuristics assume
// 256-byte aligned operands unless told, and concat slices are only 16-byte aligned.
uint32_t alignment_of(const void* p) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  uint32_t align = 256;
  while (align > 1 && a % align != 0) align /= 2;
  return align;
}

struct GemmState {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr, d = nullptr;
  cublasLtMatmulAlgo_t algo{};
  const void *A = nullptr, *B = nullptr, *C = nullptr;
  void* D = nullptr;
  float beta = 0.f;
};

}  // namespace

class CudaExecutable final : public Executable {
 public:
  explicit CudaExecutable(CudaPlan plan) : plan_(std::move(plan)) {}
  ~CudaExecutable() override;

  Status init();
  Result<std::vector<Tensor>> run(const std::vector<Tensor>& inputs) override;
  Result<double> compute_ms(int iters, int repeats);
  const CudaPlan& plan() const { return plan_; }

 private:
  DevType dev_type() const { return static_cast<DevType>(static_cast<int>(plan_.storage)); }
  char* arena_at(int buffer) const { return arena_ + plan_.buffers[buffer].offset; }
  DevView dev(const View& v) const {
    if (!v.valid()) return DevView{};
    const int elem = storage_bytes(plan_.storage);
    return DevView{arena_at(v.buffer) + v.c_offset * elem, v.n, v.h, v.w, v.c, v.pitch};
  }
  const void* weight_ptr(int64_t offset) const {
    return offset < 0 ? nullptr : weights_ + offset * storage_bytes(plan_.storage);
  }
  Status setup_gemm(size_t step_index);
  Status run_gemm(const GemmState& g);
  Status enqueue_steps();
  Status enqueue_compute();

  CudaPlan plan_;
  cudaStream_t stream_ = nullptr;
  cublasLtHandle_t lt_ = nullptr;
  char* arena_ = nullptr;
  char* weights_ = nullptr;
  void* workspace_ = nullptr;
  std::vector<float*> in_dev_, out_dev_, in_host_, out_host_;  // staging, fp32 NCHW
  std::vector<GemmState> gemms_;                               // per step (unused if not GEMM)
  cudaGraph_t graph_ = nullptr;
  cudaGraphExec_t graph_exec_ = nullptr;
  bool use_graph_ = true;
  int runs_ = 0;
};

CudaExecutable::~CudaExecutable() {
  // Best effort: destructors cannot report, and a failed free leaks only at exit.
  if (stream_) cudaStreamSynchronize(stream_);
  if (graph_exec_) cudaGraphExecDestroy(graph_exec_);
  if (graph_) cudaGraphDestroy(graph_);
  for (GemmState& g : gemms_) {
    if (g.desc) cublasLtMatmulDescDestroy(g.desc);
    for (cublasLtMatrixLayout_t l : {g.a, g.b, g.c, g.d}) {
      if (l) cublasLtMatrixLayoutDestroy(l);
    }
  }
  if (lt_) cublasLtDestroy(lt_);
  for (float* p : in_dev_) cudaFree(p);
  for (float* p : out_dev_) cudaFree(p);
  for (float* p : in_host_) cudaFreeHost(p);
  for (float* p : out_host_) cudaFreeHost(p);
  cudaFree(arena_);
  cudaFree(weights_);
  cudaFree(workspace_);
  if (stream_) cudaStreamDestroy(stream_);
}

Status CudaExecutable::init() {
  use_graph_ = !env_off("TR_CUDA_GRAPH");
  TR_CUDA_TRY(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "stream");
  TR_CUBLAS_TRY(cublasLtCreate(&lt_), "create");
  TR_CUDA_TRY(cudaMalloc(&arena_, std::max<int64_t>(plan_.arena_bytes, 256)),
              "arena of " + std::to_string(plan_.arena_bytes) + " bytes");
  TR_CUDA_TRY(cudaMalloc(&workspace_, kWorkspaceBytes), "GEMM workspace");
  // Weights: fp32 upload, converted on the device.
  const int64_t count = static_cast<int64_t>(plan_.weights.size());
  TR_CUDA_TRY(cudaMalloc(&weights_, std::max<int64_t>(count, 1) * storage_bytes(plan_.storage)),
              "weights");
  if (count > 0) {
    float* tmp = nullptr;
    TR_CUDA_TRY(cudaMalloc(&tmp, count * sizeof(float)), "weight upload");
    Status st = [&]() -> Status {
      TR_CUDA_TRY(cudaMemcpyAsync(tmp, plan_.weights.data(), count * sizeof(float),
                                  cudaMemcpyHostToDevice, stream_),
                  "weight upload");
      TR_CUDA_TRY(launch_convert(dev_type(), tmp, weights_, count, stream_), "weight convert");
      TR_CUDA_TRY(cudaStreamSynchronize(stream_), "weight convert");
      return Status::Ok();
    }();
    cudaFree(tmp);
    TR_RETURN_IF_ERROR(st);
  }
  for (const Shape& s : plan_.input_shapes) {
    const size_t bytes = shape_numel(s) * sizeof(float);
    in_dev_.push_back(nullptr);
    in_host_.push_back(nullptr);
    TR_CUDA_TRY(cudaMalloc(&in_dev_.back(), bytes), "input staging");
    TR_CUDA_TRY(cudaMallocHost(&in_host_.back(), bytes), "pinned input staging");
  }
  for (const Shape& s : plan_.output_shapes) {
    const size_t bytes = shape_numel(s) * sizeof(float);
    out_dev_.push_back(nullptr);
    out_host_.push_back(nullptr);
    TR_CUDA_TRY(cudaMalloc(&out_dev_.back(), bytes), "output staging");
    TR_CUDA_TRY(cudaMallocHost(&out_host_.back(), bytes), "pinned output staging");
  }
  gemms_.resize(plan_.steps.size());
  for (size_t i = 0; i < plan_.steps.size(); ++i) {
    const StepKind k = plan_.steps[i].kind;
    if (k == StepKind::kGemm || k == StepKind::kIm2colGemm) TR_RETURN_IF_ERROR(setup_gemm(i));
  }
  return Status::Ok();
}

// D[m, n] = W[m, k] X[k, n] (+ C) (+ bias) (ReLU), column-major: W is stored [m, k_pitch]
// row-major, i.e. a k x m column-major matrix used transposed; X is [n pixels, pitch] NHWC,
// i.e. k x n column-major with ld = pitch; D likewise with the output view's pitch.
Status CudaExecutable::setup_gemm(size_t step_index) {
  const Step& s = plan_.steps[step_index];
  GemmState& g = gemms_[step_index];
  const cudaDataType_t t = cuda_type(plan_.storage);
  const std::string what = "step " + std::to_string(step_index) + " (" + s.label + ")";
  g.A = weight_ptr(s.weight_offset);
  if (s.kind == StepKind::kIm2colGemm) {
    g.B = arena_at(s.scratch);
  } else {
    g.B = dev(s.in).ptr;
  }
  const int64_t ldb = s.kind == StepKind::kIm2colGemm ? s.k_pitch : s.in.pitch;
  g.D = dev(s.out).ptr;
  g.C = s.in2.valid() ? dev(s.in2).ptr : g.D;
  g.beta = s.in2.valid() ? 1.f : 0.f;
  const int64_t ldc = s.in2.valid() ? s.in2.pitch : s.out.pitch;

  TR_CUBLAS_TRY(cublasLtMatmulDescCreate(&g.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F), what);
  const cublasOperation_t trans_a = CUBLAS_OP_T, trans_b = CUBLAS_OP_N;
  TR_CUBLAS_TRY(
      cublasLtMatmulDescSetAttribute(g.desc, CUBLASLT_MATMUL_DESC_TRANSA, &trans_a, sizeof trans_a),
      what);
  TR_CUBLAS_TRY(
      cublasLtMatmulDescSetAttribute(g.desc, CUBLASLT_MATMUL_DESC_TRANSB, &trans_b, sizeof trans_b),
      what);
  cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_DEFAULT;
  if (s.has_bias)
    epi = s.act == Act::kRelu ? CUBLASLT_EPILOGUE_RELU_BIAS : CUBLASLT_EPILOGUE_BIAS;
  else if (s.act == Act::kRelu)
    epi = CUBLASLT_EPILOGUE_RELU;
  if (s.act != Act::kNone && s.act != Act::kRelu) {
    return RuntimeError("cuda: " + what + ": GEMM epilogue " + act_name(s.act) + " unsupported");
  }
  TR_CUBLAS_TRY(
      cublasLtMatmulDescSetAttribute(g.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi),
      what);
  if (s.has_bias) {
    const void* bias = weight_ptr(s.bias_offset);  // bias type defaults to D's type
    TR_CUBLAS_TRY(cublasLtMatmulDescSetAttribute(g.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias,
                                                 sizeof bias),
                  what);
  }
  TR_CUBLAS_TRY(cublasLtMatrixLayoutCreate(&g.a, t, s.gemm_k, s.gemm_m, s.k_pitch), what);
  TR_CUBLAS_TRY(cublasLtMatrixLayoutCreate(&g.b, t, s.gemm_k, s.gemm_n, ldb), what);
  TR_CUBLAS_TRY(cublasLtMatrixLayoutCreate(&g.c, t, s.gemm_m, s.gemm_n, ldc), what);
  TR_CUBLAS_TRY(cublasLtMatrixLayoutCreate(&g.d, t, s.gemm_m, s.gemm_n, s.out.pitch), what);

  cublasLtMatmulPreference_t pref = nullptr;
  TR_CUBLAS_TRY(cublasLtMatmulPreferenceCreate(&pref), what);
  const uint64_t ws = kWorkspaceBytes;
  const uint32_t al_a = alignment_of(g.A), al_b = alignment_of(g.B), al_c = alignment_of(g.C),
                 al_d = alignment_of(g.D);
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
                                       sizeof ws);
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al_a,
                                       sizeof al_a);
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al_b,
                                       sizeof al_b);
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al_c,
                                       sizeof al_c);
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al_d,
                                       sizeof al_d);
  constexpr int kCandidates = 8;
  cublasLtMatmulHeuristicResult_t found[kCandidates] = {};
  int n_found = 0;
  const cublasStatus_t hs = cublasLtMatmulAlgoGetHeuristic(lt_, g.desc, g.a, g.b, g.c, g.d, pref,
                                                           kCandidates, found, &n_found);
  cublasLtMatmulPreferenceDestroy(pref);
  if (hs != CUBLAS_STATUS_SUCCESS || n_found == 0) {
    return RuntimeError("cublasLt: " + what + ": no algorithm for m=" + std::to_string(s.gemm_m) +
                        " n=" + std::to_string(s.gemm_n) + " k=" + std::to_string(s.gemm_k) + " (" +
                        cublasLtGetStatusString(hs) + ")");
  }
  g.algo = found[0].algo;
  if (n_found == 1 || env_off("TR_CUDA_AUTOTUNE")) return Status::Ok();
  // Time each candidate on the real operands (the arena's contents are whatever is there:
  // the values do not change which algorithm is fastest enough to matter here).
  cudaEvent_t start = nullptr, stop = nullptr;
  TR_CUDA_TRY(cudaEventCreate(&start), what);
  TR_CUDA_TRY(cudaEventCreate(&stop), what);
  float best = 1e30f;
  for (int i = 0; i < n_found; ++i) {
    if (found[i].state != CUBLAS_STATUS_SUCCESS) continue;
    g.algo = found[i].algo;
    if (!run_gemm(g).ok()) continue;  // warm-up; a candidate that fails is skipped
    cudaEventRecord(start, stream_);
    for (int r = 0; r < 3; ++r) (void)run_gemm(g);
    cudaEventRecord(stop, stream_);
    float ms = 0.f;
    if (cudaEventSynchronize(stop) != cudaSuccess ||
        cudaEventElapsedTime(&ms, start, stop) != cudaSuccess) {
      continue;
    }
    if (ms < best) {
      best = ms;
      found[0].algo = found[i].algo;
    }
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  g.algo = found[0].algo;
  cudaGetLastError();  // a failed candidate must not poison the next call's error check
  return Status::Ok();
}

Status CudaExecutable::run_gemm(const GemmState& g) {
  const float alpha = 1.f;
  TR_CUBLAS_TRY(cublasLtMatmul(lt_, g.desc, &alpha, g.A, g.a, g.B, g.b, &g.beta, g.C, g.c, g.D, g.d,
                               &g.algo, workspace_, kWorkspaceBytes, stream_),
                "matmul");
  return Status::Ok();
}

Status CudaExecutable::enqueue_steps() {
  const DevType t = dev_type();
  for (size_t i = 0; i < plan_.steps.size(); ++i) {
    const Step& s = plan_.steps[i];
    const DevConv conv{s.kh, s.kw, s.stride_h, s.stride_w, s.dil_h, s.dil_w, s.pad_top, s.pad_left};
    const DevAct act = static_cast<DevAct>(static_cast<int>(s.act));
    cudaError_t e = cudaSuccess;
    switch (s.kind) {
      case StepKind::kInput:
        e = launch_input(t, in_dev_[s.io_index], dev(s.out), stream_);
        break;
      case StepKind::kOutput:
        e = launch_output(t, dev(s.in), out_dev_[s.io_index], act, s.alpha, stream_);
        break;
      case StepKind::kIm2colGemm:
        e = launch_im2col(t, dev(s.in), dev(s.out), conv, arena_at(s.scratch), s.k_pitch, stream_);
        if (e != cudaSuccess) break;
        [[fallthrough]];
      case StepKind::kGemm: {
        Status st = run_gemm(gemms_[i]);
        if (!st.ok()) return st.with_context("step " + std::to_string(i) + " (" + s.label + ")");
        break;
      }
      case StepKind::kDepthwise:
        e = launch_depthwise(t, dev(s.in), dev(s.in2), dev(s.out), weight_ptr(s.weight_offset),
                             weight_ptr(s.bias_offset), conv, act, s.alpha, stream_);
        break;
      case StepKind::kUpsample:
        e = launch_upsample(t, dev(s.in), dev(s.out), s.y_mul, s.y_add, s.x_mul, s.x_add, stream_);
        break;
      case StepKind::kCopy:
      case StepKind::kActivation:
        e = launch_elementwise(t, dev(s.in), DevView{}, dev(s.out), act, s.alpha, stream_);
        break;
      case StepKind::kAdd:
        e = launch_elementwise(t, dev(s.in), dev(s.in2), dev(s.out), act, s.alpha, stream_);
        break;
    }
    TR_CUDA_TRY(e, "step " + std::to_string(i) + " (" + s.label + ")");
  }
  return Status::Ok();
}

// The steps, replayed from a CUDA graph once one is captured (from the second run on).
Status CudaExecutable::enqueue_compute() {
  if (use_graph_ && !graph_exec_ && runs_ >= 1) {
    TR_CUDA_TRY(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal), "capture");
    Status st = enqueue_steps();
    const cudaError_t end = cudaStreamEndCapture(stream_, &graph_);
    TR_RETURN_IF_ERROR(st);
    TR_CUDA_TRY(end, "capture");
    TR_CUDA_TRY(cudaGraphInstantiate(&graph_exec_, graph_, 0), "graph instantiate");
  }
  if (graph_exec_) {
    TR_CUDA_TRY(cudaGraphLaunch(graph_exec_, stream_), "graph launch");
    return Status::Ok();
  }
  return enqueue_steps();
}

Result<std::vector<Tensor>> CudaExecutable::run(const std::vector<Tensor>& inputs) {
  if (inputs.size() != plan_.input_shapes.size()) {
    return BadInput(plan_.model + ": expected " + std::to_string(plan_.input_shapes.size()) +
                    " inputs, got " + std::to_string(inputs.size()));
  }
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (inputs[i].shape() != plan_.input_shapes[i] || inputs[i].dtype() != DType::kFloat32) {
      return BadInput(plan_.model + ": input " + std::to_string(i) + " is " +
                      shape_str(inputs[i].shape()) + ", compiled for " +
                      shape_str(plan_.input_shapes[i]));
    }
    std::memcpy(in_host_[i], inputs[i].raw(), inputs[i].nbytes());
    TR_CUDA_TRY(cudaMemcpyAsync(in_dev_[i], in_host_[i], inputs[i].nbytes(), cudaMemcpyHostToDevice,
                                stream_),
                "input upload");
  }
  TR_RETURN_IF_ERROR(enqueue_compute());
  std::vector<Tensor> outs;
  for (size_t i = 0; i < plan_.output_shapes.size(); ++i) {
    outs.push_back(Tensor::f32(plan_.output_shapes[i]));
    TR_CUDA_TRY(cudaMemcpyAsync(out_host_[i], out_dev_[i], outs.back().nbytes(),
                                cudaMemcpyDeviceToHost, stream_),
                "output download");
  }
  TR_CUDA_TRY(cudaStreamSynchronize(stream_), "run");
  for (size_t i = 0; i < outs.size(); ++i) {
    std::memcpy(outs[i].raw(), out_host_[i], outs[i].nbytes());
  }
  ++runs_;
  return outs;
}

Result<double> CudaExecutable::compute_ms(int iters, int repeats) {
  if (runs_ < 2 && use_graph_) {
    return BadInput("compute_ms: run the executable twice first (warm-up, then capture)");
  }
  cudaEvent_t start = nullptr, stop = nullptr;
  TR_CUDA_TRY(cudaEventCreate(&start), "event");
  TR_CUDA_TRY(cudaEventCreate(&stop), "event");
  std::vector<double> means;
  Status st;
  for (int r = 0; r < repeats && st.ok(); ++r) {
    cudaEventRecord(start, stream_);
    for (int i = 0; i < iters && st.ok(); ++i) st = enqueue_compute();
    cudaEventRecord(stop, stream_);
    float ms = 0.f;
    if (st.ok() && (cudaEventSynchronize(stop) != cudaSuccess ||
                    cudaEventElapsedTime(&ms, start, stop) != cudaSuccess)) {
      st = RuntimeError("cuda: timing events failed");
    }
    means.push_back(ms / iters);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  TR_RETURN_IF_ERROR(st);
  std::sort(means.begin(), means.end());
  return means[means.size() / 2];
}

namespace {

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(Storage s) : storage_(s) {}
  const char* name() const override { return "cuda"; }
  Result<std::unique_ptr<Executable>> compile(const Graph& g, int threads) override {
    int devices = 0;
    const cudaError_t e = cudaGetDeviceCount(&devices);
    if (e != cudaSuccess || devices == 0) {
      // Asking for a device the machine does not have is a usage error (exit 2), as is
      // asking a build without CUDA.
      return BadInput(std::string("cuda: no usable CUDA device (") +
                      (e != cudaSuccess ? cudaGetErrorString(e) : "none found") + ")");
    }
    PlanOptions opts;
    opts.storage = storage_;
    TR_ASSIGN_OR_RETURN(CudaPlan plan, build_cuda_plan(g, opts));
    auto exe = std::make_unique<CudaExecutable>(std::move(plan));
    TR_RETURN_IF_ERROR(exe->init());
    return std::unique_ptr<Executable>(std::move(exe));
  }

 private:
  Storage storage_;
};

}  // namespace

Result<std::string> device_description() {
  int devices = 0;
  const cudaError_t e = cudaGetDeviceCount(&devices);
  if (e != cudaSuccess || devices == 0) {
    // One line naming what is missing (talkrender's loader has already checked that
    // libcuda.so.1 loads; talkrender-nn comes straight here).
    const char* what = e == cudaSuccess || e == cudaErrorNoDevice ? "no GPU"
                       : e == cudaErrorInsufficientDriver
                           ? "no NVIDIA driver, or one older than this CUDA runtime"
                           : "the CUDA runtime cannot start";
    return BadInput(std::string("backend 'cuda': no usable CUDA device: ") + what + " (" +
                    (e != cudaSuccess ? cudaGetErrorString(e) : "none found") + ")");
  }
  int dev = 0;
  TR_CUDA_TRY(cudaGetDevice(&dev), "device");
  cudaDeviceProp prop{};
  TR_CUDA_TRY(cudaGetDeviceProperties(&prop, dev), "device properties");
  return std::string(prop.name) + " (sm_" + std::to_string(prop.major) +
         std::to_string(prop.minor) + ", " + std::to_string(prop.multiProcessorCount) + " SMs)";
}

Result<double> compute_ms(Executable& exe, int iters, int repeats) {
  auto* cuda = dynamic_cast<CudaExecutable*>(&exe);
  if (!cuda) return BadInput("compute_ms: not a cuda executable");
  return cuda->compute_ms(std::max(iters, 1), std::max(repeats, 1));
}

std::string plan_summary(const Executable& exe) {
  const auto* cuda = dynamic_cast<const CudaExecutable*>(&exe);
  if (!cuda) return "(not a cuda executable)";
  const std::string d = cuda->plan().describe();
  return d.substr(0, d.find('\n'));
}

}  // namespace cuda

std::unique_ptr<Backend> make_cuda_backend(Precision precision) {
  const cuda::Storage s = precision == Precision::kFloat32    ? cuda::Storage::kF32
                          : precision == Precision::kBFloat16 ? cuda::Storage::kBF16
                                                              : cuda::Storage::kF16;
  return std::make_unique<cuda::CudaBackend>(s);
}

}  // namespace tr::nn
