// The parts of the CUDA backend that need no GPU (built only with CUDA): the error messages of the
// check macros, the device probe's answer, and that every entry point refuses clearly when no device
// can be used. On a machine with a GPU the same checks run against the real device.
#include <doctest/doctest.h>

#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>

#include "engine/cuda/cublas_library.h"
#include "engine/cuda/cuda_check.h"
#include "engine/cuda/device_memory.h"
#include "engine/cuda/elementwise.h"
#include "engine/cuda/runtime.h"

using namespace icd;

namespace {
// The message of the exception `call` throws, or "" if it throws none.
template <class F>
std::string message_of(F call) {
  try {
    call();
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "";
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// The shared objects mapped into this process.
std::string mapped_files() {
  std::ifstream maps("/proc/self/maps");
  return {std::istreambuf_iterator<char>(maps), std::istreambuf_iterator<char>()};
}
}  // namespace

// First in the file (doctest runs a file's cases in order): nothing before it has used cuBLAS.
TEST_CASE("cuBLAS is opened on first use, not at start-up, and every function resolves") {
  CHECK_FALSE(contains(mapped_files(), "libcublas"));
  const cuda::CublasLibrary& api = cuda::cublas();
  CHECK(contains(mapped_files(), "libcublas"));
  CHECK(&api == &cuda::cublas());
  CHECK(static_cast<bool>(api.create));
  CHECK(static_cast<bool>(api.sgemm_strided_batched));
  CHECK(static_cast<bool>(api.status_string));
  CHECK(std::string(api.status_name(CUBLAS_STATUS_NOT_INITIALIZED)) == "CUBLAS_STATUS_NOT_INITIALIZED");
}

TEST_CASE("check macros name the call, the status and the place") {
  std::string cuda = message_of([] { ICD_CUDA_CHECK(cudaErrorMemoryAllocation); });
  CHECK(contains(cuda, "cudaErrorMemoryAllocation failed: cudaErrorMemoryAllocation (2): out of memory"));
  CHECK(contains(cuda, "test_cuda_runtime.cpp:"));

  std::string cublas = message_of([] { ICD_CUBLAS_CHECK(CUBLAS_STATUS_NOT_INITIALIZED); });
  CHECK(contains(cublas, "CUBLAS_STATUS_NOT_INITIALIZED failed: CUBLAS_STATUS_NOT_INITIALIZED (1): "));
  CHECK(contains(cublas, "test_cuda_runtime.cpp:"));

  std::string cudnn = message_of([] { ICD_CUDNN_CHECK(CUDNN_STATUS_BAD_PARAM); });
  CHECK(contains(cudnn, "CUDNN_STATUS_BAD_PARAM failed: CUDNN_STATUS_BAD_PARAM (2000): "));
  CHECK(contains(cudnn, "test_cuda_runtime.cpp:"));

  // Success passes, and the checked expression runs exactly once.
  int calls = 0;
  auto succeed = [&] {
    ++calls;
    return cudaSuccess;
  };
  CHECK_NOTHROW(ICD_CUDA_CHECK(succeed()));
  CHECK(calls == 1);
  CHECK_NOTHROW(ICD_CUBLAS_CHECK(CUBLAS_STATUS_SUCCESS));
  CHECK_NOTHROW(ICD_CUDNN_CHECK(CUDNN_STATUS_SUCCESS));
}

TEST_CASE("the device probe runs once and explains a missing GPU") {
  const CudaStatus& status = cuda_status();
  CHECK(&status == &cuda_status());
  if (status.available) {
    CHECK(status.device_count > 0);
    CHECK(status.reason.empty());
    CHECK(!status.device_name.empty());
  } else {
    MESSAGE("no usable GPU: ", status.reason);
    CHECK((contains(status.reason, "cudaGetDeviceCount") || contains(status.reason, "cudnnCreate")));
  }
}

TEST_CASE("entry points refuse a device that cannot be used, naming the reason") {
  const CudaStatus& status = cuda_status();
  // An index past the last device fails whether or not there is a GPU.
  std::string bad_index = message_of([&] { cuda::use_device("an_op", status.device_count); });
  CHECK(contains(bad_index, "an_op: "));
  CHECK(contains(bad_index, status.available ? "does not exist" : status.reason));

  // Argument errors come first, before the device is touched.
  CHECK_THROWS_AS(
      cuda::cuda_binary_elementwise(kernels::BinaryOp::add, DType::i64, nullptr, nullptr, nullptr, 4, 0),
      std::invalid_argument);
  if (!status.available) {
    std::string allocate = message_of([] { cuda::cuda_caching_allocator(0); });
    CHECK(contains(allocate, "cuda_caching_allocator: CUDA is not available: " + status.reason));
    std::string launch = message_of([] {
      cuda::cuda_binary_elementwise(kernels::BinaryOp::add, DType::f32, nullptr, nullptr, nullptr, 4, 0);
    });
    CHECK(contains(launch, "cuda_binary_elementwise: CUDA is not available"));
    std::string copy = message_of([] {
      double x = 0;
      cuda::copy_device_to_host(&x, &x, sizeof x, 0);
    });
    CHECK(contains(copy, "copy_device_to_host: CUDA is not available"));
  }
}
