/* safetensors: validating reader (mmap or memory image), atomic writer, sharded
 * checkpoints (model.safetensors.index.json) and F32/F16/BF16 conversions.
 *
 * The reader trusts nothing in the file: every length, offset and shape product
 * is checked for overflow before it is used, and the tensors must tile the data
 * area exactly. Errors read "<file>: tensor '<name>': <what>". */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "srlm/safetensors.h"
#include "srlm/jsonl.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "srlm reads safetensors data in place and needs a little-endian host"
#endif

#define ST_INDEX_NAME "model.safetensors.index.json"
#define ST_SINGLE_NAME "model.safetensors"

/* ---- dtypes ------------------------------------------------------------------ */

static const struct {
  const char *name;
  size_t size;
} k_dtypes[SRLM_ST_DTYPE_COUNT] = {
    [SRLM_ST_F32] = {"F32", 4}, [SRLM_ST_F16] = {"F16", 2}, [SRLM_ST_BF16] = {"BF16", 2},
    [SRLM_ST_I32] = {"I32", 4}, [SRLM_ST_I64] = {"I64", 8}, [SRLM_ST_U8] = {"U8", 1},
};

/* Valid safetensors dtypes that srlm does not read: an "unsupported" rather than a
 * "malformed" error. */
static const char *const k_other_dtypes[] = {"F64", "I8", "I16", "U16", "U32", "U64", "BOOL",
                                             "F8_E4M3", "F8_E5M2", "F8_E8M0", "F6_E2M3",
                                             "F6_E3M2", "F4", "C64"};

size_t srlm_st_dtype_size(srlm_st_dtype dt) {
  return ((unsigned)dt < SRLM_ST_DTYPE_COUNT) ? k_dtypes[dt].size : 0;
}
const char *srlm_st_dtype_name(srlm_st_dtype dt) {
  return ((unsigned)dt < SRLM_ST_DTYPE_COUNT) ? k_dtypes[dt].name : "?";
}
bool srlm_st_dtype_parse(const char *name, srlm_st_dtype *out) {
  for (int i = 0; i < SRLM_ST_DTYPE_COUNT; i++)
    if (!strcmp(name, k_dtypes[i].name)) {
      *out = (srlm_st_dtype)i;
      return true;
    }
  return false;
}
bool srlm_st_dtype_is_float(srlm_st_dtype dt) {
  return dt == SRLM_ST_F32 || dt == SRLM_ST_F16 || dt == SRLM_ST_BF16;
}

/* ---- conversions ---------------------------------------------------------------- */

static inline uint32_t f32_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}
static inline float bits_f32(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}

float srlm_st_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
  if (exp == 0x1f) return bits_f32(sign | 0x7f800000u | (man << 13)); /* inf, NaN payload kept */
  if (exp == 0) {                                                    /* zero or subnormal: man * 2^-24 */
    float v = ldexpf((float)man, -24);
    return sign ? -v : v;
  }
  return bits_f32(sign | ((exp + (127 - 15)) << 23) | (man << 13));
}

uint16_t srlm_st_f32_to_f16(float f) {
  uint32_t x = f32_bits(f);
  uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
  x &= 0x7fffffffu;
  if (x > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((x >> 13) & 0x1ffu)); /* quiet NaN */
  /* 65520 is halfway between 65504 (max, odd mantissa) and 65536: it and above round to inf */
  if (x >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);
  if (x < 0x38800000u) { /* below 2^-14: f16 subnormal, result = round(value * 2^24) */
    int e = (int)(x >> 23);
    int shift = 126 - e; /* value * 2^24 = M >> shift with M the 24-bit significand */
    if (shift > 24) return sign;
    uint32_t m = (x & 0x7fffffu) | 0x800000u;
    uint32_t q = m >> shift, rem = m & ((1u << shift) - 1u), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1u))) q++; /* q may reach 0x400: the smallest normal */
    return (uint16_t)(sign | q);
  }
  uint32_t r = x - ((uint32_t)(127 - 15) << 23); /* rebias the exponent */
  r += 0xfffu + ((r >> 13) & 1u);
  return (uint16_t)(sign | (r >> 13));
}

static inline float load_as_f32(srlm_st_dtype dt, const unsigned char *p) {
  if (dt == SRLM_ST_F32) {
    float v;
    memcpy(&v, p, 4);
    return v;
  }
  uint16_t h;
  memcpy(&h, p, 2);
  return dt == SRLM_ST_BF16 ? srlm_bf16_to_f32(h) : srlm_st_f16_to_f32(h);
}

static inline void store_from_f32(srlm_st_dtype dt, unsigned char *p, float v) {
  if (dt == SRLM_ST_F32) {
    memcpy(p, &v, 4);
    return;
  }
  uint16_t h = dt == SRLM_ST_BF16 ? srlm_f32_to_bf16(v) : srlm_st_f32_to_f16(v);
  memcpy(p, &h, 2);
}

