// CPU kernels of the diagonal linear recurrence h_t = a_t h_{t-1} + b_t for hrnn.scan's `chunked` backend,
// called from JAX through the XLA FFI (hrnn/native.py builds this file and registers the handlers).
//
// Arrays are [B, T, C] row-major (complex64 or float32), states [B, C]. Each batch row is an independent unit
// that walks its T steps over whole rows of C channels (contiguous: partial rows halve the bandwidth here), so a
// pass reads and writes each array exactly once; rows are spread over a few threads when there is enough work.
//
// Handlers (D = C64 or F32):
//   hrnn_scan_{c64,f32}          (a, b, s0; reverse) -> (states [B, T, C], final [B, C])
//   hrnn_scan_final_{c64,f32}    (a, b, s0; reverse) -> final [B, C]            (no states written)
//   hrnn_scan_grad_{c64,f32}     (a, h, h_start, dh, carry) -> (da, g [B, T, C], a_0 g_0 [B, C])
//
// Forward (reverse=false): s = s0; for t = 0..T-1: s = a_t s + b_t; states_t = s; final = s_{T-1}.
// Reverse (reverse=true), the backward pass's recurrence g_t = b_t + a_{t+1} g_{t+1} entered with
// carry = a_T g_T = s0: for t = T-1..0: g = b_t + c; states_t = g; c = a_t g; final = g_0.
// Gradient: the reverse recurrence on dh from `carry`, fused with da_t = g_t h_{t-1} (h_{-1} = h_start), and
// db_t = g_t; it also returns a_0 g_0, the cotangent of the initial state.

#include <algorithm>
#include <complex>
#include <cstdint>
#include <thread>
#include <vector>

#include "xla/ffi/api/ffi.h"

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace ffi = xla::ffi;

namespace {

constexpr int64_t kWorkPerThread = 1 << 20;  // elements a thread should get before another one is started

// XLA hands each call fresh output buffers, and for large ones the first write to every 4 KiB page faults: at
// 2^20 steps that took more time than the recurrence itself. Asking for transparent huge pages on the buffer's
// interior (a hint; Linux's default THP mode honours it) makes that one fault per 2 MiB.
void AdviseHugePages(void* data, int64_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHuge = 2 << 20;
  if (bytes < static_cast<int64_t>(4 * kHuge)) return;
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(data) + kHuge - 1) & ~(kHuge - 1);
  const uintptr_t end = (reinterpret_cast<uintptr_t>(data) + bytes) & ~(kHuge - 1);
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
#endif
}

// Complex product without the C99 Annex G NaN/inf recovery that std::complex's operator* calls into.
inline std::complex<float> Mul(std::complex<float> x, std::complex<float> y) {
  return {x.real() * y.real() - x.imag() * y.imag(), x.real() * y.imag() + x.imag() * y.real()};
}
inline float Mul(float x, float y) { return x * y; }

struct Shape {
  int64_t rows, steps, channels;
};

// Runs fn(row) for every batch row, on up to hardware_concurrency threads.
template <typename Fn>
void ForEachRow(const Shape& shape, Fn&& fn) {
  const int64_t cores = std::max(1u, std::thread::hardware_concurrency());
  const int64_t work = shape.rows * shape.steps * shape.channels;
  const int64_t threads = std::max<int64_t>(1, std::min<int64_t>({cores, shape.rows, 1 + work / kWorkPerThread}));
  auto run = [&](int64_t first, int64_t last) {
    for (int64_t row = first; row < last; ++row) fn(row);
  };
  std::vector<std::thread> pool;
  for (int64_t k = 1; k < threads; ++k) {
    pool.emplace_back(run, shape.rows * k / threads, shape.rows * (k + 1) / threads);
  }
  run(0, shape.rows / threads);
  for (auto& thread : pool) thread.join();
}

