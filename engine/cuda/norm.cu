// CUDA kernels for batch, group and layer norm. The arithmetic is the ICD_HD bodies of
// engine/kernels/norm_math.h; this file decides which thread does what:
// - statistics and the backward's sums: one block per set, each thread summing a strided share of the
//   set's elements in double, the shares added in a tree over the block (a fixed order: no atomics);
// - the per-element maps (forward, dx): one thread per element;
// - per-channel finishing steps (constants of dx, dw, db): one thread per channel, set or column.
#include <algorithm>
#include <stdexcept>
#include <string>

#include "engine/cuda/cuda_check.h"
#include "engine/cuda/device_memory.h"
#include "engine/cuda/grid.h"
#include "engine/cuda/norm_kernels.h"
#include "engine/cuda/runtime.h"

namespace icd::cuda {
namespace {

int blocks_per_set(int64_t sets) {
  return int(std::max<int64_t>(1, std::min<int64_t>(sets, kMaxGridBlocks)));
}

// The sum of buf[0 .. blockDim.x) in a tree (s = blockDim/2, ..., 1: buf[t] += buf[t + s]); every thread
// gets the total. buf is the caller's shared array, free again when this returns.
__device__ double block_sum(double* buf, double value) {
  buf[threadIdx.x] = value;
  __syncthreads();
  for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) buf[threadIdx.x] += buf[threadIdx.x + s];
    __syncthreads();
  }
  const double total = buf[0];
  __syncthreads();
  return total;
}

template <class T>
__global__ void moments_kernel(kernels::NormSets s, const T* x, double eps, double* mean, double* invstd,
                               double* var) {
  __shared__ double buf[kBlockThreads];
  for (int64_t set = blockIdx.x; set < s.sets; set += gridDim.x) {
    const double count = static_cast<double>(s.count);
    const double m = block_sum(buf, kernels::set_partial_sum(x, s, set, threadIdx.x, blockDim.x)) / count;
    const double v =
        block_sum(buf, kernels::set_partial_squares(x, s, set, threadIdx.x, blockDim.x, m)) / count;
    if (threadIdx.x == 0) {
      mean[set] = m;
      invstd[set] = kernels::norm_inverse_std(v, eps);
      if (var) var[set] = v;
    }
  }
}

template <class T>
__global__ void stats_from_running_kernel(int64_t C, const T* rm, int64_t rm_stride, const T* rv,
                                          int64_t rv_stride, double eps, double* mean, double* invstd) {
  const int64_t stride = int64_t(blockDim.x) * gridDim.x;
  for (int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; c < C; c += stride) {
    mean[c] = static_cast<double>(rm[c * rm_stride]);
    invstd[c] = kernels::norm_inverse_std(static_cast<double>(rv[c * rv_stride]), eps);
  }
}

template <class T>
__global__ void running_stats_kernel(int64_t C, T* rm, int64_t rm_stride, T* rv, int64_t rv_stride,
                                     const double* mean, const double* var, double momentum, double unbias) {
  const int64_t stride = int64_t(blockDim.x) * gridDim.x;
  for (int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; c < C; c += stride)
    kernels::update_running_stats(rm[c * rm_stride], rv[c * rv_stride], mean[c], var[c], momentum, unbias);
}

template <class T>
__global__ void channel_forward_kernel(kernels::ChannelNorm cn, const T* x, const double* mean,
                                       const double* invstd, const T* weight, const T* bias, T* y) {
  const int64_t n = cn.numel(), stride = int64_t(blockDim.x) * gridDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    y[i] = kernels::channel_norm_forward_element(x, cn, mean, invstd, weight, bias, i);
}

template <class T>
__global__ void layer_forward_kernel(int64_t n, int64_t D, const T* x, const double* mean,
                                     const double* invstd, const T* weight, const T* bias, T* y) {
  const int64_t stride = int64_t(blockDim.x) * gridDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    y[i] = kernels::layer_norm_forward_element(x, D, mean, invstd, weight, bias, i);
}

