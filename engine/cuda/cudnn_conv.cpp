#include "engine/cuda/cudnn_conv.h"

#include <array>
#include <climits>
#include <map>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/cuda/cuda_check.h"
#include "engine/cuda/device_memory.h"

namespace icd::cuda {
namespace {

// ---- handles

struct CudnnDevice {
  cudnnHandle_t handle = nullptr;
  std::mutex mutex;  // held while a call uses the handle
};

// The handles of all devices, created on demand and never destroyed, like the streams they are bound
// to (engine/cuda/device_memory.h): cuDNN 9 loads its sub-libraries (libcudnn_cnn, the engines) on
// first use, later than any object here could be constructed, so a destructor running at exit could
// not be ordered before their teardown. The driver reclaims the handles with the process.
class CudnnHandles {
 public:
  // `device` is current and `stream` is its stream.
  CudnnDevice& get(int device, cudaStream_t stream) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (devices_.size() <= static_cast<std::size_t>(device)) devices_.resize(device + 1);
    CudnnDevice*& slot = devices_[device];
    if (!slot) {
      cudnnHandle_t handle = nullptr;
      ICD_CUDNN_CHECK(cudnnCreate(&handle));
      cudnnStatus_t status = cudnnSetStream(handle, stream);
      if (status != CUDNN_STATUS_SUCCESS) {
        cudnnDestroy(handle);
        throw_cudnn_error(status, "cudnnSetStream(handle, stream)", __FILE__, __LINE__);
      }
      slot = new CudnnDevice;  // never deleted: see above
      slot->handle = handle;
    }
    return *slot;
  }

 private:
  std::mutex mutex_;
  std::vector<CudnnDevice*> devices_;
};

// The handle of `device`, made current.
CudnnDevice& cudnn_device(int device) {
  cudaStream_t stream = cuda_stream(device);  // checks the device, makes it current, starts the runtime
  static CudnnHandles& handles = *new CudnnHandles;  // never destroyed: see CudnnHandles
  return handles.get(device, stream);
}

// Runs body(handle) with `device` current and its handle locked.
template <class Body>
void with_cudnn(int device, Body&& body) {
  CudnnDevice& state = cudnn_device(device);
  std::lock_guard<std::mutex> lock(state.mutex);
  body(state.handle);
}

// ---- descriptors (each owns one cuDNN descriptor)

class TensorDescriptor {
 public:
  TensorDescriptor() { ICD_CUDNN_CHECK(cudnnCreateTensorDescriptor(&desc_)); }
  ~TensorDescriptor() { cudnnDestroyTensorDescriptor(desc_); }
  TensorDescriptor(const TensorDescriptor&) = delete;
  TensorDescriptor& operator=(const TensorDescriptor&) = delete;
  cudnnTensorDescriptor_t get() const { return desc_; }

 private:
  cudnnTensorDescriptor_t desc_ = nullptr;
};

class FilterDescriptor {
 public:
  FilterDescriptor() { ICD_CUDNN_CHECK(cudnnCreateFilterDescriptor(&desc_)); }
  ~FilterDescriptor() { cudnnDestroyFilterDescriptor(desc_); }
  FilterDescriptor(const FilterDescriptor&) = delete;
  FilterDescriptor& operator=(const FilterDescriptor&) = delete;
  cudnnFilterDescriptor_t get() const { return desc_; }

 private:
  cudnnFilterDescriptor_t desc_ = nullptr;
};

class ConvolutionDescriptor {
 public:
  ConvolutionDescriptor() { ICD_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&desc_)); }
  ~ConvolutionDescriptor() { cudnnDestroyConvolutionDescriptor(desc_); }
  ConvolutionDescriptor(const ConvolutionDescriptor&) = delete;
  ConvolutionDescriptor& operator=(const ConvolutionDescriptor&) = delete;
  cudnnConvolutionDescriptor_t get() const { return desc_; }

 private:
  cudnnConvolutionDescriptor_t desc_ = nullptr;
};

bool is_16_bit(DType dtype) {
  return dtype == DType::f16 || dtype == DType::bf16;
}