srlm_status srlm_st_convert(srlm_st_dtype src_dtype, const void *src, srlm_st_dtype dst_dtype,
                            void *dst, size_t n) {
  if (!srlm_st_dtype_is_float(src_dtype) || !srlm_st_dtype_is_float(dst_dtype))
    return srlm_error(SRLM_ERR_UNSUPPORTED, "safetensors", "cannot convert %s to %s (float dtypes only)",
                      srlm_st_dtype_name(src_dtype), srlm_st_dtype_name(dst_dtype));
  size_t ss = k_dtypes[src_dtype].size, ds = k_dtypes[dst_dtype].size;
  if (src_dtype == dst_dtype) {
    if (n) memcpy(dst, src, n * ss);
    return SRLM_OK;
  }
  const unsigned char *s = src;
  unsigned char *d = dst;
  /* the pairs a model load/save uses get their own loop (no per-element dtype switch) */
  if (src_dtype == SRLM_ST_BF16 && dst_dtype == SRLM_ST_F32) {
    for (size_t i = 0; i < n; i++) {
      uint16_t h;
      memcpy(&h, s + 2 * i, 2);
      uint32_t u = (uint32_t)h << 16;
      memcpy(d + 4 * i, &u, 4);
    }
  } else if (src_dtype == SRLM_ST_F32 && dst_dtype == SRLM_ST_BF16) {
    for (size_t i = 0; i < n; i++) {
      float v;
      memcpy(&v, s + 4 * i, 4);
      uint16_t h = srlm_f32_to_bf16(v);
      memcpy(d + 2 * i, &h, 2);
    }
  } else {
    for (size_t i = 0; i < n; i++) store_from_f32(dst_dtype, d + i * ds, load_as_f32(src_dtype, s + i * ss));
  }
  return SRLM_OK;
}

srlm_status srlm_st_tensor_to_f32(const srlm_st_tensor *t, float *dst, size_t n) {
  char where[1024];
  snprintf(where, sizeof where, "%s: tensor '%s'", t->file ? t->file : "safetensors", t->name);
  if (!srlm_st_dtype_is_float(t->dtype))
    return srlm_error(SRLM_ERR_UNSUPPORTED, where, "dtype %s is not a float dtype",
                      srlm_st_dtype_name(t->dtype));
  if ((uint64_t)n != t->numel)
    return srlm_error(SRLM_ERR_RANGE, where, "has %llu elements, expected %zu",
                      (unsigned long long)t->numel, n);
  return srlm_st_convert(t->dtype, t->data, SRLM_ST_F32, dst, n);
}

/* ---- reading ------------------------------------------------------------------- */

typedef struct st_meta_kv {
  const char *key, *value;
} st_meta_kv;

struct srlm_st_file {
  char *path;
  const unsigned char *base; /* whole file */
  size_t size;
  bool mapped;
  size_t data_start; /* 8 + header length */
  srlm_st_tensor *tensors; /* (n) header order */
  size_t n;
  size_t *by_name; /* (n) indices sorted by name */
  st_meta_kv *meta; /* (n_meta) */
  size_t n_meta;
  srlm_arena arena; /* names, shapes, metadata strings */
};