// sums[2 set], sums[2 set + 1]: the sums of g_hat and g_hat (x - mu) over each set, mu = mean[set /
// per_stat].
template <class T>
__global__ void grad_sums_kernel(kernels::NormSets s, const T* x, const T* grad, const T* weight_by_k,
                                 const double* mean, int64_t per_stat, double* sums) {
  __shared__ double buf[kBlockThreads];
  for (int64_t set = blockIdx.x; set < s.sets; set += gridDim.x) {
    const kernels::NormGradSums part = kernels::set_partial_grad_sums(
        x, grad, weight_by_k, s, set, threadIdx.x, blockDim.x, mean[set / per_stat]);
    const double g = block_sum(buf, part.g);
    const double g_x_mu = block_sum(buf, part.g_x_mu);
    if (threadIdx.x == 0) {
      sums[2 * set] = g;
      sums[2 * set + 1] = g_x_mu;
    }
  }
}

// Batch norm, one thread per channel: dx's constants, dw and db.
template <class T>
__global__ void batch_norm_finish_kernel(int64_t C, const double* sums, const double* invstd, const T* weight,
                                         double inv_m, bool training, double* c_x, double* c_0, T* dw,
                                         T* db) {
  const int64_t stride = int64_t(blockDim.x) * gridDim.x;
  for (int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; c < C; c += stride) {
    const kernels::NormGradSums channel{sums[2 * c], sums[2 * c + 1]};
    const double w = weight ? static_cast<double>(weight[c]) : 1.0;
    const kernels::GradConstants k =
        kernels::batch_norm_grad_constants(channel, invstd[c], w, inv_m, training);
    c_x[c] = k.c_x;
    c_0[c] = k.c_0;
    if (dw) dw[c] = static_cast<T>(channel.g_x_mu * invstd[c]);
    if (db) db[c] = static_cast<T>(channel.g);
  }
}

// Group norm, one thread per (sample, group): the group's sums of g_hat from its channels' sums of g.
template <class T>
__global__ void group_norm_constants_kernel(kernels::ChannelNorm cn, const double* sums, const double* invstd,
                                            const T* weight, double inv_m, double* c_x, double* c_0) {
  const int64_t sets = cn.N * cn.groups, group_channels = cn.C / cn.groups;
  const int64_t stride = int64_t(blockDim.x) * gridDim.x;
  for (int64_t ng = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; ng < sets; ng += stride) {
    const int64_t n = ng / cn.groups, first_channel = (ng % cn.groups) * group_channels;
    kernels::NormGradSums group;
    for (int64_t j = 0; j < group_channels; ++j) {
      const int64_t c = first_channel + j;
      const double w = weight ? static_cast<double>(weight[c]) : 1.0;
      group.g += w * sums[2 * (n * cn.C + c)];
      group.g_x_mu += w * sums[2 * (n * cn.C + c) + 1];
    }
    const kernels::GradConstants k = kernels::set_grad_constants(group, invstd[ng], inv_m);
    c_x[ng] = k.c_x;
    c_0[ng] = k.c_0;
  }
}

// Group norm, one thread per channel: dw and db summed over the samples in order.
template <class T>
__global__ void group_norm_params_kernel(kernels::ChannelNorm cn, const double* sums, const double* invstd,
                                         T* dw, T* db) {
  const int64_t group_channels = cn.C / cn.groups, stride = int64_t(blockDim.x) * gridDim.x;
  for (int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; c < cn.C; c += stride) {
    double total_g = 0.0, total_g_xhat = 0.0;
    for (int64_t n = 0; n < cn.N; ++n) {
      total_g += sums[2 * (n * cn.C + c)];
      total_g_xhat += sums[2 * (n * cn.C + c) + 1] * invstd[n * cn.groups + c / group_channels];
    }
    if (dw) dw[c] = static_cast<T>(total_g_xhat);
    if (db) db[c] = static_cast<T>(total_g);
  }
}

// Layer norm, one thread per row: dx's constants.
__global__ void set_constants_kernel(int64_t sets, const double* sums, const double* invstd, double inv_m,
                                     double* c_x, double* c_0) {
  const int64_t stride = int64_t(blockDim.x) * gridDim.x;
  for (int64_t r = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; r < sets; r += stride) {
    const kernels::GradConstants k =
        kernels::set_grad_constants({sums[2 * r], sums[2 * r + 1]}, invstd[r], inv_m);
    c_x[r] = k.c_x;
    c_0[r] = k.c_0;
  }
}

template <class T>
__global__ void channel_grad_kernel(kernels::ChannelNorm cn, const T* grad, const T* x, const double* mean,
                                    const double* invstd, const T* weight, const double* c_x,
                                    const double* c_0, T* dx) {
  const int64_t n = cn.numel(), stride = int64_t(blockDim.x) * gridDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    dx[i] = kernels::channel_norm_grad_element(grad, x, cn, mean, invstd, weight, c_x, c_0, i);
}