cudnnDataType_t data_type(DType dtype) {
  switch (dtype) {
    case DType::f64:
      return CUDNN_DATA_DOUBLE;
    case DType::f16:
      return CUDNN_DATA_HALF;
    case DType::bf16:
      return CUDNN_DATA_BFLOAT16;
    default:
      return CUDNN_DATA_FLOAT;
  }
}

// What the convolution accumulates in: the data's type, except f32 for 16-bit data (mixed precision,
// engine/autocast.h: cuDNN's "pseudo half" configuration, 16-bit in and out, f32 sums).
cudnnDataType_t compute_type(DType dtype) {
  return is_16_bit(dtype) ? CUDNN_DATA_FLOAT : data_type(dtype);
}

// The math type the heuristics are asked for: FMA for f32 rules out TF32 tensor cores; f64 has no
// reduced-precision mode to avoid; 16-bit data may use tensor cores, which lose nothing on 16-bit inputs.
cudnnMathType_t precise_math(DType dtype) {
  if (dtype == DType::f32) return CUDNN_FMA_MATH;
  return is_16_bit(dtype) ? CUDNN_TENSOR_OP_MATH : CUDNN_DEFAULT_MATH;
}

// cuDNN's alpha and beta: double for double data, float for everything else (16-bit data included).
constexpr float kOneSingle = 1.0f, kZeroSingle = 0.0f;
constexpr double kOneDouble = 1.0, kZeroDouble = 0.0;
const void* one(DType dtype) {
  return dtype == DType::f64 ? static_cast<const void*>(&kOneDouble) : static_cast<const void*>(&kOneSingle);
}
const void* zero(DType dtype) {
  return dtype == DType::f64 ? static_cast<const void*>(&kZeroDouble)
                             : static_cast<const void*>(&kZeroSingle);
}

std::string describe(const ConvProblem& p) {
  const Conv2dOptions& o = p.options;
  return "x [" + std::to_string(p.batch) + ", " + std::to_string(p.in_channels) + ", " +
         std::to_string(p.height) + ", " + std::to_string(p.width) + "], weight [" +
         std::to_string(p.out_channels) + ", " + std::to_string(p.in_channels / o.groups) + ", " +
         std::to_string(p.kernel_h) + ", " + std::to_string(p.kernel_w) + "], stride (" +
         std::to_string(o.stride_h) + ", " + std::to_string(o.stride_w) + "), padding (" +
         std::to_string(o.padding_h) + ", " + std::to_string(o.padding_w) + "), dilation (" +
         std::to_string(o.dilation_h) + ", " + std::to_string(o.dilation_w) + "), groups " +
         std::to_string(o.groups) + ", " + dtype_name(p.dtype);
}

// The checks before anything reaches cuDNN: its legacy API takes int sizes and tensors of fewer than
// 2^31 elements.
void check_problem(const char* op, const ConvProblem& p) {
  if (p.dtype != DType::f32 && p.dtype != DType::f64 && !is_16_bit(p.dtype))
    throw std::invalid_argument(std::string(op) + " (cuDNN): takes f32, f64, f16 or bf16, got " +
                                dtype_name(p.dtype));
  const int64_t weight_numel = p.out_channels * (p.in_channels / p.options.groups) * p.kernel_h * p.kernel_w;
  for (int64_t numel : {p.batch * p.in_channels * p.height * p.width, weight_numel,
                        p.batch * p.out_channels * p.out_h * p.out_w})
    if (numel > INT_MAX)
      throw std::invalid_argument(std::string(op) + " (cuDNN): a tensor of " + std::to_string(numel) +
                                  " elements exceeds cuDNN's 32-bit limit, for " + describe(p));
  for (int64_t value : {p.options.padding_h, p.options.padding_w, p.options.stride_h, p.options.stride_w,
                        p.options.dilation_h, p.options.dilation_w})
    if (value > INT_MAX)
      throw std::invalid_argument(std::string(op) + " (cuDNN): an option exceeds cuDNN's 32-bit limit, for " +
                                  describe(p));
}