static srlm_status tensor_error(const srlm_st_file *f, const char *name, srlm_status code,
                                const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static srlm_status tensor_error(const srlm_st_file *f, const char *name, srlm_status code,
                                const char *fmt, ...) {
  char where[1024];
  snprintf(where, sizeof where, "%s: tensor '%s'", f->path, name);
  va_list ap;
  va_start(ap, fmt);
  srlm_verror(code, where, fmt, ap);
  va_end(ap);
  return code;
}


/* Describes a bad array element: its integer value, or its type. */
static const char *describe_value(const json_t *v, char *buf, size_t n) {
  if (json_is_integer(v))
    snprintf(buf, n, "%lld", (long long)json_integer_value(v));
  else
    snprintf(buf, n, "%s", srlm_json_type_name(v));
  return buf;
}

static void format_shape(char *buf, size_t n, const int64_t *shape, int ndim) {
  size_t k = 0;
  k += (size_t)snprintf(buf, n, "[");
  for (int i = 0; i < ndim && k < n; i++) {
    if (k + 24 >= n) {
      snprintf(buf + k, n - k, "...");
      k = n;
      break;
    }
    k += (size_t)snprintf(buf + k, n - k, "%s%lld", i ? ", " : "", (long long)shape[i]);
  }
  if (k < n) snprintf(buf + k, n - k, "]");
}

static srlm_status parse_tensor(srlm_st_file *f, const char *name, json_t *entry, uint64_t data_size,
                                srlm_st_tensor *t) {
  char vbuf[64];
  if (!json_is_object(entry))
    return tensor_error(f, name, SRLM_ERR_FORMAT, "entry is not an object (it is %s)",
                        srlm_json_type_name(entry));
  const char *k;
  json_t *v;
  json_object_foreach(entry, k, v) {
    if (strcmp(k, "dtype") && strcmp(k, "shape") && strcmp(k, "data_offsets"))
      return tensor_error(f, name, SRLM_ERR_FORMAT,
                          "unknown key '%s' (expected dtype, shape, data_offsets)", k);
  }
  t->name = srlm_arena_strdup(&f->arena, name);
  t->file = f->path;

  json_t *dt = json_object_get(entry, "dtype");
  if (!dt) return tensor_error(f, name, SRLM_ERR_FORMAT, "missing \"dtype\"");
  if (!json_is_string(dt))
    return tensor_error(f, name, SRLM_ERR_FORMAT, "\"dtype\" is %s, expected a string",
                        srlm_json_type_name(dt));
  const char *dts = json_string_value(dt);
  if (!srlm_st_dtype_parse(dts, &t->dtype)) {
    for (size_t i = 0; i < sizeof k_other_dtypes / sizeof k_other_dtypes[0]; i++)
      if (!strcmp(dts, k_other_dtypes[i]))
        return tensor_error(f, name, SRLM_ERR_UNSUPPORTED,
                            "dtype '%s' is not supported (srlm reads F32, F16, BF16, I32, I64, U8)", dts);
    return tensor_error(f, name, SRLM_ERR_FORMAT, "unknown dtype '%s'", dts);
  }

  json_t *sh = json_object_get(entry, "shape");
  if (!sh) return tensor_error(f, name, SRLM_ERR_FORMAT, "missing \"shape\"");
  if (!json_is_array(sh))
    return tensor_error(f, name, SRLM_ERR_FORMAT,
                        "\"shape\" is %s, expected an array of non-negative integers", srlm_json_type_name(sh));
  size_t ndim = json_array_size(sh);
  if (ndim > INT_MAX / 2)
    return tensor_error(f, name, SRLM_ERR_FORMAT, "\"shape\" has %zu dimensions", ndim);
  int64_t *shape = srlm_arena_alloc(&f->arena, (ndim ? ndim : 1) * sizeof(int64_t), 8);
  bool any_zero = false;
  for (size_t i = 0; i < ndim; i++) {
    json_t *d = json_array_get(sh, i);
    if (!json_is_integer(d) || json_integer_value(d) < 0)
      return tensor_error(f, name, SRLM_ERR_FORMAT,
                          "\"shape\" must be an array of non-negative integers (element %zu is %s)", i,
                          describe_value(d, vbuf, sizeof vbuf));
    shape[i] = (int64_t)json_integer_value(d);
    if (shape[i] == 0) any_zero = true;
  }
  t->ndim = (int)ndim;
  t->shape = shape;
  char shape_str[256];
  format_shape(shape_str, sizeof shape_str, shape, t->ndim);

  /* A zero dimension makes the product 0 however large the others are. */
  uint64_t numel = 1, nbytes = 0;
  bool too_big = false;
  if (any_zero)
    numel = 0;
  else
    for (size_t i = 0; i < ndim; i++)
      if (__builtin_mul_overflow(numel, (uint64_t)shape[i], &numel)) too_big = true;
  if (too_big || __builtin_mul_overflow(numel, (uint64_t)k_dtypes[t->dtype].size, &nbytes))
    return tensor_error(f, name, SRLM_ERR_FORMAT, "shape %s of %s is too large (byte size overflows 64 bits)",
                        shape_str, dts);

  json_t *off = json_object_get(entry, "data_offsets");
  if (!off) return tensor_error(f, name, SRLM_ERR_FORMAT, "missing \"data_offsets\"");
  if (!json_is_array(off) || json_array_size(off) != 2)
    return tensor_error(f, name, SRLM_ERR_FORMAT,
                        "\"data_offsets\" must be two non-negative integers [begin, end] (it is %s%s)",
                        srlm_json_type_name(off), json_is_array(off) ? " of another length" : "");
  uint64_t be[2];
  for (size_t i = 0; i < 2; i++) {
    json_t *d = json_array_get(off, i);
    if (!json_is_integer(d) || json_integer_value(d) < 0)
      return tensor_error(f, name, SRLM_ERR_FORMAT,
                          "\"data_offsets\" must be two non-negative integers [begin, end] (%s is %s)",
                          i ? "end" : "begin", describe_value(d, vbuf, sizeof vbuf));
    be[i] = (uint64_t)json_integer_value(d);
  }
  if (be[0] > be[1])
    return tensor_error(f, name, SRLM_ERR_FORMAT, "data_offsets [%llu, %llu] have begin > end",
                        (unsigned long long)be[0], (unsigned long long)be[1]);
  if (be[1] - be[0] != nbytes)
    return tensor_error(f, name, SRLM_ERR_FORMAT,
                        "shape %s of %s needs %llu bytes but data_offsets [%llu, %llu] span %llu",
                        shape_str, dts, (unsigned long long)nbytes, (unsigned long long)be[0],
                        (unsigned long long)be[1], (unsigned long long)(be[1] - be[0]));
  if (be[1] > data_size)
    return tensor_error(f, name, SRLM_ERR_FORMAT,
                        "data_offsets [%llu, %llu] extend past the end of the data area (%llu bytes)",
                        (unsigned long long)be[0], (unsigned long long)be[1],
                        (unsigned long long)data_size);
  t->numel = numel;
  t->offset = be[0];
  t->nbytes = nbytes;
  t->data = f->base + f->data_start + be[0];
  return SRLM_OK;
}

/* qsort has no context argument: the comparators see the tensor array through this
 * thread-local pointer, set just around each sort. */
static _Thread_local const srlm_st_tensor *g_sort_tensors;

static int cmp_by_offset(const void *a, const void *b) {
  const srlm_st_tensor *x = &g_sort_tensors[*(const size_t *)a], *y = &g_sort_tensors[*(const size_t *)b];
  if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
  uint64_t xe = x->offset + x->nbytes, ye = y->offset + y->nbytes;
  if (xe != ye) return xe < ye ? -1 : 1;
  size_t ia = *(const size_t *)a, ib = *(const size_t *)b;
  return ia < ib ? -1 : ia > ib;
}

static int cmp_by_name(const void *a, const void *b) {
  return strcmp(g_sort_tensors[*(const size_t *)a].name, g_sort_tensors[*(const size_t *)b].name);
}

/* The tensors must tile [0, data_size) exactly. */
static srlm_status check_coverage(const srlm_st_file *f, uint64_t data_size) {
  size_t *order = srlm_xmalloc((f->n ? f->n : 1) * sizeof *order);
  for (size_t i = 0; i < f->n; i++) order[i] = i;
  g_sort_tensors = f->tensors;
  qsort(order, f->n, sizeof *order, cmp_by_offset);
  g_sort_tensors = NULL;
  uint64_t cursor = 0;
  const srlm_st_tensor *prev = NULL;
  srlm_status st = SRLM_OK;
  for (size_t i = 0; i < f->n && st == SRLM_OK; i++) {
    const srlm_st_tensor *t = &f->tensors[order[i]];
    if (t->offset < cursor)
      st = tensor_error(f, t->name, SRLM_ERR_FORMAT,
                        "data_offsets [%llu, %llu] overlap tensor '%s' [%llu, %llu]",
                        (unsigned long long)t->offset, (unsigned long long)(t->offset + t->nbytes),
                        prev->name, (unsigned long long)prev->offset,
                        (unsigned long long)(prev->offset + prev->nbytes));
    else if (t->offset > cursor)
      st = tensor_error(f, t->name, SRLM_ERR_FORMAT,
                        "hole in the data area: bytes [%llu, %llu) before this tensor belong to no tensor",
                        (unsigned long long)cursor, (unsigned long long)t->offset);
    cursor = t->offset + t->nbytes;
    prev = t;
  }
  free(order);
  if (st == SRLM_OK && cursor != data_size)
    st = srlm_error(SRLM_ERR_FORMAT, f->path,
                    "hole in the data area: bytes [%llu, %llu) at its end belong to no tensor",
                    (unsigned long long)cursor, (unsigned long long)data_size);
  return st;
}

static srlm_status parse_metadata(srlm_st_file *f, json_t *md) {
  if (!json_is_object(md))
    return srlm_error(SRLM_ERR_FORMAT, f->path, "\"__metadata__\" is %s, expected an object of strings",
                      srlm_json_type_name(md));
  f->n_meta = json_object_size(md);
  f->meta = srlm_arena_alloc(&f->arena, (f->n_meta ? f->n_meta : 1) * sizeof *f->meta, 8);
  size_t i = 0;
  const char *k;
  json_t *v;
  json_object_foreach(md, k, v) {
    if (!json_is_string(v))
      return srlm_error(SRLM_ERR_FORMAT, f->path,
                        "\"__metadata__\" value for key '%s' is %s, expected a string", k,
                        srlm_json_type_name(v));
    f->meta[i].key = srlm_arena_strdup(&f->arena, k);
    f->meta[i].value = srlm_arena_strdup(&f->arena, json_string_value(v));
    i++;
  }
  return SRLM_OK;
}

static srlm_status parse_image(srlm_st_file *f) {
  if (f->size < 8)
    return srlm_error(SRLM_ERR_FORMAT, f->path,
                      "file is %zu bytes, shorter than the 8-byte header length", f->size);
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | f->base[i];
  if (hlen == 0) return srlm_error(SRLM_ERR_FORMAT, f->path, "header length is 0");
  if (hlen > SRLM_ST_MAX_HEADER_BYTES)
    return srlm_error(SRLM_ERR_FORMAT, f->path, "header length %llu exceeds the limit of %llu bytes",
                      (unsigned long long)hlen, SRLM_ST_MAX_HEADER_BYTES);
  if (hlen > f->size - 8)
    return srlm_error(SRLM_ERR_FORMAT, f->path,
                      "header length %llu is larger than the %zu bytes after it (truncated file?)",
                      (unsigned long long)hlen, f->size - 8);
  f->data_start = 8 + (size_t)hlen;
  uint64_t data_size = f->size - f->data_start;

  json_error_t jerr;
  json_t *root = json_loadb((const char *)f->base + 8, (size_t)hlen, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY,
                            &jerr);
  if (!root)
    return srlm_error(SRLM_ERR_FORMAT, f->path, "header is not valid JSON: %s (at byte %d of the header)",
                      jerr.text, jerr.position);
  srlm_status st = SRLM_OK;
  if (!json_is_object(root)) {
    st = srlm_error(SRLM_ERR_FORMAT, f->path, "header is %s, expected a JSON object", srlm_json_type_name(root));
    goto done;
  }
  json_t *md = json_object_get(root, "__metadata__");
  if (md && (st = parse_metadata(f, md)) != SRLM_OK) goto done;
  f->n = json_object_size(root) - (md ? 1 : 0);
  f->tensors = srlm_arena_alloc(&f->arena, (f->n ? f->n : 1) * sizeof *f->tensors, 8);
  size_t i = 0;
  const char *key;
  json_t *entry;
  json_object_foreach(root, key, entry) {
    if (!strcmp(key, "__metadata__")) continue;
    if ((st = parse_tensor(f, key, entry, data_size, &f->tensors[i])) != SRLM_OK) goto done;
    i++;
  }
  if ((st = check_coverage(f, data_size)) != SRLM_OK) goto done;
  f->by_name = srlm_xmalloc((f->n ? f->n : 1) * sizeof *f->by_name);
  for (size_t j = 0; j < f->n; j++) f->by_name[j] = j;
  g_sort_tensors = f->tensors;
  qsort(f->by_name, f->n, sizeof *f->by_name, cmp_by_name);
  g_sort_tensors = NULL;
done:
  json_decref(root);
  return st;
}

static srlm_st_file *file_new(const char *path) {
  srlm_st_file *f = srlm_xcalloc(1, sizeof *f);
  f->path = srlm_xstrdup(path);
  srlm_arena_init(&f->arena, 1 << 16);
  return f;
}

srlm_status srlm_st_parse_memory(const void *bytes, size_t size, const char *name, srlm_st_file **out) {
  *out = NULL;
  srlm_st_file *f = file_new(name ? name : "(memory)");
  f->base = bytes;
  f->size = size;
  srlm_status st = parse_image(f);
  if (st != SRLM_OK) {
    srlm_st_close(f);
    return st;
  }
  *out = f;
  return SRLM_OK;
}

srlm_status srlm_st_open(const char *path, srlm_st_file **out) {
  *out = NULL;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return srlm_error(SRLM_ERR_IO, path, "cannot open: %s", strerror(errno));
  struct stat sb;
  if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
    close(fd);
    return srlm_error(SRLM_ERR_IO, path, "not a regular file");
  }
  srlm_st_file *f = file_new(path);
  f->size = (size_t)sb.st_size;
  if (f->size >= 8) {
    void *m = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m == MAP_FAILED) {
      int e = errno;
      close(fd);
      srlm_st_close(f);
      return srlm_error(SRLM_ERR_IO, path, "cannot map %zu bytes: %s", (size_t)sb.st_size, strerror(e));
    }
    f->base = m;
    f->mapped = true;
  }
  close(fd);
  srlm_status st = parse_image(f);
  if (st != SRLM_OK) {
    srlm_st_close(f);
    return st;
  }
  *out = f;
  return SRLM_OK;
}

