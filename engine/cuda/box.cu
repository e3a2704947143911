// Box geometry on the GPU: one thread per IoU entry, per box row or per anchor, running the bodies of
// engine/kernels/box_math.h that the CPU loops of models/ run. Compiled with --fmad=false (engine/
// CMakeLists.txt): a fused multiply-add would round area_p + area_q - w h once instead of twice, and the
// IoU would then differ from the CPU's in its last bit, enough to flip a threshold comparison.
//
// Each box's highest IoU is a block-wide max tree per row; max is exact, so the tree's order cannot
// change the result. The anchor lists a loss reads are compacted with CUB's DeviceSelect::Flagged, which
// keeps the selected indices in increasing order, as the CPU's loop does.
#include <cub/device/device_select.cuh>

#include <algorithm>
#include <climits>
#include <stdexcept>
#include <string>

#include "engine/cuda/box_kernels.h"
#include "engine/cuda/cuda_check.h"
#include "engine/cuda/device_memory.h"
#include "engine/cuda/grid.h"
#include "engine/cuda/runtime.h"

namespace icd::cuda {
namespace {

#define ICD_GRID_STRIDE(i, n)                                               \
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); \
       i += int64_t(blockDim.x) * gridDim.x)

template <class T>
__global__ void box_areas_kernel(const T* boxes, int64_t n, T* areas) {
  ICD_GRID_STRIDE(i, n) areas[i] = kernels::box_area(boxes + 4 * i);
}

template <class T>
__global__ void pairwise_iou_kernel(const T* a, const T* area_a, int64_t n, const T* b, const T* area_b,
                                    int64_t m, T* iou) {
  ICD_GRID_STRIDE(k, n * m) {
    const int64_t i = k / m, j = k % m;
    iou[k] = kernels::pairwise_iou_of(a + 4 * i, area_a[i], b + 4 * j, area_b[j]);
  }
}

template <class T>
__global__ void encode_kernel(kernels::BoxCodingWeights weights, const T* anchors, const T* boxes, int64_t n,
                              T* deltas) {
  ICD_GRID_STRIDE(i, n) kernels::encode_box(weights, anchors + 4 * i, boxes + 4 * i, deltas + 4 * i);
}

template <class T>
__global__ void decode_kernel(kernels::BoxCodingWeights weights, const T* deltas, const T* anchors, int64_t n,
                              T* boxes) {
  ICD_GRID_STRIDE(i, n) kernels::decode_box(weights, deltas + 4 * i, anchors + 4 * i, boxes + 4 * i);
}

// One block per row g of iou [G, R]: highest[g] = max_r iou[g, r]; any negative or NaN entry sets *invalid.
template <class T>
__global__ void highest_iou_kernel(const T* iou, int64_t num_anchors, T* highest, int* invalid) {
  __shared__ T partial[kBlockThreads];
  const T* row = iou + int64_t(blockIdx.x) * num_anchors;
  T local = T(0);  // every valid entry is >= 0, so 0 is the max's identity here
  for (int64_t r = threadIdx.x; r < num_anchors; r += blockDim.x) {
    const T value = row[r];
    if (!kernels::valid_iou(value)) *invalid = 1;
    local = kernels::max_of(local, value);
  }
  partial[threadIdx.x] = local;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (int(threadIdx.x) < s)
      partial[threadIdx.x] = kernels::max_of(partial[threadIdx.x], partial[threadIdx.x + s]);
    __syncthreads();
  }
  if (threadIdx.x == 0) highest[blockIdx.x] = partial[0];
}

template <class T>
__global__ void match_kernel(const T* iou, int64_t num_boxes, int64_t num_anchors,
                             kernels::MatchThresholds<T> thresholds, const T* highest, int64_t* matched,
                             int64_t* labels) {
  ICD_GRID_STRIDE(r, num_anchors)
  kernels::match_anchor(iou, num_boxes, num_anchors, r, thresholds, highest, matched + r, labels + r);
}

__global__ void selection_flags_kernel(const int64_t* labels, int64_t n, int64_t* index, char* kept_flag,
                                       char* foreground_flag) {
  ICD_GRID_STRIDE(r, n) {
    index[r] = r;
    kept_flag[r] = labels[r] != kernels::kMatchIgnored;
    foreground_flag[r] = labels[r] == kernels::kMatchForeground;
  }
}

template <class T>
__global__ void kept_classes_kernel(const int64_t* kept, int64_t num_kept, const int64_t* labels,
                                    const int64_t* matched, const int64_t* box_classes, T* kept_classes) {
  ICD_GRID_STRIDE(v, num_kept) {
    const int64_t r = kept[v];
    kept_classes[v] = labels[r] == kernels::kMatchForeground ? T(box_classes[matched[r]]) : T(-1);
  }
}

