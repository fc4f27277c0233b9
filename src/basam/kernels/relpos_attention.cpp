// softmax(scale·q kᵀ + rel_h ⊕ rel_w − slope·max(0, dist − offset)) v for float32 on the CPU,
// with the rel-pos term (and BA-SAM's bias) added to each tile of scores as it is made, instead of
// being written to memory as a (B, heads, rows, N) mask first and read back by the attention kernel.
// The tiles follow the flash-attention scheme: a block of query rows meets the keys block by block
// with a running softmax (row max m, row sum l, unnormalised output acc), so that the keys and
// values of a block stay in cache while every query row of the block uses them.
//
// Shapes: q (B, heads, R, d), k (B, heads, N, d), v (B, heads, N, dv), out (B, heads, R, dv), each
// with a contiguous last axis and any other strides; rel_h (B, heads, R, H) and rel_w (B, heads,
// R, W) contiguous, for the N = H·W keys of a row-major H×W grid; the R query rows are grid
// tokens first_row … first_row + R − 1. neg_slopes: (heads,) −m_h, or empty for no bias.

#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

// MKL's Fortran-interface sgemm, exported by libtorch_cpu (column-major, arguments by reference).
extern "C" void SGEMM(const char* transa, const char* transb, const int* m, const int* n, const int* k,
                      const float* alpha, const float* a, const int* lda, const float* b, const int* ldb,
                      const float* beta, float* c, const int* ldc);
extern "C" int MKL_SET_NUM_THREADS_LOCAL(const int* threads);  // the Fortran interface, by reference

namespace {

using Vec = at::vec::Vectorized<float>;
constexpr int kQueryBlock = 256;
constexpr int kKeyBlock = 512;

// Row-major C (m×n) = A (m×k) · Bᵀ, B given as (n×k): in column-major terms Cᵀ = B · Aᵀ.
void matmul_bt(int m, int n, int k, const float* a, int lda, const float* b, int ldb, float* c, int ldc,
               float beta) {
  const float one = 1.0f;
  SGEMM("T", "N", &n, &m, &k, &one, b, &ldb, a, &lda, &beta, c, &ldc);
}

// Row-major C (m×n) (+)= A (m×k) · B (k×n): in column-major terms Cᵀ = Bᵀ · Aᵀ.
void matmul(int m, int n, int k, const float* a, int lda, const float* b, int ldb, float* c, int ldc, float beta) {
  const float one = 1.0f;
  SGEMM("N", "N", &n, &m, &k, &one, b, &ldb, a, &lda, &beta, c, &ldc);
}

// s[t] = s[t]·scale + add_h + rel_w[t] + slope·max(0, dist − offset), slope = −m_h, for a run of keys on one grid
// row (key_row, columns col … col + run − 1) and the query token (query_row, query_col).
// Written as plain loops over t, so that the compiler vectorises them (sqrt too, with -fno-math-errno).
void add_terms(float* s, int64_t run, float scale, float add_h, const float* rel_w, bool bias, float slope,
               float offset, int distance, int64_t query_row, int64_t query_col, int64_t key_row, int64_t col,
               int64_t grid_w) {
  if (!bias) {
    for (int64_t t = 0; t < run; ++t) s[t] = s[t] * scale + add_h + rel_w[t];
    return;
  }
  const float dy = static_cast<float>(query_row - key_row), qx = static_cast<float>(query_col - col);
  if (distance == 0) {  // euclidean
    for (int64_t t = 0; t < run; ++t) {
      const float dx = qx - static_cast<float>(t);
      const float dist = std::sqrt(dy * dy + dx * dx);
      s[t] = s[t] * scale + add_h + rel_w[t] + slope * std::max(dist - offset, 0.0f);
    }
  } else if (distance == 1) {  // manhattan
    for (int64_t t = 0; t < run; ++t) {
      const float dist = std::fabs(dy) + std::fabs(qx - static_cast<float>(t));
      s[t] = s[t] * scale + add_h + rel_w[t] + slope * std::max(dist - offset, 0.0f);
    }
  } else {  // raster: |query − key| in row-major order
    const float first = static_cast<float>((query_row - key_row) * grid_w) + qx;
    for (int64_t t = 0; t < run; ++t) {
      const float dist = std::fabs(first - static_cast<float>(t));
      s[t] = s[t] * scale + add_h + rel_w[t] + slope * std::max(dist - offset, 0.0f);
    }
  }
}

}  // namespace