void srlm_st_close(srlm_st_file *f) {
  if (!f) return;
  if (f->mapped) munmap((void *)f->base, f->size);
  free(f->by_name);
  srlm_arena_free(&f->arena);
  free(f->path);
  free(f);
}

const char *srlm_st_file_path(const srlm_st_file *f) { return f->path; }
uint64_t srlm_st_file_size(const srlm_st_file *f) { return f->size; }
size_t srlm_st_count(const srlm_st_file *f) { return f->n; }
const srlm_st_tensor *srlm_st_at(const srlm_st_file *f, size_t i) { return i < f->n ? &f->tensors[i] : NULL; }

const srlm_st_tensor *srlm_st_find(const srlm_st_file *f, const char *name) {
  size_t lo = 0, hi = f->n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int c = strcmp(f->tensors[f->by_name[mid]].name, name);
    if (c == 0) return &f->tensors[f->by_name[mid]];
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  return NULL;
}

size_t srlm_st_metadata_count(const srlm_st_file *f) { return f->n_meta; }
void srlm_st_metadata_at(const srlm_st_file *f, size_t i, const char **key, const char **value) {
  *key = i < f->n_meta ? f->meta[i].key : NULL;
  *value = i < f->n_meta ? f->meta[i].value : NULL;
}
const char *srlm_st_metadata_get(const srlm_st_file *f, const char *key) {
  for (size_t i = 0; i < f->n_meta; i++)
    if (!strcmp(f->meta[i].key, key)) return f->meta[i].value;
  return NULL;
}

