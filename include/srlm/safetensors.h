/* srlm safetensors: read (mmap, read-only) and write (temp name, fsync, rename)
 * Hugging Face safetensors files, single or sharded through
 * model.safetensors.index.json, and convert between F32, F16 and BF16.
 *
 * File layout: 8-byte little-endian header length N, N bytes of JSON header
 * (an object: tensor name -> {"dtype", "shape", "data_offsets": [begin, end]},
 * plus an optional "__metadata__" object of strings; may end with spaces),
 * then the data area. Offsets are relative to the data area, which the tensors
 * must cover exactly: no overlaps, no holes, nothing after the last tensor.
 *
 * Conventions:
 * - Opening validates the whole header; every error names the file and, where
 *   there is one, the tensor ("dir/model.safetensors: tensor 'wte': ...").
 * - Tensor data points into the mapping and lives as long as the handle. It is
 *   in file byte order (little-endian; srlm only builds on little-endian hosts)
 *   and NOT necessarily aligned: read it with memcpy or srlm_st_tensor_to_f32.
 * - Shapes are row-major, as PyTorch stores them: a Linear weight is [out, in].
 */
#ifndef SRLM_SAFETENSORS_H
#define SRLM_SAFETENSORS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "srlm/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Header larger than this is refused (the reference implementation's bound). */
#define SRLM_ST_MAX_HEADER_BYTES 100000000ull

/* ---- dtypes --------------------------------------------------------------- */

typedef enum srlm_st_dtype {
  SRLM_ST_F32 = 0,
  SRLM_ST_F16,
  SRLM_ST_BF16,
  SRLM_ST_I32,
  SRLM_ST_I64,
  SRLM_ST_U8,
  SRLM_ST_DTYPE_COUNT
} srlm_st_dtype;

/* Bytes per element (0 for an invalid value). */
size_t srlm_st_dtype_size(srlm_st_dtype dt);
/* The safetensors name: "F32", "F16", "BF16", "I32", "I64", "U8" ("?" when invalid). */
const char *srlm_st_dtype_name(srlm_st_dtype dt);
/* Parses a safetensors dtype name; false when srlm does not read that dtype. */
bool srlm_st_dtype_parse(const char *name, srlm_st_dtype *out);
/* True for F32, F16 and BF16. */
bool srlm_st_dtype_is_float(srlm_st_dtype dt);

/* ---- scalar conversions (IEEE 754 binary16 bit patterns; bfloat16: core.h) -- */

float srlm_st_f16_to_f32(uint16_t h);
/* Round to nearest, ties to even; overflow gives infinity; NaN stays a (quiet) NaN. */
uint16_t srlm_st_f32_to_f16(float f);

/* Converts n elements between float dtypes (F32, F16, BF16 in any direction,
 * same dtype is a copy). src may be unaligned; dst must not overlap src.
 * Other dtypes: SRLM_ERR_UNSUPPORTED. */
srlm_status srlm_st_convert(srlm_st_dtype src_dtype, const void *src, srlm_st_dtype dst_dtype,
                            void *dst, size_t n);

/* ---- reading ---------------------------------------------------------------- */

typedef struct srlm_st_tensor {
  const char *name;
  const char *file;      /* path of the file holding it (as opened) */
  srlm_st_dtype dtype;
  int ndim;              /* 0 for a scalar */
  const int64_t *shape;  /* (ndim) */
  uint64_t numel;        /* product of shape (1 for a scalar) */
  uint64_t offset;       /* begin within the data area */
  uint64_t nbytes;       /* numel * dtype size */
  const void *data;      /* nbytes bytes; possibly unaligned */
} srlm_st_tensor;

typedef struct srlm_st_file srlm_st_file;

/* Maps and validates a file. */
srlm_status srlm_st_open(const char *path, srlm_st_file **out);
/* Validates a safetensors image already in memory (name is used in errors).
 * Zero-copy: bytes must outlive the handle. */
