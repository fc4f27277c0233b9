// softmax(scale·q kᵀ + rel_h ⊕ rel_w − slope·max(0, dist − offset)) v on the CPU, with the rel-pos
// term (and BA-SAM's bias) added to each tile of scores as it is made, instead of being written to
// memory as a (B, heads, rows, N) mask first and read back by the attention kernel. The tiles follow
// the flash-attention scheme: a block of query rows meets the keys block by block with a running
// softmax (row max m, row sum l, unnormalised output acc), so that the keys and values of a block
// stay in cache while every query row of the block uses them.
//
// Two kinds of tile products, one softmax between them (float32 either way):
// - float32: MKL's sgemm;
// - bfloat16 on CPUs with AVX512-BF16 (bf16_tiles.h): q·kᵀ and p·v as bf16 products summed in
//   float32 (vdpbf16ps), with p rounded to bf16 as PyTorch's own bf16 attention does.
//
// Shapes: q (B, heads, R, d), k (B, heads, N, d), v (B, heads, N, dv), out (B, heads, R, dv), all of
// one dtype, each with a contiguous last axis and any other strides; rel_h (B, heads, R, H) and
// rel_w (B, heads, R, W) float32 contiguous, for the N = H·W keys of a row-major H×W grid; the R
// query rows are grid tokens first_row … first_row + R − 1. neg_slopes: (heads,) −m_h, or empty.

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
constexpr int kKeyBlock = 512;  // a multiple of 16: the bf16 tiles' keys come in groups of 16
enum Distance : int64_t { kEuclidean = 0, kManhattan = 1, kRaster = 2 };  // basam.attention._KERNEL_DISTANCES

struct Problem {
  const at::Tensor &q, &k, &v, &out;
  const float* rel_h;
  const float* rel_w;
  const float* slopes;  // nullptr: no bias
  int64_t batch, heads, rows, d, n, dv, grid_h, grid_w, first_row;
  float scale, offset;
  const float* excess = nullptr;  // euclidean and manhattan bias: excess_table() of the grid
};

// max(0, dist(dy, dx) − offset) for every offset between two tokens of the grid, euclidean or manhattan:
// (2H − 1) rows for dy = −(H − 1) … H − 1, each of (2W − 1) entries for dx = W − 1 … −(W − 1) (descending,
// so that a run of keys along a grid row reads it forwards). Made once per call: the square root is
// then a load.
std::vector<float> excess_table(int64_t grid_h, int64_t grid_w, int64_t distance, float offset) {
  const int64_t width = 2 * grid_w - 1;
  std::vector<float> table((2 * grid_h - 1) * width);
  for (int64_t row = 0; row < 2 * grid_h - 1; ++row) {
    const float dy = static_cast<float>(row - (grid_h - 1));
    for (int64_t j = 0; j < width; ++j) {
      const float dx = static_cast<float>(grid_w - 1 - j);
      const float dist = distance == kEuclidean ? std::sqrt(dy * dy + dx * dx) : std::fabs(dy) + std::fabs(dx);
      table[row * width + j] = std::max(dist - offset, 0.0f);
    }
  }
  return table;
}

// s[t] = s[t]·scale + add_h + rel_w[t] + slope·max(0, dist − offset), slope = −m_h, for a run of keys on one grid
// row (key_row, columns col … col + run − 1) and the query token (query_row, query_col).
// Written as plain loops over t, so that the compiler vectorises them.
void add_terms(const Problem& p, float* s, int64_t run, float add_h, const float* rel_w, float slope,
               int64_t query_row, int64_t query_col, int64_t key_row, int64_t col) {
  const float scale = p.scale;
  if (!p.slopes) {
    for (int64_t t = 0; t < run; ++t) s[t] = s[t] * scale + add_h + rel_w[t];
  } else if (p.excess) {  // euclidean or manhattan: dx = query_col − col − t runs down the table's row
    const float* excess = p.excess + (query_row - key_row + p.grid_h - 1) * (2 * p.grid_w - 1) +
                          (p.grid_w - 1 - (query_col - col));
    for (int64_t t = 0; t < run; ++t) s[t] = s[t] * scale + add_h + rel_w[t] + slope * excess[t];
  } else {  // raster: |query − key| in row-major order
    const float first = static_cast<float>((query_row - key_row) * p.grid_w + query_col - col), offset = p.offset;
    for (int64_t t = 0; t < run; ++t) {
      const float dist = std::fabs(first - static_cast<float>(t));
      s[t] = s[t] * scale + add_h + rel_w[t] + slope * std::max(dist - offset, 0.0f);
    }
  }
}