// The descriptors of one problem (batch >= 1), with the convolution in precise_math.
struct ConvDescriptors {
  TensorDescriptor x, y;
  FilterDescriptor w;
  ConvolutionDescriptor conv;

  ConvDescriptors(const char* op, const ConvProblem& p) {
    const cudnnDataType_t type = data_type(p.dtype);
    const Conv2dOptions& o = p.options;
    auto i = [](int64_t value) { return static_cast<int>(value); };  // in range: check_problem
    ICD_CUDNN_CHECK(cudnnSetTensor4dDescriptor(x.get(), CUDNN_TENSOR_NCHW, type, i(p.batch), i(p.in_channels),
                                               i(p.height), i(p.width)));
    ICD_CUDNN_CHECK(cudnnSetFilter4dDescriptor(w.get(), type, CUDNN_TENSOR_NCHW, i(p.out_channels),
                                               i(p.in_channels / o.groups), i(p.kernel_h), i(p.kernel_w)));
    ICD_CUDNN_CHECK(cudnnSetTensor4dDescriptor(y.get(), CUDNN_TENSOR_NCHW, type, i(p.batch),
                                               i(p.out_channels), i(p.out_h), i(p.out_w)));
    ICD_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(conv.get(), i(o.padding_h), i(o.padding_w), i(o.stride_h),
                                                    i(o.stride_w), i(o.dilation_h), i(o.dilation_w),
                                                    CUDNN_CROSS_CORRELATION, compute_type(p.dtype)));
    ICD_CUDNN_CHECK(cudnnSetConvolutionGroupCount(conv.get(), i(o.groups)));
    ICD_CUDNN_CHECK(cudnnSetConvolutionMathType(conv.get(), precise_math(p.dtype)));
    // cuDNN's own output size must be ours (conv2d_output_size), or the descriptors disagree with the
    // tensors they describe.
    int n = 0, c = 0, h = 0, width = 0;
    ICD_CUDNN_CHECK(cudnnGetConvolution2dForwardOutputDim(conv.get(), x.get(), w.get(), &n, &c, &h, &width));
    if (n != p.batch || c != p.out_channels || h != p.out_h || width != p.out_w)
      throw std::logic_error(std::string(op) + " (cuDNN): cuDNN computes the output [" + std::to_string(n) +
                             ", " + std::to_string(c) + ", " + std::to_string(h) + ", " +
                             std::to_string(width) + "] but the output given is [" + std::to_string(p.batch) +
                             ", " + std::to_string(p.out_channels) + ", " + std::to_string(p.out_h) + ", " +
                             std::to_string(p.out_w) + "], for " + describe(p));
  }
};

// ---- algorithm choice

enum class Pass { forward, backward_data, backward_filter };

const char* pass_name(Pass pass) {
  switch (pass) {
    case Pass::forward:
      return "forward";
    case Pass::backward_data:
      return "backward-data";
    case Pass::backward_filter:
      return "backward-filter";
  }
  return "?";
}

struct AlgorithmChoice {
  int algorithm = 0;  // a cudnnConvolution{Fwd,BwdData,BwdFilter}Algo_t of the pass
  cudnnMathType_t math = CUDNN_DEFAULT_MATH;
  std::size_t workspace = 0;
};

using ProblemKey = std::array<int64_t, 19>;

ProblemKey key_of(Pass pass, int device, const ConvProblem& p) {
  const Conv2dOptions& o = p.options;
  return {static_cast<int64_t>(pass),
          device,
          static_cast<int64_t>(p.dtype),
          p.batch,
          p.in_channels,
          p.height,
          p.width,
          p.out_channels,
          p.kernel_h,
          p.kernel_w,
          p.out_h,
          p.out_w,
          o.stride_h,
          o.stride_w,
          o.padding_h,
          o.padding_w,
          o.dilation_h,
          o.dilation_w,
          o.groups};
}