template <class T>
__global__ void layer_grad_kernel(int64_t n, int64_t D, const T* grad, const T* x, const double* mean,
                                  const double* invstd, const T* weight, const double* c_x, const double* c_0,
                                  T* dx) {
  const int64_t stride = int64_t(blockDim.x) * gridDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    dx[i] = kernels::layer_norm_grad_element(grad, x, D, mean, invstd, weight, c_x, c_0, i);
}

// Layer norm's dw, db: thread (block b, column j) sums rows [b rows_per_block, (b + 1) rows_per_block).
template <class T>
__global__ void layer_params_partial_kernel(int64_t R, int64_t D, int64_t blocks, int64_t rows_per_block,
                                            const T* grad, const T* x, const double* mean,
                                            const double* invstd, double* partial_w, double* partial_b) {
  const int64_t n = blocks * D, stride = int64_t(blockDim.x) * gridDim.x;
  for (int64_t k = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; k < n; k += stride) {
    const int64_t b = k / D, j = k % D;
    const int64_t end = (b + 1) * rows_per_block < R ? (b + 1) * rows_per_block : R;
    double w = 0.0, bias = 0.0;
    kernels::layer_norm_param_partial(grad, x, D, mean, invstd, b * rows_per_block, end, j, w, bias);
    partial_w[k] = w;
    partial_b[k] = bias;
  }
}

template <class T>
__global__ void layer_params_final_kernel(int64_t D, int64_t blocks, const double* partial_w,
                                          const double* partial_b, T* dw, T* db) {
  const int64_t stride = int64_t(blockDim.x) * gridDim.x;
  for (int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; j < D; j += stride) {
    double total_w = 0.0, total_b = 0.0;
    for (int64_t b = 0; b < blocks; ++b) {
      total_w += partial_w[b * D + j];
      total_b += partial_b[b * D + j];
    }
    if (dw) dw[j] = static_cast<T>(total_w);
    if (db) db[j] = static_cast<T>(total_b);
  }
}

void prepare(const char* op, DType dtype, int device) {
  if (dtype != DType::f32 && dtype != DType::f64)
    throw std::invalid_argument(std::string(op) + ": dtype " + dtype_name(dtype) +
                                " is not supported (f32 and f64 are)");
  use_device(op, device);
}

// Device scratch of doubles from the caching allocator, released when it goes out of scope: the allocator
// hands the memory out again only to work queued later on the same stream, after the kernels using it.
struct Scratch {
  Scratch(int device, int64_t count)
      : device(device),
        data(static_cast<double*>(
            cuda_caching_allocator(device).allocate(sizeof(double) * std::size_t(count)))) {}
  ~Scratch() { cuda_caching_allocator(device).release(data); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  int device;
  double* data;
};

template <class T>
const T* as(const void* p) {
  return static_cast<const T*>(p);
}
template <class T>
T* as(void* p) {
  return static_cast<T*>(p);
}

}  // namespace

void cuda_norm_moments(DType dtype, const kernels::NormSets& sets, const void* x, double eps, double* mean,
                       double* invstd, double* var, int device) {
  const char* op = "normalisation statistics (CUDA)";
  prepare(op, dtype, device);
  if (sets.sets == 0) return;
  dispatch_floating(dtype, op, [&](auto tag) {
    using T = decltype(tag);
    moments_kernel<T><<<blocks_per_set(sets.sets), kBlockThreads, 0, cuda_stream(device)>>>(
        sets, as<T>(x), eps, mean, invstd, var);
  });
  ICD_CUDA_CHECK(cudaGetLastError());
}

void cuda_norm_stats_from_running(DType dtype, int64_t C, const void* running_mean, int64_t mean_stride,
                                  const void* running_var, int64_t var_stride, double eps, double* mean,
                                  double* invstd, int device) {
  const char* op = "batch_norm running statistics (CUDA)";
  prepare(op, dtype, device);
  if (C == 0) return;
  dispatch_floating(dtype, op, [&](auto tag) {
    using T = decltype(tag);
    stats_from_running_kernel<T><<<grid_blocks(C), kBlockThreads, 0, cuda_stream(device)>>>(
        C, as<T>(running_mean), mean_stride, as<T>(running_var), var_stride, eps, mean, invstd);
  });
  ICD_CUDA_CHECK(cudaGetLastError());
}