// One query row against keys k0 … k0 + nk − 1: raw scores s → exp(score − new row max), in place,
// with the row's running max and sum brought up to date. Returns the factor by which the row's
// output summed so far must be rescaled.
float softmax_step(const Problem& p, float* s, int64_t nk, int64_t k0, int64_t query, int64_t h,
                   const float* rh_i, const float* rw_i, float& row_max, float& row_sum) {
  const float slope = p.slopes ? p.slopes[h] : 0.0f;
  const int64_t query_row = query / p.grid_w, query_col = query % p.grid_w;
  // The keys split into runs along grid rows: one rel_h value per run.
  for (int64_t j = 0; j < nk;) {
    const int64_t key = k0 + j, key_row = key / p.grid_w, col = key % p.grid_w;
    const int64_t run = std::min<int64_t>(nk - j, p.grid_w - col);
    add_terms(p, s + j, run, rh_i[key_row], rw_i + col, slope, query_row, query_col, key_row, col);
    j += run;
  }
  const float block_max = at::vec::reduce_all<float>([](Vec& x, Vec& y) { return at::vec::maximum(x, y); }, s, nk);
  const float new_max = std::max(row_max, block_max);
  const float rescale = std::exp(row_max - new_max);
  row_max = new_max;
  at::vec::map([new_max](Vec x) { return (x - Vec(new_max)).exp_u20(); }, s, s, nk);
  row_sum = row_sum * rescale + at::vec::reduce_all<float>([](Vec& x, Vec& y) { return x + y; }, s, nk);
  return rescale;
}

// Row-major C (m×n) = A (m×k) · Bᵀ, B given as (n×k): in column-major terms Cᵀ = B · Aᵀ.
void matmul_bt(int m, int n, int k, const float* a, int lda, const float* b, int ldb, float* c, int ldc) {
  const float one = 1.0f, zero = 0.0f;
  SGEMM("T", "N", &n, &m, &k, &one, b, &ldb, a, &lda, &zero, c, &ldc);
}

// Row-major C (m×n) (+)= A (m×k) · B (k×n): in column-major terms Cᵀ = Bᵀ · Aᵀ.
void matmul(int m, int n, int k, const float* a, int lda, const float* b, int ldb, float* c, int ldc, float beta) {
  const float one = 1.0f;
  SGEMM("N", "N", &n, &m, &k, &one, b, &ldb, a, &lda, &beta, c, &ldc);
}

// The float32 tile products, through MKL (one thread each: MKL must not start threads of its own
// inside ATen's parallel_for).
class Fp32Tiles {
 public:
  explicit Fp32Tiles(const Problem& p) : p_(p) {
    const int one = 1;
    mkl_threads_ = MKL_SET_NUM_THREADS_LOCAL(&one);
  }
  ~Fp32Tiles() { MKL_SET_NUM_THREADS_LOCAL(&mkl_threads_); }
  int64_t acc_stride() const { return p_.dv; }

  void head(int64_t b, int64_t h) {
    q_ = p_.q.data_ptr<float>() + b * p_.q.stride(0) + h * p_.q.stride(1);
    k_ = p_.k.data_ptr<float>() + b * p_.k.stride(0) + h * p_.k.stride(1);
    v_ = p_.v.data_ptr<float>() + b * p_.v.stride(0) + h * p_.v.stride(1);
    out_ = p_.out.data_ptr<float>() + b * p_.out.stride(0) + h * p_.out.stride(1);
  }
  // scores (nr × nk, row stride kKeyBlock) = q rows r0 … · k rows k0 …ᵀ
  void scores(int64_t r0, int64_t nr, int64_t k0, int64_t nk, float* s) {
    matmul_bt(nr, nk, p_.d, q_ + r0 * p_.q.stride(2), p_.q.stride(2), k_ + k0 * p_.k.stride(2), p_.k.stride(2), s,
              kKeyBlock);
  }
  // acc (nr × dv) (+)= probabilities (nr × nk, row stride kKeyBlock) · v rows k0 …
  void accumulate(int64_t nr, int64_t k0, int64_t nk, const float* probs, float* acc, bool add) {
    matmul(nr, p_.dv, nk, probs, kKeyBlock, v_ + k0 * p_.v.stride(2), p_.v.stride(2), acc, p_.dv, add ? 1.0f : 0.0f);
  }
  void write(int64_t r, const float* acc_row, float inv_sum) {
    float* o = out_ + r * p_.out.stride(2);
    for (int64_t c = 0; c < p_.dv; ++c) o[c] = acc_row[c] * inv_sum;
  }

 private:
  const Problem& p_;
  int mkl_threads_;
  const float *q_ = nullptr, *k_ = nullptr, *v_ = nullptr;
  float* out_ = nullptr;
};