/* ---- sets (single file or shards) ------------------------------------------------ */

struct srlm_st_set {
  char *source;
  srlm_st_file **files; /* (n_files) */
  size_t n_files;
  const srlm_st_tensor **tensors; /* (n) file by file */
  size_t *file_of;                /* (n) index into files */
  size_t n;
  size_t *by_name; /* (n) indices sorted by name */
};

static _Thread_local const srlm_st_tensor *const *g_sort_set;
static int cmp_set_by_name(const void *a, const void *b) {
  return strcmp(g_sort_set[*(const size_t *)a]->name, g_sort_set[*(const size_t *)b]->name);
}

static srlm_st_set *set_new(const char *source) {
  srlm_st_set *s = srlm_xcalloc(1, sizeof *s);
  s->source = srlm_xstrdup(source);
  return s;
}

static void set_add_file(srlm_st_set *s, srlm_st_file *f) {
  s->files = srlm_xrealloc(s->files, (s->n_files + 1) * sizeof *s->files);
  s->files[s->n_files] = f;
  size_t m = srlm_st_count(f);
  s->tensors = srlm_xrealloc(s->tensors, (s->n + m + 1) * sizeof *s->tensors);
  s->file_of = srlm_xrealloc(s->file_of, (s->n + m + 1) * sizeof *s->file_of);
  for (size_t i = 0; i < m; i++) {
    s->tensors[s->n + i] = srlm_st_at(f, i);
    s->file_of[s->n + i] = s->n_files;
  }
  s->n += m;
  s->n_files++;
}

static void set_index_names(srlm_st_set *s) {
  free(s->by_name);
  s->by_name = srlm_xmalloc((s->n ? s->n : 1) * sizeof *s->by_name);
  for (size_t i = 0; i < s->n; i++) s->by_name[i] = i;
  g_sort_set = s->tensors;
  qsort(s->by_name, s->n, sizeof *s->by_name, cmp_set_by_name);
  g_sort_set = NULL;
}

static const char *base_name(const char *path) {
  const char *slash = strrchr(path, '/');
  return slash ? slash + 1 : path;
}

static char *path_join(const char *dir, const char *name) {
  size_t a = strlen(dir), b = strlen(name);
  char *p = srlm_xmalloc(a + b + 2);
  memcpy(p, dir, a);
  size_t k = a;
  if (a && dir[a - 1] != '/') p[k++] = '/';
  memcpy(p + k, name, b + 1);
  return p;
}

static bool file_exists(const char *path) {
  struct stat sb;
  return stat(path, &sb) == 0;
}