void relpos_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& rel_h,
                      const at::Tensor& rel_w, at::Tensor& out, int64_t first_row, double scale,
                      const at::Tensor& neg_slopes, double offset, int64_t distance) {
  TORCH_CHECK(q.scalar_type() == at::kFloat && k.scalar_type() == at::kFloat && v.scalar_type() == at::kFloat,
              "relpos_attention: float32 only");
  TORCH_CHECK(q.stride(3) == 1 && k.stride(3) == 1 && v.stride(3) == 1 && out.stride(3) == 1,
              "relpos_attention: the last axis must be contiguous");
  TORCH_CHECK(rel_h.is_contiguous() && rel_w.is_contiguous(), "relpos_attention: rel terms must be contiguous");
  const int64_t batch = q.size(0), heads = q.size(1), rows = q.size(2), d = q.size(3);
  const int64_t n = k.size(2), dv = v.size(3), grid_h = rel_h.size(3), grid_w = rel_w.size(3);
  TORCH_CHECK(grid_h * grid_w == n && rel_h.size(2) == rows && rel_w.size(2) == rows,
              "relpos_attention: rel terms do not match the queries and the key grid");
  TORCH_CHECK(k.size(0) == batch && v.size(0) == batch && k.size(1) == heads && v.size(1) == heads && k.size(3) == d &&
              v.size(2) == n && out.size(2) == rows && out.size(3) == dv, "relpos_attention: shapes do not agree");
  const bool bias = neg_slopes.numel() > 0;
  const float* slopes = bias ? neg_slopes.data_ptr<float>() : nullptr;
  const int64_t query_blocks = (rows + kQueryBlock - 1) / kQueryBlock;
  const float fscale = static_cast<float>(scale), foffset = static_cast<float>(offset);

  const auto maximum = [](Vec& x, Vec& y) { return at::vec::maximum(x, y); };
  const auto sum = [](Vec& x, Vec& y) { return x + y; };
  at::parallel_for(0, batch * heads * query_blocks, 1, [&](int64_t begin, int64_t end) {
    // Each thread runs its own small products: MKL must not start threads of its own inside.
    const int one = 1, mkl_threads = MKL_SET_NUM_THREADS_LOCAL(&one);
    std::vector<float> scores(kQueryBlock * kKeyBlock), acc(kQueryBlock * dv);
    std::vector<float> row_max(kQueryBlock), row_sum(kQueryBlock);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t bh = task / query_blocks, b = bh / heads, h = bh % heads;
      const int64_t r0 = (task % query_blocks) * kQueryBlock, nr = std::min<int64_t>(kQueryBlock, rows - r0);
      const float* qp = q.data_ptr<float>() + b * q.stride(0) + h * q.stride(1) + r0 * q.stride(2);
      const float* kp = k.data_ptr<float>() + b * k.stride(0) + h * k.stride(1);
      const float* vp = v.data_ptr<float>() + b * v.stride(0) + h * v.stride(1);
      const float* rh = rel_h.data_ptr<float>() + (bh * rows + r0) * grid_h;
      const float* rw = rel_w.data_ptr<float>() + (bh * rows + r0) * grid_w;
      std::fill(row_max.begin(), row_max.end(), -std::numeric_limits<float>::infinity());
      std::fill(row_sum.begin(), row_sum.end(), 0.0f);
      for (int64_t k0 = 0; k0 < n; k0 += kKeyBlock) {
        const int64_t nk = std::min<int64_t>(kKeyBlock, n - k0);
        matmul_bt(nr, nk, d, qp, q.stride(2), kp + k0 * k.stride(2), k.stride(2), scores.data(), nk, 0.0f);
        for (int64_t i = 0; i < nr; ++i) {
          float* s = scores.data() + i * nk;
          const float* rh_i = rh + i * grid_h;
          const float* rw_i = rw + i * grid_w;
          // The keys k0 … k0 + nk − 1 split into runs along grid rows: one rel_h value per run.
          const int64_t query = first_row + r0 + i;
          const float slope = bias ? slopes[h] : 0.0f;
          for (int64_t j = 0; j < nk;) {
            const int64_t key = k0 + j, key_row = key / grid_w, col = key % grid_w;
            const int64_t run = std::min<int64_t>(nk - j, grid_w - col);
            add_terms(s + j, run, fscale, rh_i[key_row], rw_i + col, bias, slope, foffset,
                      static_cast<int>(distance), query / grid_w, query % grid_w, key_row, col, grid_w);
            j += run;
          }
          // Running softmax: rescale what was summed so far to the new row maximum.
          const float block_max = at::vec::reduce_all<float>(maximum, s, nk);
          const float new_max = std::max(row_max[i], block_max);
          const float rescale = std::exp(row_max[i] - new_max);
          row_max[i] = new_max;
          at::vec::map([new_max](Vec x) { return (x - Vec(new_max)).exp_u20(); }, s, s, nk);
          row_sum[i] = row_sum[i] * rescale + at::vec::reduce_all<float>(sum, s, nk);
          if (k0 > 0) {
            float* a = acc.data() + i * dv;
            for (int64_t c = 0; c < dv; ++c) a[c] *= rescale;
          }
        }
        matmul(nr, dv, nk, scores.data(), nk, vp + k0 * v.stride(2), v.stride(2), acc.data(), dv,
               k0 > 0 ? 1.0f : 0.0f);
      }
      float* op = out.data_ptr<float>() + b * out.stride(0) + h * out.stride(1) + r0 * out.stride(2);
      for (int64_t i = 0; i < nr; ++i) {
        const float inv = 1.0f / row_sum[i];
        for (int64_t c = 0; c < dv; ++c) op[i * out.stride(2) + c] = acc[i * dv + c] * inv;
      }
    }
    MKL_SET_NUM_THREADS_LOCAL(&mkl_threads);
  });
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("relpos_attention", &relpos_attention, "attention with SAM's rel-pos term (and BA-SAM's bias) fused in");
}