__global__ void foreground_boxes_kernel(const int64_t* foreground, int64_t num_foreground,
                                        const int64_t* matched, int64_t* foreground_boxes) {
  ICD_GRID_STRIDE(v, num_foreground) foreground_boxes[v] = matched[foreground[v]];
}

template <class T>
__global__ void nms_mask_kernel(const T* sorted_boxes, const T* areas, const int64_t* classes, int64_t n,
                                double iou_threshold, uint64_t* mask) {
  const int64_t words = kernels::nms_mask_words(n);
  ICD_GRID_STRIDE(k, n * words)
  mask[k] = kernels::nms_mask_word(sorted_boxes, areas, classes, n, k / words, k % words, iou_threshold);
}

#undef ICD_GRID_STRIDE

}  // namespace

void cuda_pairwise_iou(const char* op, DType dtype, const void* a, int64_t n, const void* b, int64_t m,
                       void* iou, int device) {
  use_device(op, device);
  if (n == 0 || m == 0) return;
  cudaStream_t stream = cuda_stream(device);
  dispatch_floating(dtype, op, [&](auto tag) {
    using T = decltype(tag);
    DeviceBuffer areas(device, sizeof(T) * (n + m));
    const T *pa = static_cast<const T*>(a), *pb = static_cast<const T*>(b);
    box_areas_kernel<<<grid_blocks(n), kBlockThreads, 0, stream>>>(pa, n, areas.as<T>());
    box_areas_kernel<<<grid_blocks(m), kBlockThreads, 0, stream>>>(pb, m, areas.as<T>() + n);
    pairwise_iou_kernel<<<grid_blocks(n * m), kBlockThreads, 0, stream>>>(
        pa, areas.as<T>(), n, pb, areas.as<T>() + n, m, static_cast<T*>(iou));
    ICD_CUDA_CHECK(cudaGetLastError());
  });
}

void cuda_encode_boxes(const char* op, DType dtype, const kernels::BoxCodingWeights& weights,
                       const void* anchors, const void* boxes, int64_t n, void* deltas, int device) {
  use_device(op, device);
  if (n == 0) return;
  dispatch_floating(dtype, op, [&](auto tag) {
    using T = decltype(tag);
    encode_kernel<<<grid_blocks(n), kBlockThreads, 0, cuda_stream(device)>>>(
        weights, static_cast<const T*>(anchors), static_cast<const T*>(boxes), n, static_cast<T*>(deltas));
    ICD_CUDA_CHECK(cudaGetLastError());
  });
}

void cuda_decode_boxes(const char* op, DType dtype, const kernels::BoxCodingWeights& weights,
                       const void* deltas, const void* anchors, int64_t n, void* boxes, int device) {
  use_device(op, device);
  if (n == 0) return;
  dispatch_floating(dtype, op, [&](auto tag) {
    using T = decltype(tag);
    decode_kernel<<<grid_blocks(n), kBlockThreads, 0, cuda_stream(device)>>>(
        weights, static_cast<const T*>(deltas), static_cast<const T*>(anchors), n, static_cast<T*>(boxes));
    ICD_CUDA_CHECK(cudaGetLastError());
  });
}

void cuda_match_anchors(const char* op, DType dtype, const void* iou, int64_t num_boxes, int64_t num_anchors,
                        double background_below, double foreground_from, bool allow_low_quality_matches,
                        int64_t* matched, int64_t* labels, int device) {
  use_device(op, device);
  if (num_boxes == 0 || num_anchors == 0) return;
  cudaStream_t stream = cuda_stream(device);
  dispatch_floating(dtype, op, [&](auto tag) {
    using T = decltype(tag);
    const T* m = static_cast<const T*>(iou);
    DeviceBuffer highest(device, sizeof(T) * num_boxes), invalid(device, sizeof(int));
    ICD_CUDA_CHECK(cudaMemsetAsync(invalid.data(), 0, sizeof(int), stream));
    highest_iou_kernel<<<int(num_boxes), kBlockThreads, 0, stream>>>(m, num_anchors, highest.as<T>(),
                                                                     invalid.as<int>());
    const kernels::MatchThresholds<T> thresholds{static_cast<T>(background_below),
                                                 static_cast<T>(foreground_from), allow_low_quality_matches};
    match_kernel<<<grid_blocks(num_anchors), kBlockThreads, 0, stream>>>(
        m, num_boxes, num_anchors, thresholds, highest.as<T>(), matched, labels);
    ICD_CUDA_CHECK(cudaGetLastError());
    int any_invalid = 0;
    copy_device_to_host(&any_invalid, invalid.data(), sizeof(int), device);
    if (any_invalid)
      throw std::invalid_argument(
          std::string(op) +
          ": iou entries must be >= 0 (and not NaN); the CUDA matcher found one that is not");
  });
}

