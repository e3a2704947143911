// 2-D convolution on cuDNN for the CUDA backend (conv2d in engine/ops/conv.cpp, through
// engine/cuda_ops.h): forward, backward data (dL/dx) and backward filter (dL/dweight), in cuDNN 9's
// legacy convolution API (cudnnConvolutionForward and its two backward siblings, which cuDNN 9 still
// ships). The bias gradient is a plain sum of dy over N, H and W, done by the caller.
//
// Layout: NCHW tensors and OIHW filters, densely packed (contiguous), f32 or f64, with the options of
// torch.nn.functional.conv2d (stride, zero padding, dilation, groups), cross-correlation as in torch.
// f16 and bf16 (mixed precision, engine/autocast.h) run with f32 accumulation and may use tensor cores.
//
// Algorithms: for each problem (pass, device, dtype, shapes and options) cuDNN's heuristics
// (cudnnGet*Algorithm_v7, what PyTorch does unless benchmark mode is on) rank the algorithms; the first
// that keeps full precision (f32: CUDNN_FMA_MATH only, never TF32 tensor cores, so that results agree
// with the CPU backend; f64: any), needs at most kConvWorkspaceCap bytes of workspace and then runs
// (an algorithm that reports NOT_SUPPORTED or EXECUTION_FAILED, or whose workspace does not fit, gives
// way to the next) is taken, and remembered for the rest of the process. The workspace comes from the
// device's caching allocator (engine/cuda/device_memory.h) and goes back to it once the call is queued.
//
// One cuDNN handle per device, created on first use and bound to the device's stream; cuDNN forbids two
// threads from using one handle at once, so each call holds the device's handle lock while it queues its
// work. Handles live until the process ends (see cudnn_conv.cpp). Work is queued on the device's
// stream; the calls return at once. Errors: std::invalid_argument (naming `op`) for a dtype other
// than f32/f64 or sizes beyond cuDNN's 32-bit limits, std::runtime_error naming the cuDNN call and its
// status when cuDNN fails, or saying so when no algorithm fits the precision and workspace rules.
#pragma once
#include <cstddef>
#include <cstdint>

#include "engine/dtype.h"
#include "engine/ops/conv.h"
#include "engine/tensor.h"

namespace icd::cuda {

constexpr std::size_t kConvWorkspaceCap = std::size_t{256} << 20;

// One convolution's sizes: x [batch, in_channels, height, width], weight
// [out_channels, in_channels / groups, kernel_h, kernel_w], y [batch, out_channels, out_h, out_w].
struct ConvProblem {
  DType dtype = DType::f32;
  int64_t batch = 0, in_channels = 0, height = 0, width = 0;
  int64_t out_channels = 0, kernel_h = 0, kernel_w = 0;
  int64_t out_h = 0, out_w = 0;
  Conv2dOptions options;
};

// The problem of x_shape, weight_shape and y_shape (all 4-D; conv2d has checked them).
ConvProblem conv_problem(DType dtype, const Shape& x_shape, const Shape& weight_shape, const Shape& y_shape,
                         const Conv2dOptions& options);

// y = conv(x, weight) (+ bias, [out_channels], when `bias` is not null). y is overwritten.
void cudnn_conv_forward(const char* op, int device, const ConvProblem& problem, const void* x,
                        const void* weight, const void* bias, void* y);
// dx = dL/dx for the upstream gradient dy (y's shape). dx is overwritten.
void cudnn_conv_backward_data(const char* op, int device, const ConvProblem& problem, const void* dy,
                              const void* weight, void* dx);
// dweight = dL/dweight, summed over the batch. dweight is overwritten (zeros for an empty batch).
void cudnn_conv_backward_filter(const char* op, int device, const ConvProblem& problem, const void* x,
                                const void* dy, void* dweight);

}  // namespace icd::cuda
