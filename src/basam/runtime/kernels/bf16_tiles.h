// The bfloat16 tile products of relpos_attention.cpp (included there, after Problem and run): bf16
// numbers multiplied in pairs and summed in float32 by AVX512-BF16's vdpbf16ps, which does twice
// the multiply-adds of a float32 FMA per instruction. Built into the AVX512 build only, and used
// only where the CPU has the instruction (bf16_native()); elsewhere bf16 inputs are cast to float32
// by the caller.
//
// vdpbf16ps(acc, a, b) adds a[2i]·b[2i] + a[2i+1]·b[2i+1] to float lane i: both operands hold pairs
// along the summed axis. So the right-hand matrices (keys for q·kᵀ, values for p·v) are laid out
// once per call as 16 columns × pairs, and each left-hand pair is broadcast to all 16 lanes.

#include <cstdint>
#include <cstring>

#if defined(CPU_CAPABILITY_AVX512)
#include <immintrin.h>
#define BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16")))
#endif

namespace {

#if defined(CPU_CAPABILITY_AVX512)

bool bf16_native() {
  static const bool has = __builtin_cpu_supports("avx512bf16");
  return has;
}

// Two bf16 numbers (raw bits) in 32 bits as vdpbf16ps reads them: the first in the low half.
inline uint32_t pair(uint16_t first, uint16_t second) { return first | (static_cast<uint32_t>(second) << 16); }

inline const uint16_t* bits(const at::Tensor& t, int64_t b, int64_t h) {
  return reinterpret_cast<const uint16_t*>(t.data_ptr<at::BFloat16>()) + b * t.stride(0) + h * t.stride(1);
}

// k and v of every (batch, head), rearranged once per call, zeros past the ends:
//   keys   (B·heads, ⌈N/16⌉ groups of 16 keys, d/2 pairs of channels, 16 keys)
//   values (B·heads, ⌈dv/16⌉ groups of 16 channels, ⌈N/2⌉ pairs of keys, 16 channels)
// A group is what one 16-lane vector of the product needs, stored contiguously.
struct PackedKV {
  explicit PackedKV(const Problem& p)
      : d2(p.d / 2), n2((p.n + 1) / 2), key_groups((p.n + 15) / 16), value_groups((p.dv + 15) / 16),
        key_size(key_groups * d2 * 16), value_size(value_groups * n2 * 16),
        keys(p.batch * p.heads * key_size), values(p.batch * p.heads * value_size) {
    at::parallel_for(0, p.batch * p.heads, 1, [&](int64_t begin, int64_t end) {
      for (int64_t bh = begin; bh < end; ++bh) {
        const uint16_t* k = bits(p.k, bh / p.heads, bh % p.heads);
        const uint16_t* v = bits(p.v, bh / p.heads, bh % p.heads);
        const int64_t ks = p.k.stride(2), vs = p.v.stride(2);
        uint32_t* kp = keys.data() + bh * key_size;
        for (int64_t key = 0; key < key_groups * 16; ++key) {
          for (int64_t c = 0; c < d2; ++c) {
            kp[((key / 16) * d2 + c) * 16 + key % 16] = key < p.n ? pair(k[key * ks + 2 * c], k[key * ks + 2 * c + 1]) : 0;
          }
        }
        uint32_t* vp = values.data() + bh * value_size;
        for (int64_t g = 0; g < value_groups; ++g) {
          for (int64_t j = 0; j < n2; ++j) {
            const uint16_t* first = v + 2 * j * vs;
            for (int64_t c = g * 16; c < g * 16 + 16; ++c) {
              const uint16_t second = 2 * j + 1 < p.n && c < p.dv ? first[vs + c] : 0;
              *vp++ = c < p.dv ? pair(first[c], second) : 0;
            }
          }
        }
      }
    });
  }

  int64_t d2, n2, key_groups, value_groups, key_size, value_size;
  std::vector<uint32_t> keys, values;
};

// C (MR rows × NV vectors of 16, row stride ldc) (+)= A · B over `pairs` pairs of the summed axis:
// A row i's pair j at a[i·lda + j]; B's pair j for vector t at b[t·group + 16·j]. MR·NV accumulators
// stay in registers (6×4 = 24 of the 32).
template <int MR, int NV>
BF16_TARGET void tile(int64_t pairs, const uint32_t* a, int64_t lda, const uint32_t* b, int64_t group, float* c,
                      int64_t ldc, bool add) {
  __m512 acc[MR][NV];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 8
    for (int t = 0; t < NV; ++t) acc[i][t] = add ? _mm512_loadu_ps(c + i * ldc + 16 * t) : _mm512_setzero_ps();
  }
  for (int64_t j = 0; j < pairs; ++j) {
    __m512bh bv[NV];
#pragma GCC unroll 8
    for (int t = 0; t < NV; ++t) bv[t] = (__m512bh)_mm512_loadu_si512(b + t * group + 16 * j);
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      const __m512bh av = (__m512bh)_mm512_set1_epi32(static_cast<int>(a[i * lda + j]));
#pragma GCC unroll 8
      for (int t = 0; t < NV; ++t) acc[i][t] = _mm512_dpbf16_ps(acc[i][t], av, bv[t]);
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 8
    for (int t = 0; t < NV; ++t) _mm512_storeu_ps(c + i * ldc + 16 * t, acc[i][t]);
  }
}