AnchorSelectionCounts cuda_select_anchors(const char* op, DType dtype, const int64_t* labels,
                                          const int64_t* matched, const int64_t* box_classes,
                                          int64_t num_anchors, int64_t* kept, void* kept_classes,
                                          int64_t* foreground, int64_t* foreground_boxes, int device) {
  if (num_anchors >= INT_MAX)
    throw std::invalid_argument(std::string(op) + " (CUDA): " + std::to_string(num_anchors) +
                                " anchors exceed CUB's 32-bit item count");
  use_device(op, device);
  AnchorSelectionCounts counts;
  if (num_anchors == 0) return counts;
  cudaStream_t stream = cuda_stream(device);
  const int n = static_cast<int>(num_anchors);
  DeviceBuffer index(device, sizeof(int64_t) * num_anchors), flags(device, 2 * num_anchors),
      selected(device, 2 * sizeof(int64_t));
  char* kept_flag = flags.as<char>();
  char* foreground_flag = kept_flag + num_anchors;
  int64_t* num_selected = selected.as<int64_t>();
  selection_flags_kernel<<<grid_blocks(num_anchors), kBlockThreads, 0, stream>>>(
      labels, num_anchors, index.as<int64_t>(), kept_flag, foreground_flag);
  ICD_CUDA_CHECK(cudaGetLastError());
  std::size_t temp_bytes = 0;
  ICD_CUDA_CHECK(cub::DeviceSelect::Flagged(nullptr, temp_bytes, index.as<int64_t>(), kept_flag, kept,
                                            num_selected, n, stream));
  DeviceBuffer temp(device, std::max<std::size_t>(temp_bytes, 1));  // never null: null asks for the size
  ICD_CUDA_CHECK(cub::DeviceSelect::Flagged(temp.data(), temp_bytes, index.as<int64_t>(), kept_flag, kept,
                                            num_selected, n, stream));
  ICD_CUDA_CHECK(cub::DeviceSelect::Flagged(temp.data(), temp_bytes, index.as<int64_t>(), foreground_flag,
                                            foreground, num_selected + 1, n, stream));
  int64_t host_counts[2] = {0, 0};
  copy_device_to_host(host_counts, num_selected, sizeof(host_counts), device);
  counts.kept = host_counts[0];
  counts.foreground = host_counts[1];
  dispatch_floating(dtype, op, [&](auto tag) {
    using T = decltype(tag);
    if (counts.kept > 0)
      kept_classes_kernel<<<grid_blocks(counts.kept), kBlockThreads, 0, stream>>>(
          kept, counts.kept, labels, matched, box_classes, static_cast<T*>(kept_classes));
  });
  if (counts.foreground > 0)
    foreground_boxes_kernel<<<grid_blocks(counts.foreground), kBlockThreads, 0, stream>>>(
        foreground, counts.foreground, matched, foreground_boxes);
  ICD_CUDA_CHECK(cudaGetLastError());
  return counts;
}

std::vector<int64_t> cuda_nms_sorted(const char* op, DType dtype, const void* sorted_boxes,
                                     const int64_t* sorted_classes, int64_t n, double iou_threshold,
                                     int device) {
  use_device(op, device);
  if (n == 0) return {};
  cudaStream_t stream = cuda_stream(device);
  const int64_t words = kernels::nms_mask_words(n);
  std::vector<uint64_t> mask(static_cast<std::size_t>(n * words));
  dispatch_floating(dtype, op, [&](auto tag) {
    using T = decltype(tag);
    const T* boxes = static_cast<const T*>(sorted_boxes);
    DeviceBuffer areas(device, sizeof(T) * n), device_mask(device, sizeof(uint64_t) * n * words);
    box_areas_kernel<<<grid_blocks(n), kBlockThreads, 0, stream>>>(boxes, n, areas.as<T>());
    nms_mask_kernel<<<grid_blocks(n * words), kBlockThreads, 0, stream>>>(
        boxes, areas.as<T>(), sorted_classes, n, iou_threshold, device_mask.as<uint64_t>());
    ICD_CUDA_CHECK(cudaGetLastError());
    copy_device_to_host(mask.data(), device_mask.data(), mask.size() * sizeof(uint64_t), device);
  });
  std::vector<uint64_t> removed(static_cast<std::size_t>(words));
  std::vector<int64_t> keep(static_cast<std::size_t>(n));
  keep.resize(
      static_cast<std::size_t>(kernels::nms_keep_from_mask(mask.data(), n, removed.data(), keep.data())));
  return keep;
}

}  // namespace icd::cuda