template <typename T>
void Scan(const Shape& shape, const T* a, const T* b, const T* s0, T* states, T* final, bool reverse) {
  const int64_t C = shape.channels, L = shape.steps;
  if (states != nullptr) AdviseHugePages(states, shape.rows * L * C * static_cast<int64_t>(sizeof(T)));
  ForEachRow(shape, [&](int64_t row) {
    const int64_t base = row * L * C;
    std::vector<T> s(s0 + row * C, s0 + (row + 1) * C);
    if (!reverse) {
      for (int64_t t = 0; t < L; ++t) {
        const T* at = a + base + t * C;
        const T* bt = b + base + t * C;
        for (int64_t c = 0; c < C; ++c) s[c] = Mul(at[c], s[c]) + bt[c];
        if (states != nullptr) std::copy(s.begin(), s.end(), states + base + t * C);
      }
    } else {
      std::vector<T> g(C);
      for (int64_t t = L - 1; t >= 0; --t) {
        const T* at = a + base + t * C;
        const T* bt = b + base + t * C;
        for (int64_t c = 0; c < C; ++c) {
          g[c] = bt[c] + s[c];
          s[c] = Mul(at[c], g[c]);
        }
        if (states != nullptr) std::copy(g.begin(), g.end(), states + base + t * C);
      }
      s.swap(g);  // final = g_0
    }
    std::copy(s.begin(), s.end(), final + row * C);
  });
}

template <typename T>
void Grad(const Shape& shape, const T* a, const T* h, const T* h_start, const T* dh, const T* carry, T* da,
          T* g_out, T* dh0) {
  const int64_t C = shape.channels, L = shape.steps;
  for (T* out : {da, g_out}) AdviseHugePages(out, shape.rows * L * C * static_cast<int64_t>(sizeof(T)));
  ForEachRow(shape, [&](int64_t row) {
    const int64_t base = row * L * C;
    std::vector<T> s(carry + row * C, carry + (row + 1) * C);  // a_{t+1} g_{t+1}
    std::vector<T> g(C), dat(C);
    for (int64_t t = L - 1; t >= 0; --t) {
      const T* at = a + base + t * C;
      const T* dht = dh + base + t * C;
      const T* prev = t > 0 ? h + base + (t - 1) * C : h_start + row * C;
      for (int64_t c = 0; c < C; ++c) {
        g[c] = dht[c] + s[c];
        dat[c] = Mul(g[c], prev[c]);
        s[c] = Mul(at[c], g[c]);
      }
      std::copy(g.begin(), g.end(), g_out + base + t * C);
      std::copy(dat.begin(), dat.end(), da + base + t * C);
    }
    std::copy(s.begin(), s.end(), dh0 + row * C);
  });
}

template <ffi::DataType D>
ffi::Error CheckShapes(const ffi::Buffer<D>& a, const ffi::Buffer<D>& b, const ffi::Buffer<D>& s0, Shape* shape) {
  auto dims = a.dimensions();
  if (dims.size() != 3) return ffi::Error::InvalidArgument("hrnn linear scan: a must be [batch, time, channels]");
  *shape = Shape{dims[0], dims[1], dims[2]};
  if (shape->steps < 1) return ffi::Error::InvalidArgument("hrnn linear scan: needs at least one time step");
  auto bd = b.dimensions();
  auto sd = s0.dimensions();
  if (bd.size() != 3 || bd[0] != shape->rows || bd[1] != shape->steps || bd[2] != shape->channels)
    return ffi::Error::InvalidArgument("hrnn linear scan: b must have a's shape");
  if (sd.size() != 2 || sd[0] != shape->rows || sd[1] != shape->channels)
    return ffi::Error::InvalidArgument("hrnn linear scan: the state must be [batch, channels]");
  return ffi::Error::Success();
}