srlm_status srlm_st_set_open_dir(const char *dir, srlm_st_set **out) {
  *out = NULL;
  struct stat sb;
  if (stat(dir, &sb) != 0) return srlm_error(SRLM_ERR_IO, dir, "cannot open model directory: %s", strerror(errno));
  if (!S_ISDIR(sb.st_mode)) return srlm_error(SRLM_ERR_IO, dir, "not a directory");
  char *single = path_join(dir, ST_SINGLE_NAME);
  char *index = path_join(dir, ST_INDEX_NAME);
  srlm_status st;
  if (file_exists(single)) {
    srlm_st_file *f;
    st = srlm_st_open(single, &f);
    if (st == SRLM_OK) {
      srlm_st_set *s = set_new(single);
      set_add_file(s, f);
      set_index_names(s);
      *out = s;
    }
  } else if (file_exists(index)) {
    st = srlm_st_set_open_index(index, out);
  } else {
    st = srlm_error(SRLM_ERR_IO, dir, "no %s or %s in the model directory", ST_SINGLE_NAME, ST_INDEX_NAME);
  }
  free(single);
  free(index);
  return st;
}

/* A weight_map value must name a file next to the index. */
static bool plain_file_name(const char *s) {
  return s[0] && !strchr(s, '/') && strcmp(s, ".") && strcmp(s, "..");
}

static srlm_status check_index(srlm_st_set *s, const char *index_path, json_t *wm) {
  /* one tensor name in two shards */
  for (size_t i = 1; i < s->n; i++) {
    size_t a = s->by_name[i - 1], b = s->by_name[i];
    if (!strcmp(s->tensors[a]->name, s->tensors[b]->name))
      return srlm_error(SRLM_ERR_FORMAT, index_path, "tensor '%s' is in two shards: '%s' and '%s'",
                        s->tensors[a]->name, base_name(s->files[s->file_of[a]]->path),
                        base_name(s->files[s->file_of[b]]->path));
  }
  const char *name;
  json_t *v;
  json_object_foreach(wm, name, v) {
    const char *want = json_string_value(v);
    const srlm_st_tensor *t = srlm_st_set_find(s, name);
    if (!t)
      return srlm_error(SRLM_ERR_FORMAT, index_path,
                        "tensor '%s' is in none of the shards (weight_map names shard '%s')", name, want);
    if (strcmp(base_name(t->file), want))
      return srlm_error(SRLM_ERR_FORMAT, index_path,
                        "tensor '%s' is in shard '%s', but weight_map names shard '%s'", name,
                        base_name(t->file), want);
  }
  for (size_t i = 0; i < s->n; i++)
    if (!json_object_get(wm, s->tensors[i]->name))
      return srlm_error(SRLM_ERR_FORMAT, index_path, "tensor '%s' in shard '%s' is not in the weight_map",
                        s->tensors[i]->name, base_name(s->tensors[i]->file));
  return SRLM_OK;
}

srlm_status srlm_st_set_open_index(const char *index_path, srlm_st_set **out) {
  *out = NULL;
  char *text;
  size_t len;
  SRLM_TRY(srlm_read_file(index_path, &text, &len));
  json_error_t jerr;
  json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
  free(text);
  if (!root)
    return srlm_error(SRLM_ERR_FORMAT, index_path, "not valid JSON: %s (line %d, column %d)", jerr.text,
                      jerr.line, jerr.column);
  srlm_status st = SRLM_OK;
  srlm_st_set *s = NULL;
  char *dir = NULL;
  const char **shards = NULL;
  size_t n_shards = 0;
  json_t *wm = json_is_object(root) ? json_object_get(root, "weight_map") : NULL;
  if (!json_is_object(root)) {
    st = srlm_error(SRLM_ERR_FORMAT, index_path, "is %s, expected a JSON object", srlm_json_type_name(root));
    goto done;
  }
  if (!wm) {
    st = srlm_error(SRLM_ERR_FORMAT, index_path, "missing key 'weight_map'");
    goto done;
  }
  if (!json_is_object(wm)) {
    st = srlm_error(SRLM_ERR_FORMAT, index_path, "key 'weight_map' is %s, expected an object",
                    srlm_json_type_name(wm));
    goto done;
  }
  const char *name;
  json_t *v;
  shards = srlm_xmalloc((json_object_size(wm) + 1) * sizeof *shards);
  json_object_foreach(wm, name, v) {
    if (!json_is_string(v) || !plain_file_name(json_string_value(v))) {
      st = srlm_error(SRLM_ERR_FORMAT, index_path,
                      "weight_map entry for tensor '%s' must be a shard file name in the same directory",
                      name);
      goto done;
    }
    const char *shard = json_string_value(v);
    size_t j = 0;
    while (j < n_shards && strcmp(shards[j], shard)) j++;
    if (j == n_shards) shards[n_shards++] = shard;
  }
  dir = srlm_xstrdup(index_path);
  char *slash = strrchr(dir, '/');
  if (slash)
    slash[1] = '\0';
  else
    strcpy(dir, ".");
  s = set_new(index_path);
  for (size_t j = 0; j < n_shards; j++) {
    char *p = path_join(dir, shards[j]);
    srlm_st_file *f;
    st = srlm_st_open(p, &f);
    free(p);
    if (st != SRLM_OK) {
      srlm_error_context(st, "%s: shard '%s'", index_path, shards[j]);
      goto done;
    }
    set_add_file(s, f);
  }
  set_index_names(s);
  st = check_index(s, index_path, wm);
done:
  free(shards);
  free(dir);
  json_decref(root);
  if (st != SRLM_OK) {
    srlm_st_set_free(s);
    return st;
  }
  *out = s;
  return SRLM_OK;
}

