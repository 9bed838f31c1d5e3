// The quantx ops' output tensors: Note [Output buffers].
#include <ATen/core/Tensor.h>
#include <ATen/ops/_empty_affine_quantized.h>
#include <ATen/quantized/QTensorImpl.h>
#include <ATen/quantized/Quantizer.h>
#include <c10/core/CPUAllocator.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include <cstdint>
#include <cstdlib>
#include <iterator>
#include <map>
#include <mutex>
#include <string>

#include "ops/common.h"

namespace tqx::ops {

// Note [Output buffers]
// ~~~~~~~~~~~~~~~~~~~~~
// glibc gives large blocks back to the kernel (munmap of mmapped chunks, trimming the heap's top),
// so a model whose activations are megabytes each (batch 16) had many of its output tensors on fresh
// pages every inference: each first touch is a page fault. mobilenet_v3_large at batch 16 took 3,100
// faults and 60 ms per inference on a 2-vCPU VM, 25-29 ms with glibc told to keep its memory; resnet50
// at batch 16 took 0-14,000 faults per inference. The ops therefore take their quint8 outputs of at
// least kMinPooledBytes from a process-wide pool: a freed output's block goes back to the pool (up to
// TORCHQUANTX_CACHE_MB of free blocks, default 512; 0 turns the pool off) and the next request of a
// size in [capacity * 4/5, capacity] reuses it, so a model run again on inputs of the same shape
// allocates nothing. The pool holds at most one inference's distinct output sizes, not more than
// what the inference touched at its peak plus buffers of sizes that were never alive together;
// quantx::release_cached_memory() hands the free blocks back. The bytes computed are unaffected.
namespace {

constexpr int64_t kMinPooledBytes = 64 * 1024;
constexpr size_t kHeader = 64;  // a block's capacity, before the 64-byte-aligned data

struct Pool {
  std::mutex mutex;
  std::multimap<size_t, void*> free;  // capacity -> block
  size_t free_bytes = 0;
  size_t cap = 0;
};

size_t cap_from_env() {
  const char* v = std::getenv("TORCHQUANTX_CACHE_MB");
  if (v == nullptr || *v == '\0') return size_t{512} << 20;
  char* end = nullptr;
  const long long mb = std::strtoll(v, &end, 10);
  TORCH_CHECK(end != v && *end == '\0' && mb >= 0, "torchquantx: TORCHQUANTX_CACHE_MB should be a whole number of MiB >= 0 "
              "(0 turns the output-buffer pool off), got '", v, "'");
  return static_cast<size_t>(mb) << 20;
}

// Never destroyed: tensors may be freed after static destructors have run.
Pool& pool() {
  static Pool* p = [] {
    auto* q = new Pool;
    q->cap = cap_from_env();
    return q;
  }();
  return *p;
}

size_t capacity_of(void* block) { return *static_cast<size_t*>(block); }

void release_block(void* block) {
  Pool& p = pool();
  const size_t capacity = capacity_of(block);
  {
    std::lock_guard<std::mutex> lock(p.mutex);
    if (p.free_bytes + capacity <= p.cap) {
      p.free.emplace(capacity, block);
      p.free_bytes += capacity;
      return;
    }
  }
  std::free(block);
}

c10::DataPtr take_block(size_t n) {
  Pool& p = pool();
  void* block = nullptr;
  {
    std::lock_guard<std::mutex> lock(p.mutex);
    // The smallest capacity that fits, and of its blocks the one freed last (the likeliest to be in
    // cache: at batch 1 an output is often the size of the one freed just before).
    auto it = p.free.lower_bound(n);
    if (it != p.free.end()) it = std::prev(p.free.upper_bound(it->first));
    if (it != p.free.end() && it->first - n <= it->first / 5) {
      block = it->second;
      p.free_bytes -= it->first;
      p.free.erase(it);
    }
  }
  if (block == nullptr) {
    const size_t bytes = (kHeader + n + 63) / 64 * 64;
    block = std::aligned_alloc(64, bytes);
    TORCH_CHECK(block != nullptr, "torchquantx: out of memory allocating an output of ", n, " bytes");
    *static_cast<size_t*>(block) = n;
  }
  return c10::DataPtr(static_cast<char*>(block) + kHeader, block, &release_block, c10::Device(c10::kCPU));
}

int64_t release_cached_memory() {
  Pool& p = pool();
  std::multimap<size_t, void*> blocks;
  {
    std::lock_guard<std::mutex> lock(p.mutex);
    blocks.swap(p.free);
    p.free_bytes = 0;
  }
  int64_t released = 0;
  for (const auto& [capacity, block] : blocks) {
    released += static_cast<int64_t>(capacity);
    std::free(block);
  }
  return released;
}

int64_t cached_memory() {
  Pool& p = pool();
  std::lock_guard<std::mutex> lock(p.mutex);
  return static_cast<int64_t>(p.free_bytes);
}

}  // namespace

at::Tensor empty_quantized(c10::IntArrayRef sizes, const c10::TensorOptions& options, double scale, int64_t zero_point,
                           c10::MemoryFormat format) {
  int64_t numel = 1;
  for (int64_t s : sizes) numel *= s;
  const int64_t bytes = numel * static_cast<int64_t>(options.dtype().itemsize());
  if (options.device().type() != c10::kCPU || bytes < kMinPooledBytes || pool().cap == 0) {
    return at::_empty_affine_quantized(sizes, options, scale, zero_point, format);
  }
  c10::Storage storage(c10::Storage::use_byte_size_t(), static_cast<size_t>(bytes),
                       take_block(static_cast<size_t>(bytes)), /*allocator=*/nullptr, /*resizable=*/false);
  const at::QuantizerPtr quantizer =
      at::make_per_tensor_affine_quantizer(scale, zero_point, c10::typeMetaToScalarType(options.dtype()));
  at::Tensor t = at::detail::make_tensor<at::QTensorImpl>(
      std::move(storage), c10::DispatchKeySet(c10::DispatchKey::QuantizedCPU), options.dtype(), quantizer);
  at::get_qtensorimpl(t)->set_sizes_contiguous(sizes);
  at::get_qtensorimpl(t)->empty_tensor_restride(format);
  return t;
}

TORCH_LIBRARY_FRAGMENT(quantx, m) {
  m.def("release_cached_memory() -> int", release_cached_memory);
  m.def("cached_memory() -> int", cached_memory);
}

}  // namespace tqx::ops