// The choices made so far, for the life of the process (a training run meets a few dozen problems).
class AlgorithmCache {
 public:
  std::optional<AlgorithmChoice> find(const ProblemKey& key) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = choices_.find(key);
    if (it == choices_.end()) return std::nullopt;
    return it->second;
  }
  void insert(const ProblemKey& key, const AlgorithmChoice& choice) {
    std::lock_guard<std::mutex> lock(mutex_);
    choices_[key] = choice;
  }

 private:
  std::mutex mutex_;
  std::map<ProblemKey, AlgorithmChoice> choices_;
};

AlgorithmCache& algorithm_cache() {
  static AlgorithmCache cache;
  return cache;
}

// cuDNN's ranked candidates that ran their heuristics successfully, keep full precision and need at most
// kConvWorkspaceCap bytes, in rank order. `workspace_size(algo, &bytes)` asks cuDNN for the workspace of a
// candidate with the convolution descriptor set to the candidate's math type.
template <class Perf, class WorkspaceSize>
std::vector<AlgorithmChoice> viable(const char* op, Pass pass, const ConvProblem& p,
                                    const std::vector<Perf>& ranked, cudnnConvolutionDescriptor_t conv,
                                    WorkspaceSize workspace_size) {
  std::vector<AlgorithmChoice> choices;
  std::size_t smallest_over_cap = 0;
  for (const Perf& perf : ranked) {
    if (perf.status != CUDNN_STATUS_SUCCESS) continue;
    if (p.dtype == DType::f32 && perf.mathType != CUDNN_FMA_MATH) continue;  // TF32 would break parity
    ICD_CUDNN_CHECK(cudnnSetConvolutionMathType(conv, perf.mathType));
    std::size_t bytes = 0;
    if (workspace_size(perf.algo, &bytes) != CUDNN_STATUS_SUCCESS) continue;
    if (bytes > kConvWorkspaceCap) {
      if (smallest_over_cap == 0 || bytes < smallest_over_cap) smallest_over_cap = bytes;
      continue;
    }
    choices.push_back({static_cast<int>(perf.algo), perf.mathType, bytes});
  }
  if (!choices.empty()) return choices;
  std::string why = "none of cuDNN's " + std::to_string(ranked.size()) + " ranked " + pass_name(pass) +
                    " algorithms runs in full precision within the workspace cap of " +
                    std::to_string(kConvWorkspaceCap >> 20) + " MiB";
  if (smallest_over_cap) why += " (the smallest needs " + std::to_string(smallest_over_cap >> 20) + " MiB)";
  throw std::runtime_error(std::string(op) + " (cuDNN): " + why + ", for " + describe(p));
}

// Runs one pass of a convolution: `call(choice, workspace, bytes)` queues it with an algorithm and returns
// cuDNN's status. With the choice cached for (pass, device, problem); the first time, with each viable
// candidate (`candidates()`, run under the handle lock) in rank order until one runs, which is cached.
// The heuristics occasionally rank an algorithm that then reports NOT_SUPPORTED or EXECUTION_FAILED, or
// whose workspace does not fit in the device's free memory; PyTorch walks its list for the same reason.
template <class Candidates, class Call>
void run_pass(const char* op, Pass pass, int device, const ConvProblem& p, cudnnConvolutionDescriptor_t conv,
              Candidates candidates, Call call) {
  auto attempt = [&](const AlgorithmChoice& choice) {
    ICD_CUDNN_CHECK(cudnnSetConvolutionMathType(conv, choice.math));
    const DeviceBuffer workspace(device, choice.workspace);
    return call(choice, workspace.data(), workspace.bytes());
  };
  const ProblemKey key = key_of(pass, device, p);
  if (std::optional<AlgorithmChoice> cached = algorithm_cache().find(key)) {
    const cudnnStatus_t status = attempt(*cached);
    if (status != CUDNN_STATUS_SUCCESS)
      throw_cudnn_error(status, "the cached convolution algorithm", __FILE__, __LINE__);
    return;
  }
  std::string failures;
  for (const AlgorithmChoice& choice : candidates()) {
    const std::string name = "algorithm " + std::to_string(choice.algorithm);
    cudnnStatus_t status = CUDNN_STATUS_SUCCESS;
    try {
      status = attempt(choice);
    } catch (const std::runtime_error& error) {  // the workspace did not fit
      failures += "; " + name + ": " + error.what();
      continue;
    }
    if (status == CUDNN_STATUS_SUCCESS) {
      algorithm_cache().insert(key, choice);
      return;
    }
    if (status != CUDNN_STATUS_NOT_SUPPORTED && status != CUDNN_STATUS_EXECUTION_FAILED)
      throw_cudnn_error(status, "the convolution", __FILE__, __LINE__);
    failures += "; " + name + ": " + cudnnGetErrorString(status);
  }
  throw std::runtime_error(std::string(op) + " (cuDNN): every viable " + pass_name(pass) +
                           " algorithm failed, for " + describe(p) + failures);
}