void cuda_update_running_stats(DType dtype, int64_t C, void* running_mean, int64_t mean_stride,
                               void* running_var, int64_t var_stride, const double* mean, const double* var,
                               double momentum, double unbias, int device) {
  const char* op = "batch_norm running statistics update (CUDA)";
  prepare(op, dtype, device);
  if (C == 0) return;
  dispatch_floating(dtype, op, [&](auto tag) {
    using T = decltype(tag);
    running_stats_kernel<T><<<grid_blocks(C), kBlockThreads, 0, cuda_stream(device)>>>(
        C, as<T>(running_mean), mean_stride, as<T>(running_var), var_stride, mean, var, momentum, unbias);
  });
  ICD_CUDA_CHECK(cudaGetLastError());
}

void cuda_channel_norm_forward(DType dtype, const kernels::ChannelNorm& cn, const void* x, const double* mean,
                               const double* invstd, const void* weight, const void* bias, void* y,
                               int device) {
  const char* op = "batch_norm / group_norm (CUDA)";
  prepare(op, dtype, device);
  if (cn.numel() == 0) return;
  dispatch_floating(dtype, op, [&](auto tag) {
    using T = decltype(tag);
    channel_forward_kernel<T><<<grid_blocks(cn.numel()), kBlockThreads, 0, cuda_stream(device)>>>(
        cn, as<T>(x), mean, invstd, as<T>(weight), as<T>(bias), as<T>(y));
  });
  ICD_CUDA_CHECK(cudaGetLastError());
}

void cuda_layer_norm_forward(DType dtype, int64_t R, int64_t D, const void* x, const double* mean,
                             const double* invstd, const void* weight, const void* bias, void* y,
                             int device) {
  const char* op = "layer_norm (CUDA)";
  prepare(op, dtype, device);
  if (R * D == 0) return;
  dispatch_floating(dtype, op, [&](auto tag) {
    using T = decltype(tag);
    layer_forward_kernel<T><<<grid_blocks(R * D), kBlockThreads, 0, cuda_stream(device)>>>(
        R * D, D, as<T>(x), mean, invstd, as<T>(weight), as<T>(bias), as<T>(y));
  });
  ICD_CUDA_CHECK(cudaGetLastError());
}

void cuda_batch_norm_backward(DType dtype, const kernels::ChannelNorm& cn, const void* x, const void* grad,
                              const double* mean, const double* invstd, const void* weight, bool training,
                              void* dx, void* dw, void* db, int device) {
  const char* op = "batch_norm backward (CUDA)";
  prepare(op, dtype, device);
  const int64_t C = cn.C;
  if (C == 0) return;
  const kernels::NormSets channels = cn.stat_sets();
  const double inv_m = 1.0 / static_cast<double>(channels.count);
  Scratch sums(device, 2 * C), c_x(device, C), c_0(device, C);
  cudaStream_t stream = cuda_stream(device);
  dispatch_floating(dtype, op, [&](auto tag) {
    using T = decltype(tag);
    grad_sums_kernel<T><<<blocks_per_set(C), kBlockThreads, 0, stream>>>(channels, as<T>(x), as<T>(grad),
                                                                         nullptr, mean, 1, sums.data);
    ICD_CUDA_CHECK(cudaGetLastError());
    batch_norm_finish_kernel<T><<<grid_blocks(C), kBlockThreads, 0, stream>>>(
        C, sums.data, invstd, as<T>(weight), inv_m, training, c_x.data, c_0.data, as<T>(dw), as<T>(db));
    ICD_CUDA_CHECK(cudaGetLastError());
    if (dx && cn.numel() > 0)
      channel_grad_kernel<T><<<grid_blocks(cn.numel()), kBlockThreads, 0, stream>>>(
          cn, as<T>(grad), as<T>(x), mean, invstd, as<T>(weight), c_x.data, c_0.data, as<T>(dx));
  });
  ICD_CUDA_CHECK(cudaGetLastError());
}

