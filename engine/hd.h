// ICD_HD marks the arithmetic of a kernel that runs in two places: inside a CUDA kernel on the GPU and
// inside a plain loop on the CPU. Writing it once keeps the two backends identical and lets the CPU
// tests exercise the very body the GPU runs.
#pragma once

#if defined(__CUDACC__)
#define ICD_HD __host__ __device__ __forceinline__
#else
#define ICD_HD inline
#endif
