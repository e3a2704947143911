// CUDA kernels for the fused losses (engine/cuda/loss.cu), running the bodies of
// engine/kernels/loss_math.h. Host-only declarations with no CUDA headers. Pointers are contiguous arrays
// of `dtype` (f32 or f64) in the memory of `device`; an output pointer may be nullptr (not wanted). Work
// is queued on the device's stream. `op` names the caller in errors: std::invalid_argument for another
// dtype, std::runtime_error when CUDA is unavailable or the launch fails.
#pragma once
#include <cstdint>

#include "engine/dtype.h"
#include "engine/kernels/loss_math.h"

namespace icd::cuda {

// Element i < n: kernels::pointwise_loss_element of the body `call` names on input[i], target[i] and
// weight[i] (1 when weight is nullptr), writing per_element, d_input, d_target, d_weight, and the
// element's (weighted) loss converted to double into losses[i], for the reductions to add up.
void cuda_pointwise_loss(const char* op, const kernels::PointwiseLossCall& call, DType dtype, int64_t n,
                         const void* input, const void* target, const void* weight, double scale,
                         void* per_element, double* losses, void* d_input, void* d_target, void* d_weight,
                         int device);

// Row r < rows of logits [rows, classes]: kernels::cross_entropy_row with label labels[r], the row kept
// unless has_ignore and labels[r] == ignore_index; per_row[r] gets the loss in T, row_losses[r] in double,
// and d_logits (when not nullptr) the row's gradient times scale. The labels were checked by the caller.
void cuda_cross_entropy(const char* op, DType dtype, int64_t rows, int64_t classes, const void* logits,
                        const int64_t* labels, bool has_ignore, int64_t ignore_index, double scale,
                        void* per_row, double* row_losses, void* d_logits, int device);

}  // namespace icd::cuda