template <ffi::DataType D>
ffi::Error ScanImpl(ffi::Buffer<D> a, ffi::Buffer<D> b, ffi::Buffer<D> s0, ffi::ResultBuffer<D> states,
                    ffi::ResultBuffer<D> final, bool reverse) {
  Shape shape;
  if (ffi::Error error = CheckShapes(a, b, s0, &shape); error.failure()) return error;
  Scan(shape, a.typed_data(), b.typed_data(), s0.typed_data(), states->typed_data(), final->typed_data(),
       reverse);
  return ffi::Error::Success();
}

template <ffi::DataType D>
ffi::Error ScanFinalImpl(ffi::Buffer<D> a, ffi::Buffer<D> b, ffi::Buffer<D> s0, ffi::ResultBuffer<D> final,
                         bool reverse) {
  Shape shape;
  if (ffi::Error error = CheckShapes(a, b, s0, &shape); error.failure()) return error;
  Scan<ffi::NativeType<D>>(shape, a.typed_data(), b.typed_data(), s0.typed_data(), nullptr,
                           final->typed_data(), reverse);
  return ffi::Error::Success();
}

template <ffi::DataType D>
ffi::Error GradImpl(ffi::Buffer<D> a, ffi::Buffer<D> h, ffi::Buffer<D> h_start, ffi::Buffer<D> dh,
                    ffi::Buffer<D> carry, ffi::ResultBuffer<D> da, ffi::ResultBuffer<D> g,
                    ffi::ResultBuffer<D> dh0) {
  Shape shape;
  if (ffi::Error error = CheckShapes(a, h, h_start, &shape); error.failure()) return error;
  if (ffi::Error error = CheckShapes(a, dh, carry, &shape); error.failure()) return error;
  Grad(shape, a.typed_data(), h.typed_data(), h_start.typed_data(), dh.typed_data(), carry.typed_data(),
       da->typed_data(), g->typed_data(), dh0->typed_data());
  return ffi::Error::Success();
}

// FFI signatures: (a, b or h, state) buffers first, then each handler's own.
template <ffi::DataType D>
auto ThreeBuffers() {
  return ffi::Ffi::Bind().Arg<ffi::Buffer<D>>().template Arg<ffi::Buffer<D>>().template Arg<ffi::Buffer<D>>();
}

template <ffi::DataType D>
auto ScanBinding() {
  return ThreeBuffers<D>().template Ret<ffi::Buffer<D>>().template Ret<ffi::Buffer<D>>().template Attr<bool>(
      "reverse");
}

template <ffi::DataType D>
auto ScanFinalBinding() {
  return ThreeBuffers<D>().template Ret<ffi::Buffer<D>>().template Attr<bool>("reverse");
}

template <ffi::DataType D>
auto GradBinding() {
  return ThreeBuffers<D>()
      .template Arg<ffi::Buffer<D>>()
      .template Arg<ffi::Buffer<D>>()
      .template Ret<ffi::Buffer<D>>()
      .template Ret<ffi::Buffer<D>>()
      .template Ret<ffi::Buffer<D>>();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(hrnn_scan_c64, ScanImpl<ffi::C64>, ScanBinding<ffi::C64>());
XLA_FFI_DEFINE_HANDLER_SYMBOL(hrnn_scan_f32, ScanImpl<ffi::F32>, ScanBinding<ffi::F32>());
XLA_FFI_DEFINE_HANDLER_SYMBOL(hrnn_scan_final_c64, ScanFinalImpl<ffi::C64>, ScanFinalBinding<ffi::C64>());
XLA_FFI_DEFINE_HANDLER_SYMBOL(hrnn_scan_final_f32, ScanFinalImpl<ffi::F32>, ScanFinalBinding<ffi::F32>());
XLA_FFI_DEFINE_HANDLER_SYMBOL(hrnn_scan_grad_c64, GradImpl<ffi::C64>, GradBinding<ffi::C64>());
XLA_FFI_DEFINE_HANDLER_SYMBOL(hrnn_scan_grad_f32, GradImpl<ffi::F32>, GradBinding<ffi::F32>());