// The flash-style loop over (batch·head, query block) tasks, for either kind of tiles.
template <typename Tiles, typename... Shared>
void run(const Problem& p, const Shared&... shared) {
  const int64_t query_blocks = (p.rows + kQueryBlock - 1) / kQueryBlock;
  at::parallel_for(0, p.batch * p.heads * query_blocks, 1, [&](int64_t begin, int64_t end) {
    Tiles tiles(p, shared...);
    std::vector<float> scores(kQueryBlock * kKeyBlock), acc(kQueryBlock * tiles.acc_stride());
    std::vector<float> row_max(kQueryBlock), row_sum(kQueryBlock);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t bh = task / query_blocks, b = bh / p.heads, h = bh % p.heads;
      const int64_t r0 = (task % query_blocks) * kQueryBlock, nr = std::min<int64_t>(kQueryBlock, p.rows - r0);
      const float* rh = p.rel_h + (bh * p.rows + r0) * p.grid_h;
      const float* rw = p.rel_w + (bh * p.rows + r0) * p.grid_w;
      tiles.head(b, h);
      std::fill(row_max.begin(), row_max.end(), -std::numeric_limits<float>::infinity());
      std::fill(row_sum.begin(), row_sum.end(), 0.0f);
      for (int64_t k0 = 0; k0 < p.n; k0 += kKeyBlock) {
        const int64_t nk = std::min<int64_t>(kKeyBlock, p.n - k0);
        tiles.scores(r0, nr, k0, nk, scores.data());
        for (int64_t i = 0; i < nr; ++i) {
          const float rescale = softmax_step(p, scores.data() + i * kKeyBlock, nk, k0, p.first_row + r0 + i, h,
                                             rh + i * p.grid_h, rw + i * p.grid_w, row_max[i], row_sum[i]);
          if (k0 > 0) {
            float* a = acc.data() + i * tiles.acc_stride();
            for (int64_t c = 0; c < p.dv; ++c) a[c] *= rescale;
          }
        }
        tiles.accumulate(nr, k0, nk, scores.data(), acc.data(), k0 > 0);
      }
      for (int64_t i = 0; i < nr; ++i) tiles.write(r0 + i, acc.data() + i * tiles.acc_stride(), 1.0f / row_sum[i]);
    }
  });
}

}  // namespace

#include "bf16_tiles.h"

void relpos_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& rel_h,
                      const at::Tensor& rel_w, at::Tensor& out, int64_t first_row, double scale,
                      const at::Tensor& neg_slopes, double offset, int64_t distance) {
  const auto dtype = q.scalar_type();
  TORCH_CHECK((dtype == at::kFloat || (dtype == at::kBFloat16 && bf16_native())) && k.scalar_type() == dtype &&
              v.scalar_type() == dtype && out.scalar_type() == dtype,
              "relpos_attention: float32, or bfloat16 where bf16_native(), for q, k, v and out alike");
  TORCH_CHECK(q.stride(3) == 1 && k.stride(3) == 1 && v.stride(3) == 1 && out.stride(3) == 1,
              "relpos_attention: the last axis must be contiguous");
  TORCH_CHECK(rel_h.is_contiguous() && rel_w.is_contiguous() && rel_h.scalar_type() == at::kFloat &&
              rel_w.scalar_type() == at::kFloat, "relpos_attention: rel terms must be float32 and contiguous");
  Problem p{q, k, v, out, rel_h.data_ptr<float>(), rel_w.data_ptr<float>(),
            neg_slopes.numel() > 0 ? neg_slopes.data_ptr<float>() : nullptr,
            q.size(0), q.size(1), q.size(2), q.size(3), k.size(2), v.size(3), rel_h.size(3), rel_w.size(3),
            first_row, static_cast<float>(scale), static_cast<float>(offset)};
  TORCH_CHECK(p.grid_h * p.grid_w == p.n && rel_h.size(2) == p.rows && rel_w.size(2) == p.rows,
              "relpos_attention: rel terms do not match the queries and the key grid");
  TORCH_CHECK(k.size(0) == p.batch && v.size(0) == p.batch && k.size(1) == p.heads && v.size(1) == p.heads &&
              k.size(3) == p.d && v.size(2) == p.n && out.size(2) == p.rows && out.size(3) == p.dv,
              "relpos_attention: shapes do not agree");
  std::vector<float> excess;
  if (p.slopes && distance != kRaster) {
    excess = excess_table(p.grid_h, p.grid_w, distance, p.offset);
    p.excess = excess.data();
  }
  if (dtype == at::kFloat) {
    run<Fp32Tiles>(p);
  } else {
    run_bf16(p);
  }
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("relpos_attention", &relpos_attention, "attention with SAM's rel-pos term (and BA-SAM's bias) fused in");
  m.def("bf16_native", &bf16_native, "whether bfloat16 inputs run as bf16 products (AVX512-BF16) here");
}