template <int MR>
BF16_TARGET void tile_rows(int64_t nv, int64_t pairs, const uint32_t* a, int64_t lda, const uint32_t* b,
                           int64_t group, float* c, int64_t ldc, bool add) {
  switch (nv) {
    case 1: return tile<MR, 1>(pairs, a, lda, b, group, c, ldc, add);
    case 2: return tile<MR, 2>(pairs, a, lda, b, group, c, ldc, add);
    case 3: return tile<MR, 3>(pairs, a, lda, b, group, c, ldc, add);
    default: return tile<MR, 4>(pairs, a, lda, b, group, c, ldc, add);
  }
}

// C (rows × 16·vectors) (+)= A · B, in tiles of 6 rows × 4 vectors; the columns outside so that one
// slice of B (pairs × 64 floats) is reused by every row.
BF16_TARGET void products(int64_t rows, int64_t vectors, int64_t pairs, const uint32_t* a, int64_t lda,
                          const uint32_t* b, int64_t group, float* c, int64_t ldc, bool add) {
  for (int64_t t0 = 0; t0 < vectors; t0 += 4) {
    const int64_t nv = std::min<int64_t>(4, vectors - t0);
    for (int64_t i0 = 0; i0 < rows; i0 += 6) {
      const uint32_t* ai = a + i0 * lda;
      const uint32_t* bt = b + t0 * group;
      float* ci = c + i0 * ldc + 16 * t0;
      switch (std::min<int64_t>(6, rows - i0)) {
        case 1: tile_rows<1>(nv, pairs, ai, lda, bt, group, ci, ldc, add); break;
        case 2: tile_rows<2>(nv, pairs, ai, lda, bt, group, ci, ldc, add); break;
        case 3: tile_rows<3>(nv, pairs, ai, lda, bt, group, ci, ldc, add); break;
        case 4: tile_rows<4>(nv, pairs, ai, lda, bt, group, ci, ldc, add); break;
        case 5: tile_rows<5>(nv, pairs, ai, lda, bt, group, ci, ldc, add); break;
        default: tile_rows<6>(nv, pairs, ai, lda, bt, group, ci, ldc, add);
      }
    }
  }
}

// rows × n float32 (row stride kKeyBlock) → bf16 pairs (row stride kKeyBlock / 2 pairs), rounded to
// nearest even, with a zero after an odd n.
BF16_TARGET void round_to_pairs(int64_t rows, int64_t n, const float* x, uint32_t* out) {
  for (int64_t i = 0; i < rows; ++i) {
    const float* row = x + i * kKeyBlock;
    uint16_t* o = reinterpret_cast<uint16_t*>(out + i * (kKeyBlock / 2));
    int64_t j = 0;
    for (; j + 32 <= n; j += 32) {
      const __m512bh both = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(row + j + 16), _mm512_loadu_ps(row + j));
      _mm512_storeu_si512(o + j, (__m512i)both);
    }
    for (; j < n; ++j) o[j] = c10::BFloat16(row[j]).x;
    if (n % 2) o[n] = 0;
  }
}

class Bf16Tiles {
 public:
  Bf16Tiles(const Problem& p, const PackedKV& kv)
      : p_(p), kv_(kv), q_pairs_(kQueryBlock * kv.d2), probs_(kQueryBlock * kKeyBlock / 2) {}
  int64_t acc_stride() const { return kv_.value_groups * 16; }

  void head(int64_t b, int64_t h) {
    q_ = bits(p_.q, b, h);
    keys_ = kv_.keys.data() + (b * p_.heads + h) * kv_.key_size;
    values_ = kv_.values.data() + (b * p_.heads + h) * kv_.value_size;
    out_ = p_.out.data_ptr<at::BFloat16>() + b * p_.out.stride(0) + h * p_.out.stride(1);
  }
  void scores(int64_t r0, int64_t nr, int64_t k0, int64_t nk, float* s) {
    if (k0 == 0) {  // the block's queries, as pairs in a row-contiguous copy
      for (int64_t i = 0; i < nr; ++i) std::memcpy(&q_pairs_[i * kv_.d2], q_ + (r0 + i) * p_.q.stride(2), p_.d * 2);
    }
    products(nr, (nk + 15) / 16, kv_.d2, q_pairs_.data(), kv_.d2, keys_ + (k0 / 16) * kv_.d2 * 16, kv_.d2 * 16, s,
             kKeyBlock, false);
  }
  void accumulate(int64_t nr, int64_t k0, int64_t nk, const float* probs, float* acc, bool add) {
    round_to_pairs(nr, nk, probs, probs_.data());
    products(nr, kv_.value_groups, (nk + 1) / 2, probs_.data(), kKeyBlock / 2, values_ + (k0 / 2) * 16,
             kv_.n2 * 16, acc, acc_stride(), add);
  }
  void write(int64_t r, const float* acc_row, float inv_sum) {
    at::BFloat16* o = out_ + r * p_.out.stride(2);
    for (int64_t c = 0; c < p_.dv; ++c) o[c] = at::BFloat16(acc_row[c] * inv_sum);
  }

 private:
  const Problem& p_;
  const PackedKV& kv_;
  std::vector<uint32_t> q_pairs_, probs_;
  const uint16_t* q_ = nullptr;
  const uint32_t *keys_ = nullptr, *values_ = nullptr;
  at::BFloat16* out_ = nullptr;
};

void run_bf16(const Problem& p) {
  TORCH_CHECK(p.d % 2 == 0, "relpos_attention: bfloat16 needs an even head size");
  const PackedKV kv(p);
  run<Bf16Tiles>(p, kv);
}

#else

bool bf16_native() { return false; }
void run_bf16(const Problem&) { TORCH_CHECK(false, "relpos_attention: no bfloat16 products in this build"); }

#endif

}  // namespace