void srlm_st_set_free(srlm_st_set *s) {
  if (!s) return;
  for (size_t i = 0; i < s->n_files; i++) srlm_st_close(s->files[i]);
  free(s->files);
  free(s->tensors);
  free(s->file_of);
  free(s->by_name);
  free(s->source);
  free(s);
}

size_t srlm_st_set_file_count(const srlm_st_set *s) { return s->n_files; }
const srlm_st_file *srlm_st_set_file(const srlm_st_set *s, size_t i) {
  return i < s->n_files ? s->files[i] : NULL;
}
const char *srlm_st_set_source(const srlm_st_set *s) { return s->source; }
size_t srlm_st_set_count(const srlm_st_set *s) { return s->n; }
const srlm_st_tensor *srlm_st_set_at(const srlm_st_set *s, size_t i) { return i < s->n ? s->tensors[i] : NULL; }

const srlm_st_tensor *srlm_st_set_find(const srlm_st_set *s, const char *name) {
  size_t lo = 0, hi = s->n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int c = strcmp(s->tensors[s->by_name[mid]]->name, name);
    if (c == 0) return s->tensors[s->by_name[mid]];
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  return NULL;
}

/* ---- writing --------------------------------------------------------------------- */

static srlm_status entry_bytes(const char *path, const srlm_st_entry *e, uint64_t *nbytes) {
  char where[1024];
  snprintf(where, sizeof where, "%s: tensor '%s'", path, e->name ? e->name : "(null)");
  if (!e->name) return srlm_error(SRLM_ERR_INTERNAL, where, "tensor without a name");
  if (!strcmp(e->name, "__metadata__"))
    return srlm_error(SRLM_ERR_RANGE, where, "'__metadata__' is reserved and cannot name a tensor");
  if ((unsigned)e->dtype >= SRLM_ST_DTYPE_COUNT)
    return srlm_error(SRLM_ERR_INTERNAL, where, "invalid dtype %d", (int)e->dtype);
  if (e->ndim < 0 || (e->ndim > 0 && !e->shape))
    return srlm_error(SRLM_ERR_INTERNAL, where, "invalid shape (ndim %d)", e->ndim);
  uint64_t n = k_dtypes[e->dtype].size;
  for (int i = 0; i < e->ndim; i++) {
    if (e->shape[i] < 0)
      return srlm_error(SRLM_ERR_RANGE, where, "dimension %d is negative (%lld)", i, (long long)e->shape[i]);
    if (__builtin_mul_overflow(n, (uint64_t)e->shape[i], &n))
      return srlm_error(SRLM_ERR_RANGE, where, "byte size overflows 64 bits");
  }
  if (n > 0 && !e->data) return srlm_error(SRLM_ERR_INTERNAL, where, "no data for %llu bytes", (unsigned long long)n);
  *nbytes = n;
  return SRLM_OK;
}

/* Builds the padded header for tensors[0..n) laid out back to back. */
static srlm_status build_header(const char *path, const srlm_st_entry *tensors, size_t n,
                                const srlm_st_meta *meta, size_t n_meta, char **out_header,
                                size_t *out_len) {
  json_t *root = json_object();
  srlm_status st = SRLM_OK;
  if (n_meta) {
    json_t *md = json_object();
    json_object_set_new(root, "__metadata__", md);
    for (size_t i = 0; i < n_meta && st == SRLM_OK; i++) {
      json_t *v = json_string(meta[i].value ? meta[i].value : "");
      if (!v || !meta[i].key || json_object_set_new(md, meta[i].key, v) != 0)
        st = srlm_error(SRLM_ERR_RANGE, path, "__metadata__ key '%s' or its value is not valid UTF-8",
                        meta[i].key ? meta[i].key : "(null)");
    }
  }
  uint64_t offset = 0;
  for (size_t i = 0; i < n && st == SRLM_OK; i++) {
    const srlm_st_entry *e = &tensors[i];
    uint64_t nb;
    if ((st = entry_bytes(path, e, &nb)) != SRLM_OK) break;
    if (json_object_get(root, e->name)) {
      st = srlm_error(SRLM_ERR_RANGE, path, "tensor '%s' is listed twice", e->name);
      break;
    }
    json_t *shape = json_array();
    for (int d = 0; d < e->ndim; d++) json_array_append_new(shape, json_integer((json_int_t)e->shape[d]));
    json_t *offs = json_array();
    json_array_append_new(offs, json_integer((json_int_t)offset));
    json_array_append_new(offs, json_integer((json_int_t)(offset + nb)));
    json_t *obj = json_object();
    json_object_set_new(obj, "dtype", json_string(k_dtypes[e->dtype].name));
    json_object_set_new(obj, "shape", shape);
    json_object_set_new(obj, "data_offsets", offs);
    if (json_object_set_new(root, e->name, obj) != 0) {
      st = srlm_error(SRLM_ERR_RANGE, path, "tensor name '%s' is not valid UTF-8", e->name);
      break;
    }
    offset += nb;
  }
  if (st != SRLM_OK) {
    json_decref(root);
    return st;
  }
  char *text = json_dumps(root, JSON_COMPACT);
  json_decref(root);
  SRLM_CHECK(text != NULL, "json_dumps failed (out of memory)");
  size_t len = strlen(text), padded = (len + 7) / 8 * 8;
  char *h = srlm_xmalloc(padded);
  memcpy(h, text, len);
  memset(h + len, ' ', padded - len);
  free(text);
  *out_header = h;
  *out_len = padded;
  return SRLM_OK;
}