std::vector<AlgorithmChoice> forward_candidates(const char* op, const ConvProblem& p, cudnnHandle_t handle,
                                                const ConvDescriptors& d) {
  int most = 0, returned = 0;
  ICD_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithmMaxCount(handle, &most));
  std::vector<cudnnConvolutionFwdAlgoPerf_t> ranked(most);
  ICD_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(handle, d.x.get(), d.w.get(), d.conv.get(),
                                                         d.y.get(), most, &returned, ranked.data()));
  ranked.resize(returned);
  return viable(op, Pass::forward, p, ranked, d.conv.get(),
                [&](cudnnConvolutionFwdAlgo_t algo, std::size_t* bytes) {
                  return cudnnGetConvolutionForwardWorkspaceSize(handle, d.x.get(), d.w.get(), d.conv.get(),
                                                                 d.y.get(), algo, bytes);
                });
}

std::vector<AlgorithmChoice> backward_data_candidates(const char* op, const ConvProblem& p,
                                                      cudnnHandle_t handle, const ConvDescriptors& d) {
  int most = 0, returned = 0;
  ICD_CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithmMaxCount(handle, &most));
  std::vector<cudnnConvolutionBwdDataAlgoPerf_t> ranked(most);
  ICD_CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(handle, d.w.get(), d.y.get(), d.conv.get(),
                                                              d.x.get(), most, &returned, ranked.data()));
  ranked.resize(returned);
  return viable(op, Pass::backward_data, p, ranked, d.conv.get(),
                [&](cudnnConvolutionBwdDataAlgo_t algo, std::size_t* bytes) {
                  return cudnnGetConvolutionBackwardDataWorkspaceSize(handle, d.w.get(), d.y.get(),
                                                                      d.conv.get(), d.x.get(), algo, bytes);
                });
}

std::vector<AlgorithmChoice> backward_filter_candidates(const char* op, const ConvProblem& p,
                                                        cudnnHandle_t handle, const ConvDescriptors& d) {
  int most = 0, returned = 0;
  ICD_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(handle, &most));
  std::vector<cudnnConvolutionBwdFilterAlgoPerf_t> ranked(most);
  ICD_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(handle, d.x.get(), d.y.get(), d.conv.get(),
                                                                d.w.get(), most, &returned, ranked.data()));
  ranked.resize(returned);
  return viable(op, Pass::backward_filter, p, ranked, d.conv.get(),
                [&](cudnnConvolutionBwdFilterAlgo_t algo, std::size_t* bytes) {
                  return cudnnGetConvolutionBackwardFilterWorkspaceSize(handle, d.x.get(), d.y.get(),
                                                                        d.conv.get(), d.w.get(), algo, bytes);
                });
}

}  // namespace

ConvProblem conv_problem(DType dtype, const Shape& x_shape, const Shape& weight_shape, const Shape& y_shape,
                         const Conv2dOptions& options) {
  if (x_shape.size() != 4 || weight_shape.size() != 4 || y_shape.size() != 4)
    throw std::invalid_argument("conv_problem: x " + shape_str(x_shape) + ", weight " +
                                shape_str(weight_shape) + " and y " + shape_str(y_shape) +
                                " must all be 4-D");
  ConvProblem p;
  p.dtype = dtype;
  p.batch = x_shape[0];
  p.in_channels = x_shape[1];
  p.height = x_shape[2];
  p.width = x_shape[3];
  p.out_channels = weight_shape[0];
  p.kernel_h = weight_shape[2];
  p.kernel_w = weight_shape[3];
  p.out_h = y_shape[2];
  p.out_w = y_shape[3];
  p.options = options;
  return p;
}