void cuda_group_norm_backward(DType dtype, const kernels::ChannelNorm& cn, const void* x, const void* grad,
                              const double* mean, const double* invstd, const void* weight, void* dx,
                              void* dw, void* db, int device) {
  const char* op = "group_norm backward (CUDA)";
  prepare(op, dtype, device);
  const int64_t channels = cn.N * cn.C, groups = cn.N * cn.groups;
  if (channels == 0) return;
  // Per (n, c): the sums of g and g (x - mu) over its S elements; mu is its group's mean.
  const kernels::NormSets per_channel{channels, cn.S, cn.S, 0, cn.S};
  const double inv_m = 1.0 / static_cast<double>((cn.C / cn.groups) * cn.S);
  Scratch sums(device, 2 * channels), c_x(device, groups), c_0(device, groups);
  cudaStream_t stream = cuda_stream(device);
  dispatch_floating(dtype, op, [&](auto tag) {
    using T = decltype(tag);
    grad_sums_kernel<T><<<blocks_per_set(channels), kBlockThreads, 0, stream>>>(
        per_channel, as<T>(x), as<T>(grad), nullptr, mean, cn.C / cn.groups, sums.data);
    ICD_CUDA_CHECK(cudaGetLastError());
    if (dw || db) {
      group_norm_params_kernel<T>
          <<<grid_blocks(cn.C), kBlockThreads, 0, stream>>>(cn, sums.data, invstd, as<T>(dw), as<T>(db));
      ICD_CUDA_CHECK(cudaGetLastError());
    }
    if (!dx || cn.numel() == 0) return;
    group_norm_constants_kernel<T><<<grid_blocks(groups), kBlockThreads, 0, stream>>>(
        cn, sums.data, invstd, as<T>(weight), inv_m, c_x.data, c_0.data);
    ICD_CUDA_CHECK(cudaGetLastError());
    channel_grad_kernel<T><<<grid_blocks(cn.numel()), kBlockThreads, 0, stream>>>(
        cn, as<T>(grad), as<T>(x), mean, invstd, as<T>(weight), c_x.data, c_0.data, as<T>(dx));
  });
  ICD_CUDA_CHECK(cudaGetLastError());
}

void cuda_layer_norm_backward(DType dtype, int64_t R, int64_t D, const void* x, const void* grad,
                              const double* mean, const double* invstd, const void* weight, void* dx,
                              void* dw, void* db, int device) {
  const char* op = "layer_norm backward (CUDA)";
  prepare(op, dtype, device);
  if (R * D == 0) return;
  const int64_t blocks = std::min<int64_t>(R, kernels::kLayerNormRowBlocks);
  const int64_t rows_per_block = (R + blocks - 1) / blocks;
  const kernels::NormSets rows{R, D, D, 0, D};
  cudaStream_t stream = cuda_stream(device);
  dispatch_floating(dtype, op, [&](auto tag) {
    using T = decltype(tag);
    if (dw || db) {
      Scratch partial_w(device, blocks * D), partial_b(device, blocks * D);
      layer_params_partial_kernel<T><<<grid_blocks(blocks * D), kBlockThreads, 0, stream>>>(
          R, D, blocks, rows_per_block, as<T>(grad), as<T>(x), mean, invstd, partial_w.data, partial_b.data);
      ICD_CUDA_CHECK(cudaGetLastError());
      layer_params_final_kernel<T><<<grid_blocks(D), kBlockThreads, 0, stream>>>(
          D, blocks, partial_w.data, partial_b.data, as<T>(dw), as<T>(db));
      ICD_CUDA_CHECK(cudaGetLastError());
    }
    if (!dx) return;
    Scratch sums(device, 2 * R), c_x(device, R), c_0(device, R);
    grad_sums_kernel<T><<<blocks_per_set(R), kBlockThreads, 0, stream>>>(rows, as<T>(x), as<T>(grad),
                                                                         as<T>(weight), mean, 1, sums.data);
    ICD_CUDA_CHECK(cudaGetLastError());
    set_constants_kernel<<<grid_blocks(R), kBlockThreads, 0, stream>>>(
        R, sums.data, invstd, 1.0 / static_cast<double>(D), c_x.data, c_0.data);
    ICD_CUDA_CHECK(cudaGetLastError());
    layer_grad_kernel<T><<<grid_blocks(R * D), kBlockThreads, 0, stream>>>(
        R * D, D, as<T>(grad), as<T>(x), mean, invstd, as<T>(weight), c_x.data, c_0.data, as<T>(dx));
  });
  ICD_CUDA_CHECK(cudaGetLastError());
}

}  // namespace icd::cuda