static int write_all(int fd, const void *data, uint64_t n) {
  const char *p = data;
  while (n > 0) {
    size_t chunk = n > (1u << 30) ? (1u << 30) : (size_t)n;
    ssize_t w = write(fd, p, chunk);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    p += w;
    n -= (uint64_t)w;
  }
  return 0;
}

/* fsync the directory so the rename itself survives a crash. */
static void sync_parent_dir(const char *path) {
  char *dir = srlm_xstrdup(path);
  char *slash = strrchr(dir, '/');
  if (slash)
    *slash = '\0';
  else
    strcpy(dir, ".");
  int fd = open(dir[0] ? dir : "/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    fsync(fd);
    close(fd);
  }
  free(dir);
}

srlm_status srlm_st_write(const char *path, const srlm_st_entry *tensors, size_t n,
                          const srlm_st_meta *meta, size_t n_meta) {
  char *header;
  size_t hlen;
  SRLM_TRY(build_header(path, tensors, n, meta, n_meta, &header, &hlen));
  char tmp[4096];
  int k = snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
  if (k < 0 || (size_t)k >= sizeof tmp) {
    free(header);
    return srlm_error(SRLM_ERR_IO, path, "path too long");
  }
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    int e = errno;
    free(header);
    return srlm_error(SRLM_ERR_IO, path, "cannot create %s: %s", tmp, strerror(e));
  }
  unsigned char len8[8];
  for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
  int rc = write_all(fd, len8, 8);
  if (rc == 0) rc = write_all(fd, header, hlen);
  free(header);
  for (size_t i = 0; i < n && rc == 0; i++) {
    uint64_t nb = 0;
    entry_bytes(path, &tensors[i], &nb); /* validated by build_header */
    rc = write_all(fd, tensors[i].data, nb);
  }
  if (rc != 0) {
    int e = errno;
    close(fd);
    unlink(tmp);
    return srlm_error(SRLM_ERR_IO, path, "write failed: %s", strerror(e));
  }
  if (fsync(fd) != 0 || close(fd) != 0) {
    int e = errno;
    unlink(tmp);
    return srlm_error(SRLM_ERR_IO, path, "flush failed: %s", strerror(e));
  }
  if (rename(tmp, path) != 0) {
    int e = errno;
    unlink(tmp);
    return srlm_error(SRLM_ERR_IO, path, "rename from %s failed: %s", tmp, strerror(e));
  }
  sync_parent_dir(path);
  return SRLM_OK;
}

static srlm_status remove_stale(const char *path) {
  if (unlink(path) != 0 && errno != ENOENT)
    return srlm_error(SRLM_ERR_IO, path, "cannot remove the stale file: %s", strerror(errno));
  return SRLM_OK;
}

srlm_status srlm_st_write_dir(const char *dir, const srlm_st_entry *tensors, size_t n,
                              const srlm_st_meta *meta, size_t n_meta, uint64_t max_shard_bytes,
                              size_t *n_files) {
  if (n_files) *n_files = 0;
  char *single = path_join(dir, ST_SINGLE_NAME);
  char *index = path_join(dir, ST_INDEX_NAME);
  uint64_t *nb = srlm_xmalloc((n ? n : 1) * sizeof *nb);
  size_t *shard_of = srlm_xmalloc((n ? n : 1) * sizeof *shard_of);
  srlm_status st = SRLM_OK;
  uint64_t total = 0, cur = 0;
  size_t n_shards = 1, in_cur = 0;
  for (size_t i = 0; i < n && st == SRLM_OK; i++) {
    st = entry_bytes(single, &tensors[i], &nb[i]);
    if (st != SRLM_OK) break;
    total += nb[i];
    if (max_shard_bytes && in_cur > 0 && cur + nb[i] > max_shard_bytes) {
      n_shards++;
      cur = 0;
      in_cur = 0;
    }
    cur += nb[i];
    in_cur++;
    shard_of[i] = n_shards - 1;
  }
  if (st != SRLM_OK) goto done;
  if (n_shards == 1) {
    if ((st = srlm_st_write(single, tensors, n, meta, n_meta)) != SRLM_OK) goto done;
    st = remove_stale(index);
    if (st == SRLM_OK && n_files) *n_files = 1;
    goto done;
  }
  json_t *wm = json_object();
  size_t first = 0;
  for (size_t s = 0; s < n_shards && st == SRLM_OK; s++) {
    size_t last = first;
    while (last < n && shard_of[last] == s) last++;
    char name[64];
    snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", s + 1, n_shards);
    char *p = path_join(dir, name);
    st = srlm_st_write(p, tensors + first, last - first, meta, n_meta);
    free(p);
    for (size_t i = first; i < last && st == SRLM_OK; i++) json_object_set_new(wm, tensors[i].name, json_string(name));
    first = last;
  }
  if (st == SRLM_OK) {
    json_t *root = json_object();
    json_t *md = json_object();
    json_object_set_new(md, "total_size", json_integer((json_int_t)total));
    json_object_set_new(root, "metadata", md);
    json_object_set_new(root, "weight_map", wm);
    char *text = json_dumps(root, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(root);
    SRLM_CHECK(text != NULL, "json_dumps failed (out of memory)");
    size_t len = strlen(text);
    text = srlm_xrealloc(text, len + 2);
    text[len++] = '\n';
    st = srlm_write_file_atomic(index, text, len);
    free(text);
    if (st == SRLM_OK) st = remove_stale(single);
    if (st == SRLM_OK && n_files) *n_files = n_shards;
  } else {
    json_decref(wm);
  }
done:
  free(nb);
  free(shard_of);
  free(single);
  free(index);
  return st;
}