void cudnn_conv_forward(const char* op, int device, const ConvProblem& p, const void* x, const void* weight,
                        const void* bias, void* y) {
  check_problem(op, p);
  if (p.batch == 0) return;
  with_cudnn(device, [&](cudnnHandle_t handle) {
    const ConvDescriptors d(op, p);
    run_pass(
        op, Pass::forward, device, p, d.conv.get(), [&] { return forward_candidates(op, p, handle, d); },
        [&](const AlgorithmChoice& choice, void* workspace, std::size_t bytes) {
          return cudnnConvolutionForward(handle, one(p.dtype), d.x.get(), x, d.w.get(), weight, d.conv.get(),
                                         static_cast<cudnnConvolutionFwdAlgo_t>(choice.algorithm), workspace,
                                         bytes, zero(p.dtype), d.y.get(), y);
        });
    if (bias) {
      // y += bias, broadcast from [1, C_out, 1, 1].
      const TensorDescriptor bias_desc;
      ICD_CUDNN_CHECK(cudnnSetTensor4dDescriptor(bias_desc.get(), CUDNN_TENSOR_NCHW, data_type(p.dtype), 1,
                                                 static_cast<int>(p.out_channels), 1, 1));
      ICD_CUDNN_CHECK(
          cudnnAddTensor(handle, one(p.dtype), bias_desc.get(), bias, one(p.dtype), d.y.get(), y));
    }
  });
}

void cudnn_conv_backward_data(const char* op, int device, const ConvProblem& p, const void* dy,
                              const void* weight, void* dx) {
  check_problem(op, p);
  if (p.batch == 0) return;
  with_cudnn(device, [&](cudnnHandle_t handle) {
    const ConvDescriptors d(op, p);
    run_pass(
        op, Pass::backward_data, device, p, d.conv.get(),
        [&] { return backward_data_candidates(op, p, handle, d); },
        [&](const AlgorithmChoice& choice, void* workspace, std::size_t bytes) {
          return cudnnConvolutionBackwardData(handle, one(p.dtype), d.w.get(), weight, d.y.get(), dy,
                                              d.conv.get(),
                                              static_cast<cudnnConvolutionBwdDataAlgo_t>(choice.algorithm),
                                              workspace, bytes, zero(p.dtype), d.x.get(), dx);
        });
  });
}

void cudnn_conv_backward_filter(const char* op, int device, const ConvProblem& p, const void* x,
                                const void* dy, void* dweight) {
  check_problem(op, p);
  if (p.batch == 0) {
    // No image contributes: the gradient is zero (all-zero bytes are 0.0 in f32 and f64).
    const int64_t numel = p.out_channels * (p.in_channels / p.options.groups) * p.kernel_h * p.kernel_w;
    ICD_CUDA_CHECK(cudaMemsetAsync(dweight, 0, dtype_size(p.dtype) * static_cast<std::size_t>(numel),
                                   cuda_stream(device)));
    return;
  }
  with_cudnn(device, [&](cudnnHandle_t handle) {
    const ConvDescriptors d(op, p);
    run_pass(
        op, Pass::backward_filter, device, p, d.conv.get(),
        [&] { return backward_filter_candidates(op, p, handle, d); },
        [&](const AlgorithmChoice& choice, void* workspace, std::size_t bytes) {
          return cudnnConvolutionBackwardFilter(
              handle, one(p.dtype), d.x.get(), x, d.y.get(), dy, d.conv.get(),
              static_cast<cudnnConvolutionBwdFilterAlgo_t>(choice.algorithm), workspace, bytes, zero(p.dtype),
              d.w.get(), dweight);
        });
  });
}

}  // namespace icd::cuda