srlm_status srlm_st_parse_memory(const void *bytes, size_t size, const char *name,
                                 srlm_st_file **out);
void srlm_st_close(srlm_st_file *f);

const char *srlm_st_file_path(const srlm_st_file *f);
uint64_t srlm_st_file_size(const srlm_st_file *f);     /* bytes, whole file */
size_t srlm_st_count(const srlm_st_file *f);           /* tensors, in header order */
const srlm_st_tensor *srlm_st_at(const srlm_st_file *f, size_t i);
const srlm_st_tensor *srlm_st_find(const srlm_st_file *f, const char *name); /* NULL if absent */
/* __metadata__ entries, in header order. */
size_t srlm_st_metadata_count(const srlm_st_file *f);
void srlm_st_metadata_at(const srlm_st_file *f, size_t i, const char **key, const char **value);
const char *srlm_st_metadata_get(const srlm_st_file *f, const char *key); /* NULL if absent */

/* Copies a float tensor (F32/F16/BF16) into dst as f32; n must equal its numel.
 * Errors name the tensor and its file. */
srlm_status srlm_st_tensor_to_f32(const srlm_st_tensor *t, float *dst, size_t n);

/* ---- a checkpoint: one file or the shards of an index ------------------------ */

typedef struct srlm_st_set srlm_st_set;

/* Opens the weights of a model directory the way transformers does:
 * model.safetensors if present, else model.safetensors.index.json (sharded). */
srlm_status srlm_st_set_open_dir(const char *dir, srlm_st_set **out);
/* Opens a sharded checkpoint from its index. Validates that weight_map is an
 * object of plain file names, that every shard opens, that each tensor is in the
 * shard the index names, and that no shard holds a tensor the index omits or
 * another shard also holds. */
srlm_status srlm_st_set_open_index(const char *index_path, srlm_st_set **out);
void srlm_st_set_free(srlm_st_set *s);

size_t srlm_st_set_file_count(const srlm_st_set *s);
const srlm_st_file *srlm_st_set_file(const srlm_st_set *s, size_t i);
/* "model.safetensors" or the index path */
const char *srlm_st_set_source(const srlm_st_set *s);
size_t srlm_st_set_count(const srlm_st_set *s); /* tensors over all files, file by file */
const srlm_st_tensor *srlm_st_set_at(const srlm_st_set *s, size_t i);
const srlm_st_tensor *srlm_st_set_find(const srlm_st_set *s, const char *name);

/* ---- writing ---------------------------------------------------------------- */

typedef struct srlm_st_entry {
  const char *name;
  srlm_st_dtype dtype;
  int ndim;
  const int64_t *shape; /* (ndim) */
  const void *data;     /* product(shape) * dtype size bytes */
} srlm_st_entry;

typedef struct srlm_st_meta {
  const char *key;
  const char *value;
} srlm_st_meta;

/* Writes one file: header padded with spaces so the data area starts 8-aligned,
 * tensors in the given order. Written to path.tmp.<pid>, fsynced, renamed.
 * meta may be NULL when n_meta is 0. */
srlm_status srlm_st_write(const char *path, const srlm_st_entry *tensors, size_t n,
                          const srlm_st_meta *meta, size_t n_meta);

/* Writes the weights of a model directory the way transformers saves them:
 * model.safetensors when everything fits in max_shard_bytes (0: no limit),
 * else model-0000k-of-0000n.safetensors shards (tensors in order, a shard
 * closes before it would exceed the limit) plus model.safetensors.index.json.
 * Removes a stale model.safetensors / index of the other layout, so the
 * directory says one thing. *n_files (may be NULL) gets the number of
 * safetensors files written. */
srlm_status srlm_st_write_dir(const char *dir, const srlm_st_entry *tensors, size_t n,
                              const srlm_st_meta *meta, size_t n_meta, uint64_t max_shard_bytes,
                              size_t *n_files);

#ifdef __cplusplus
}
#endif
#endif
