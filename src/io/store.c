/* srlm store: HDF5 records with format/version attributes and atomic writes
 * (layout and conventions in include/srlm/store.h).
 *
 * Error handling: every HDF5 call goes through SRLM_H5, which turns a negative return
 * into an SRLM_ERR_LIB error carrying the statement and the innermost description of
 * HDF5's error stack (HDF5's own printing is switched off). Internal *_impl functions
 * record handles they open in an h5_objs, which the public wrapper releases on every
 * path, and raise errors without a location; the wrapper then prefixes
 * "<file>: <object path>" so every message names the file and the record.
 */
#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "srlm/store.h"

/* The innermost (first detected) HDF5 error of this thread's default stack. */
static _Thread_local char g_h5_desc[512];

static herr_t innermost_cb(unsigned n, const H5E_error2_t *e, void *data) {
  (void)data;
  if (n != 0) return 0;  /* H5E_WALK_UPWARD starts at the innermost error */
  if (e->desc && e->desc[0]) {
    snprintf(g_h5_desc, sizeof g_h5_desc, "%s", e->desc);
  } else if (H5Eget_msg(e->min_num, NULL, g_h5_desc, sizeof g_h5_desc) < 0) {
    g_h5_desc[0] = '\0';
  }
  return 0;
}

static const char *h5_describe(void) {
  g_h5_desc[0] = '\0';
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, innermost_cb, NULL);
  return g_h5_desc[0] ? g_h5_desc : "HDF5 gave no description";
}

/* HDF5 returns negative hid_t/herr_t/htri_t/ssize_t on failure. Write `SRLM_H5(x = call)`
 * to keep a returned handle. */
#define SRLM_H5(call) SRLM_LIB_CALL("HDF5", hid_t, call, srlm_rc >= 0, h5_describe())

#define STORE_PATH_CAP 1024

struct srlm_store {
  char *path;   /* real path */
  char *tmp;    /* writer: path.tmp.<pid>; NULL for a reader */
  hid_t file;
  hid_t lcpl;   /* writer: link creation that makes missing parent groups */
  hid_t strtype; /* variable-length UTF-8 string */
};

static const char *const k_dtype_names[SRLM_STORE_DTYPE_COUNT] = {"float32", "float64", "int32", "int64"};
static const size_t k_dtype_sizes[SRLM_STORE_DTYPE_COUNT] = {4, 8, 4, 8};

static hid_t dtype_file(srlm_store_dtype d) {
  switch (d) {
    case SRLM_STORE_F32: return H5T_IEEE_F32LE;
    case SRLM_STORE_F64: return H5T_IEEE_F64LE;
    case SRLM_STORE_I32: return H5T_STD_I32LE;
    default: return H5T_STD_I64LE;
  }
}
static hid_t dtype_mem(srlm_store_dtype d) {
  switch (d) {
    case SRLM_STORE_F32: return H5T_NATIVE_FLOAT;
    case SRLM_STORE_F64: return H5T_NATIVE_DOUBLE;
    case SRLM_STORE_I32: return H5T_NATIVE_INT32;
    default: return H5T_NATIVE_INT64;
  }
}

/* ---- handles to release ------------------------------------------------- */

typedef struct h5_objs {
  hid_t obj, attr, space, ftype, mtype, plist;
  void *vlen;        /* buffer of vlen strings read with mtype/space: reclaimed first */
  void *mem;         /* scratch or not-yet-returned output: freed */
  char **strs;       /* not-yet-returned strings: freed with nstrs */
  int64_t nstrs;
} h5_objs;

#define H5_OBJS_INIT {-1, -1, -1, -1, -1, -1, NULL, NULL, NULL, 0}

static void h5_close_id(hid_t id) {
  if (id < 0) return;
  switch (H5Iget_type(id)) {
    case H5I_GROUP: H5Gclose(id); break;
    case H5I_DATASET: H5Dclose(id); break;
    case H5I_ATTR: H5Aclose(id); break;
    case H5I_DATASPACE: H5Sclose(id); break;
    case H5I_DATATYPE: H5Tclose(id); break;
    case H5I_GENPROP_LST: H5Pclose(id); break;
    default: H5Idec_ref(id); break;
  }
}

static void h5_release(h5_objs *o) {
  if (o->vlen) H5Dvlen_reclaim(o->mtype, o->space, H5P_DEFAULT, o->vlen);
  free(o->vlen);
  free(o->mem);
  srlm_store_strings_free(o->strs, o->nstrs);
  hid_t ids[] = {o->attr, o->obj, o->space, o->mtype, o->ftype, o->plist};
  for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) h5_close_id(ids[i]);
  *o = (h5_objs)H5_OBJS_INIT;
}

/* ---- paths and error locations ------------------------------------------ */

/* "/a/b" from "a/b", "/a/b" or "a/b/"; "/" is the root. No empty, "." or ".." parts. */
static srlm_status norm_path(const char *in, char out[STORE_PATH_CAP]) {
  if (!in || !in[0]) return srlm_error(SRLM_ERR_RANGE, NULL, "empty record path");
  size_t n = 0;
  out[n++] = '/';
  const char *c = in[0] == '/' ? in + 1 : in;
  while (*c) {
    const char *slash = strchr(c, '/');
    size_t len = slash ? (size_t)(slash - c) : strlen(c);
    if (len == 0 && slash[1] == '\0') break;  /* one trailing '/' */
    if (len == 0 || (len == 1 && c[0] == '.') || (len == 2 && c[0] == '.' && c[1] == '.'))
      return srlm_error(SRLM_ERR_RANGE, NULL, "bad record path '%s' (empty, '.' or '..' component)", in);
    if (n + len + 2 > STORE_PATH_CAP)
      return srlm_error(SRLM_ERR_RANGE, NULL, "record path '%s' is longer than %d bytes", in, STORE_PATH_CAP - 2);
    if (n > 1) out[n++] = '/';
    memcpy(out + n, c, len);
    n += len;
    c += len;
    if (*c == '/') c++;
  }
  out[n] = '\0';
  return SRLM_OK;
}

/* Prefixes the current error with "<file>: <record path>" (just "<file>" for the root). */
static srlm_status at_record(srlm_status st, const srlm_store *s, const char *p) {
  if (st == SRLM_OK) return st;
  if (!p || !p[0] || strcmp(p, "/") == 0) return srlm_error_context(st, "%s", s->path);
  return srlm_error_context(st, "%s: %s", s->path, p);
}

/* Every entry point: validate the handle, silence HDF5's printing for this thread, and
 * normalize the record path (p may be NULL when the call has none). */
static srlm_status enter(srlm_store *s, const char *path, char p[STORE_PATH_CAP], int write) {
  if (!s) return srlm_error(SRLM_ERR_INTERNAL, "store", "NULL store handle");
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  if (write && !s->tmp) return srlm_error(SRLM_ERR_INTERNAL, s->path, "store is open for reading, cannot write");
  if (p) {
    srlm_status st = norm_path(path, p);
    if (st != SRLM_OK) return at_record(st, s, NULL);
  }
  return SRLM_OK;
}

enum { KIND_NONE = 0, KIND_GROUP, KIND_DATASET, KIND_OTHER };

/* What sits at p, walking the parents so a missing or non-group parent reads as NONE
 * (HDF5's existence checks fail instead of answering in that case). */
static srlm_status kind_of(srlm_store *s, const char *p, int *kind) {
  char buf[STORE_PATH_CAP];
  snprintf(buf, sizeof buf, "%s", p);
  *kind = KIND_GROUP;
  if (strcmp(buf, "/") == 0) return SRLM_OK;
  for (char *c = buf + 1;; c++) {
    if (*c != '/' && *c != '\0') continue;
    char saved = *c;
    *c = '\0';
    htri_t ex;
    SRLM_H5(ex = H5Lexists(s->file, buf, H5P_DEFAULT));
    if (ex > 0) SRLM_H5(ex = H5Oexists_by_name(s->file, buf, H5P_DEFAULT));
    if (ex == 0) {
      *kind = KIND_NONE;
      return SRLM_OK;
    }
    hid_t obj;
    SRLM_H5(obj = H5Oopen(s->file, buf, H5P_DEFAULT));
    H5I_type_t t = H5Iget_type(obj);
    H5Oclose(obj);
    *kind = t == H5I_GROUP ? KIND_GROUP : t == H5I_DATASET ? KIND_DATASET : KIND_OTHER;
    if (saved == '\0') return SRLM_OK;
    if (*kind != KIND_GROUP) {
      *kind = KIND_NONE;
      return SRLM_OK;
    }
    *c = saved;
  }
}

static const char *kind_name(int kind) {
  return kind == KIND_GROUP ? "a group" : kind == KIND_DATASET ? "a dataset" : "not a group or dataset";
}

/* "float32", "uint16", "string", ... for messages about a stored type. */
static const char *type_name(hid_t t, char buf[32]) {
  H5T_class_t cls = H5Tget_class(t);
  size_t size = H5Tget_size(t);
  switch (cls) {
    case H5T_INTEGER:
      snprintf(buf, 32, "%sint%zu", H5Tget_sign(t) == H5T_SGN_NONE ? "u" : "", 8 * size);
      return buf;
    case H5T_FLOAT: snprintf(buf, 32, "float%zu", 8 * size); return buf;
    case H5T_STRING: return "string";
    case H5T_COMPOUND: return "compound";
    case H5T_ENUM: return "enum";
    case H5T_VLEN: return "vlen sequence";
    case H5T_ARRAY: return "array type";
    case H5T_OPAQUE: return "opaque";
    case H5T_BITFIELD: return "bitfield";
    case H5T_REFERENCE: return "reference";
    case H5T_TIME: return "time";
    default: return "unknown type";
  }
}

static void dims_text(int rank, const int64_t *dims, char *buf, size_t cap) {
  size_t n = (size_t)snprintf(buf, cap, "[");
  for (int i = 0; i < rank && n < cap; i++)
    n += (size_t)snprintf(buf + n, cap - n, "%s%lld", i ? ", " : "", (long long)dims[i]);
  if (n < cap) snprintf(buf + n, cap - n, "]");
}

/* Product of dims times elem, or an error when it does not fit in size_t. */
static srlm_status shape_bytes(int rank, const int64_t *dims, size_t elem, size_t *bytes) {
  size_t total = elem;
  for (int i = 0; i < rank; i++) {
    if (dims[i] < 0) return srlm_error(SRLM_ERR_RANGE, NULL, "dimension %d is negative (%lld)", i, (long long)dims[i]);
    if (__builtin_mul_overflow(total, (size_t)dims[i], &total))
      return srlm_error(SRLM_ERR_RANGE, NULL, "shape is too large for memory");
  }
  *bytes = total;
  return SRLM_OK;
}

/* Allocation sized by file content: a damaged file may ask for absurd sizes, which must be
 * an error rather than srlm_xmalloc's fatal check. */
static srlm_status alloc_for_file(size_t bytes, void **out) {
  *out = malloc(bytes ? bytes : 1);
  if (!*out) return srlm_error(SRLM_ERR_NOMEM, NULL, "cannot allocate %zu bytes to read it", bytes);
  return SRLM_OK;
}

/* ---- open, create, commit, close ---------------------------------------- */

static srlm_status file_access_plist(hid_t *fapl) {
  SRLM_H5(*fapl = H5Pcreate(H5P_FILE_ACCESS));
  /* STRONG: closing the file also closes anything still open in it, so a failed close
   * cannot leave a half-closed file behind. Locking is skipped on filesystems without it. */
  SRLM_H5(H5Pset_fclose_degree(*fapl, H5F_CLOSE_STRONG));
  SRLM_H5(H5Pset_file_locking(*fapl, 1, 1));
  /* 1.8 object formats checksum the file's metadata, so most damage is an error rather
   * than garbage; HDF5 1.8+ and every h5py read them. */
  SRLM_H5(H5Pset_libver_bounds(*fapl, H5F_LIBVER_V18, H5F_LIBVER_V18));
  return SRLM_OK;
}

static srlm_store *store_alloc(const char *path) {
  srlm_store *s = srlm_xcalloc(1, sizeof *s);
  s->path = srlm_xstrdup(path);
  s->file = s->lcpl = s->strtype = -1;
  return s;
}

static srlm_status make_strtype(srlm_store *s) {
  SRLM_H5(s->strtype = H5Tcopy(H5T_C_S1));
  SRLM_H5(H5Tset_size(s->strtype, H5T_VARIABLE));
  SRLM_H5(H5Tset_cset(s->strtype, H5T_CSET_UTF8));
  return SRLM_OK;
}

/* Frees the handle; a writer's temp file is removed unless committed (tmp == NULL). */
static void store_free(srlm_store *s) {
  h5_close_id(s->lcpl);
  h5_close_id(s->strtype);
  if (s->file >= 0) H5Fclose(s->file);
  if (s->tmp) unlink(s->tmp);
  free(s->tmp);
  free(s->path);
  free(s);
}

static srlm_status set_attr_str_impl(srlm_store *s, h5_objs *o, const char *obj, const char *name,
                                     const char *value);
static srlm_status set_attr_num_impl(srlm_store *s, h5_objs *o, const char *obj, const char *name,
                                     hid_t ftype, hid_t mtype, const void *value);
static srlm_status get_attr_str_impl(srlm_store *s, h5_objs *o, const char *obj, const char *name, char **value);
static srlm_status get_attr_i64_impl(srlm_store *s, h5_objs *o, const char *obj, const char *name, int64_t *value);

static srlm_status create_impl(srlm_store *s, h5_objs *o, const char *format, int64_t version) {
  SRLM_TRY(file_access_plist(&o->plist));
  s->file = H5Fcreate(s->tmp, H5F_ACC_TRUNC, H5P_DEFAULT, o->plist);
  if (s->file < 0) return srlm_error(SRLM_ERR_IO, NULL, "cannot create temp file %s (%s)", s->tmp, h5_describe());
  SRLM_H5(s->lcpl = H5Pcreate(H5P_LINK_CREATE));
  SRLM_H5(H5Pset_create_intermediate_group(s->lcpl, 1));
  SRLM_TRY(make_strtype(s));
  SRLM_TRY(set_attr_str_impl(s, o, "/", "srlm_format", format));
  h5_release(o);
  return set_attr_num_impl(s, o, "/", "srlm_version", H5T_STD_I64LE, H5T_NATIVE_INT64, &version);
}

srlm_status srlm_store_create(const char *path, const char *format, int64_t version, srlm_store **out) {
  *out = NULL;
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  if (!format || !format[0]) return srlm_error(SRLM_ERR_INTERNAL, path, "store format name is empty");
  srlm_store *s = store_alloc(path);
  size_t cap = strlen(path) + 32;
  s->tmp = srlm_xmalloc(cap);
  snprintf(s->tmp, cap, "%s.tmp.%ld", path, (long)getpid());
  h5_objs o = H5_OBJS_INIT;
  srlm_status st = create_impl(s, &o, format, version);
  h5_release(&o);
  if (st != SRLM_OK) {
    store_free(s);
    return srlm_error_context(st, "%s", path);
  }
  *out = s;
  return SRLM_OK;
}

static srlm_status open_impl(srlm_store *s, h5_objs *o, const char *format, int64_t version) {
  struct stat st;
  if (stat(s->path, &st) != 0) return srlm_error(SRLM_ERR_IO, NULL, "cannot open: %s", strerror(errno));
  if (!S_ISREG(st.st_mode)) return srlm_error(SRLM_ERR_IO, NULL, "not a regular file");
  SRLM_TRY(file_access_plist(&o->plist));
  s->file = H5Fopen(s->path, H5F_ACC_RDONLY, o->plist);
  if (s->file < 0)
    return srlm_error(SRLM_ERR_FORMAT, NULL, "not a readable HDF5 file (%s)", h5_describe());
  SRLM_TRY(make_strtype(s));
  h5_release(o);

  const char *const keys[2] = {"srlm_format", "srlm_version"};
  for (int i = 0; i < 2; i++) {
    htri_t ex;
    SRLM_H5(ex = H5Aexists_by_name(s->file, "/", keys[i], H5P_DEFAULT));
    if (!ex) return srlm_error(SRLM_ERR_FORMAT, NULL, "%s attribute is missing (not an srlm %s file?)", keys[i], format);
  }
  char *got = NULL;
  SRLM_TRY(get_attr_str_impl(s, o, "/", "srlm_format", &got));
  h5_release(o);
  int same = strcmp(got, format) == 0;
  if (!same) {
    srlm_error(SRLM_ERR_FORMAT, NULL, "srlm_format is \"%s\", expected \"%s\"", got, format);
    free(got);
    return SRLM_ERR_FORMAT;
  }
  free(got);
  int64_t v = 0;
  SRLM_TRY(get_attr_i64_impl(s, o, "/", "srlm_version", &v));
  if (v != version)
    return srlm_error(SRLM_ERR_FORMAT, NULL, "srlm_version is %lld, this srlm reads version %lld", (long long)v,
                      (long long)version);
  return SRLM_OK;
}

srlm_status srlm_store_open(const char *path, const char *format, int64_t version, srlm_store **out) {
  *out = NULL;
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  srlm_store *s = store_alloc(path);
  h5_objs o = H5_OBJS_INIT;
  srlm_status st = open_impl(s, &o, format, version);
  h5_release(&o);
  if (st != SRLM_OK) {
    store_free(s);
    return srlm_error_context(st, "%s", path);
  }
  *out = s;
  return SRLM_OK;
}

srlm_status srlm_store_commit(srlm_store *s) {
  srlm_status st = enter(s, NULL, NULL, 1);
  if (st != SRLM_OK) {
    if (s) store_free(s);
    return st;
  }
  h5_close_id(s->lcpl);
  h5_close_id(s->strtype);
  s->lcpl = s->strtype = -1;
  herr_t rc = H5Fflush(s->file, H5F_SCOPE_GLOBAL);
  if (rc >= 0) {
    rc = H5Fclose(s->file);
    s->file = -1;
  }
  if (rc < 0) {
    srlm_error(SRLM_ERR_IO, s->path, "cannot flush and close %s (%s)", s->tmp, h5_describe());
  } else {
    /* H5Fclose does not fsync; without it a crash after rename could leave an empty file. */
    int fd = open(s->tmp, O_RDONLY);
    if (fd < 0 || fsync(fd) != 0) {
      srlm_error(SRLM_ERR_IO, s->path, "cannot sync %s: %s", s->tmp, strerror(errno));
    } else if (rename(s->tmp, s->path) != 0) {
      srlm_error(SRLM_ERR_IO, s->path, "cannot rename %s into place: %s", s->tmp, strerror(errno));
    } else {
      free(s->tmp);
      s->tmp = NULL;
    }
    if (fd >= 0) close(fd);
  }
  st = s->tmp ? SRLM_ERR_IO : SRLM_OK;
  store_free(s);
  return st;
}

void srlm_store_close(srlm_store *s) {
  if (s) store_free(s);
}

const char *srlm_store_path(const srlm_store *s) { return s->path; }

int srlm_store_has(srlm_store *s, const char *path) {
  char p[STORE_PATH_CAP];
  int kind = KIND_NONE;
  if (enter(s, path, p, 0) != SRLM_OK || kind_of(s, p, &kind) != SRLM_OK) return 0;
  return kind != KIND_NONE;
}

/* ---- groups ------------------------------------------------------------- */

static srlm_status list_impl(srlm_store *s, h5_objs *o, const char *p, int64_t *n, char ***names) {
  int kind;
  SRLM_TRY(kind_of(s, p, &kind));
  if (kind == KIND_NONE) return srlm_error(SRLM_ERR_FORMAT, NULL, "no such group");
  if (kind != KIND_GROUP) return srlm_error(SRLM_ERR_FORMAT, NULL, "is %s, not a group", kind_name(kind));
  SRLM_H5(o->obj = H5Gopen2(s->file, p, H5P_DEFAULT));
  H5G_info_t info;
  SRLM_H5(H5Gget_info(o->obj, &info));
  o->strs = srlm_xcalloc((size_t)info.nlinks, sizeof(char *));
  for (hsize_t i = 0; i < info.nlinks; i++) {
    ssize_t len;
    SRLM_H5(len = H5Lget_name_by_idx(o->obj, ".", H5_INDEX_NAME, H5_ITER_INC, i, NULL, 0, H5P_DEFAULT));
    o->strs[i] = srlm_xmalloc((size_t)len + 1);
    o->nstrs = (int64_t)i + 1;
    SRLM_H5(H5Lget_name_by_idx(o->obj, ".", H5_INDEX_NAME, H5_ITER_INC, i, o->strs[i], (size_t)len + 1,
                               H5P_DEFAULT));
  }
  *n = (int64_t)info.nlinks;
  *names = o->strs;
  o->strs = NULL;
  o->nstrs = 0;
  return SRLM_OK;
}

srlm_status srlm_store_list(srlm_store *s, const char *group, int64_t *n, char ***names) {
  char p[STORE_PATH_CAP];
  *n = 0;
  *names = NULL;
  SRLM_TRY(enter(s, group, p, 0));
  h5_objs o = H5_OBJS_INIT;
  srlm_status st = list_impl(s, &o, p, n, names);
  h5_release(&o);
  return at_record(st, s, p);
}

static srlm_status group_impl(srlm_store *s, h5_objs *o, const char *p) {
  int kind;
  SRLM_TRY(kind_of(s, p, &kind));
  if (kind == KIND_GROUP) return SRLM_OK;
  if (kind != KIND_NONE) return srlm_error(SRLM_ERR_IO, NULL, "cannot create a group: it exists and is %s", kind_name(kind));
  SRLM_H5(o->obj = H5Gcreate2(s->file, p, s->lcpl, H5P_DEFAULT, H5P_DEFAULT));
  return SRLM_OK;
}

srlm_status srlm_store_group(srlm_store *s, const char *path) {
  char p[STORE_PATH_CAP];
  SRLM_TRY(enter(s, path, p, 1));
  h5_objs o = H5_OBJS_INIT;
  srlm_status st = group_impl(s, &o, p);
  h5_release(&o);
  return at_record(st, s, p);
}

/* ---- arrays ------------------------------------------------------------- */

/* A record can be written at p when nothing is there and every existing parent is a group. */
static srlm_status new_record_path(srlm_store *s, const char *p) {
  int kind;
  if (strcmp(p, "/") == 0) return srlm_error(SRLM_ERR_RANGE, NULL, "cannot write a record at the root path");
  SRLM_TRY(kind_of(s, p, &kind));
  if (kind != KIND_NONE) return srlm_error(SRLM_ERR_IO, NULL, "cannot write: the file already has %s here", kind_name(kind));
  char parent[STORE_PATH_CAP];
  snprintf(parent, sizeof parent, "%s", p);
  for (char *c = parent + 1; *c; c++) {
    if (*c != '/') continue;
    *c = '\0';
    SRLM_TRY(kind_of(s, parent, &kind));
    if (kind == KIND_NONE) return SRLM_OK;
    if (kind != KIND_GROUP) return srlm_error(SRLM_ERR_IO, NULL, "cannot write: %s is %s, not a group", parent, kind_name(kind));
    *c = '/';
  }
  return SRLM_OK;
}

static srlm_status write_array_impl(srlm_store *s, h5_objs *o, const char *p, srlm_store_dtype dtype, int rank,
                                    const int64_t *dims, const void *data) {
  if ((int)dtype < 0 || dtype >= SRLM_STORE_DTYPE_COUNT) return srlm_error(SRLM_ERR_RANGE, NULL, "bad dtype %d", (int)dtype);
  if (rank < 1 || rank > SRLM_STORE_MAX_RANK)
    return srlm_error(SRLM_ERR_RANGE, NULL, "rank %d is outside 1..%d", rank, SRLM_STORE_MAX_RANK);
  size_t bytes = 0;
  SRLM_TRY(shape_bytes(rank, dims, k_dtype_sizes[dtype], &bytes));
  if (bytes > 0 && !data) return srlm_error(SRLM_ERR_INTERNAL, NULL, "NULL data for a non-empty array");
  SRLM_TRY(new_record_path(s, p));
  hsize_t hd[SRLM_STORE_MAX_RANK];
  for (int i = 0; i < rank; i++) hd[i] = (hsize_t)dims[i];
  SRLM_H5(o->space = H5Screate_simple(rank, hd, NULL));
  SRLM_H5(o->obj = H5Dcreate2(s->file, p, dtype_file(dtype), o->space, s->lcpl, H5P_DEFAULT, H5P_DEFAULT));
  if (bytes > 0) SRLM_H5(H5Dwrite(o->obj, dtype_mem(dtype), H5S_ALL, H5S_ALL, H5P_DEFAULT, data));
  return SRLM_OK;
}

srlm_status srlm_store_write_array(srlm_store *s, const char *path, srlm_store_dtype dtype, int rank,
                                   const int64_t *dims, const void *data) {
  char p[STORE_PATH_CAP];
  SRLM_TRY(enter(s, path, p, 1));
  h5_objs o = H5_OBJS_INIT;
  srlm_status st = write_array_impl(s, &o, p, dtype, rank, dims, data);
  h5_release(&o);
  return at_record(st, s, p);
}

/* Opens the dataset at p into o->obj, its type into o->ftype and space into o->space. */
static srlm_status open_dataset(srlm_store *s, h5_objs *o, const char *p) {
  int kind;
  SRLM_TRY(kind_of(s, p, &kind));
  if (kind == KIND_NONE) return srlm_error(SRLM_ERR_FORMAT, NULL, "no such dataset");
  if (kind != KIND_DATASET) return srlm_error(SRLM_ERR_FORMAT, NULL, "is %s, not a dataset", kind_name(kind));
  SRLM_H5(o->obj = H5Dopen2(s->file, p, H5P_DEFAULT));
  SRLM_H5(o->ftype = H5Dget_type(o->obj));
  SRLM_H5(o->space = H5Dget_space(o->obj));
  return SRLM_OK;
}

/* Checks the opened dataset's rank (and shape when want_dims) and returns its dims. */
static srlm_status check_shape(h5_objs *o, int rank, const int64_t *want_dims, int64_t *dims) {
  int nd;
  SRLM_H5(nd = H5Sget_simple_extent_ndims(o->space));
  if (nd > SRLM_STORE_MAX_RANK || nd != rank) return srlm_error(SRLM_ERR_FORMAT, NULL, "has rank %d, expected rank %d", nd, rank);
  hsize_t hd[SRLM_STORE_MAX_RANK];
  SRLM_H5(H5Sget_simple_extent_dims(o->space, hd, NULL));
  for (int i = 0; i < nd; i++) {
    if (hd[i] > (hsize_t)INT64_MAX) return srlm_error(SRLM_ERR_FORMAT, NULL, "dimension %d is too large", i);
    dims[i] = (int64_t)hd[i];
  }
  if (want_dims) {
    for (int i = 0; i < nd; i++) {
      if (dims[i] != want_dims[i]) {
        char got_t[128], want_t[128];
        dims_text(nd, dims, got_t, sizeof got_t);
        dims_text(nd, want_dims, want_t, sizeof want_t);
        return srlm_error(SRLM_ERR_FORMAT, NULL, "has shape %s, expected %s", got_t, want_t);
      }
    }
  }
  return SRLM_OK;
}

static srlm_status check_dtype(h5_objs *o, srlm_store_dtype dtype) {
  if ((int)dtype < 0 || dtype >= SRLM_STORE_DTYPE_COUNT) return srlm_error(SRLM_ERR_RANGE, NULL, "bad dtype %d", (int)dtype);
  H5T_class_t cls = H5Tget_class(o->ftype);
  size_t size = H5Tget_size(o->ftype);
  int ok;
  if (dtype == SRLM_STORE_F32 || dtype == SRLM_STORE_F64)
    ok = cls == H5T_FLOAT && size == k_dtype_sizes[dtype];
  else
    ok = cls == H5T_INTEGER && size == k_dtype_sizes[dtype] && H5Tget_sign(o->ftype) == H5T_SGN_2;
  if (!ok) {
    char buf[32];
    return srlm_error(SRLM_ERR_FORMAT, NULL, "is stored as %s, expected %s", type_name(o->ftype, buf), k_dtype_names[dtype]);
  }
  return SRLM_OK;
}

/* Contiguous data that the file says is smaller than its shape means a damaged file. */
static srlm_status check_storage(h5_objs *o, size_t bytes) {
  hid_t dcpl;
  SRLM_H5(dcpl = H5Dget_create_plist(o->obj));
  H5D_layout_t layout = H5Pget_layout(dcpl);
  H5Pclose(dcpl);
  hsize_t stored = H5Dget_storage_size(o->obj);
  if (layout == H5D_CONTIGUOUS && stored != 0 && stored != (hsize_t)bytes)
    return srlm_error(SRLM_ERR_FORMAT, NULL, "damaged: stores %llu bytes, its shape needs %zu", (unsigned long long)stored,
                      bytes);
  return SRLM_OK;
}

static srlm_status read_array_impl(srlm_store *s, h5_objs *o, const char *p, srlm_store_dtype dtype, int rank,
                                   const int64_t *want_dims, int64_t *dims, void **data) {
  if (rank < 1 || rank > SRLM_STORE_MAX_RANK)
    return srlm_error(SRLM_ERR_RANGE, NULL, "rank %d is outside 1..%d", rank, SRLM_STORE_MAX_RANK);
  SRLM_TRY(open_dataset(s, o, p));
  SRLM_TRY(check_dtype(o, dtype));
  SRLM_TRY(check_shape(o, rank, want_dims, dims));
  size_t bytes = 0;
  SRLM_TRY(shape_bytes(rank, dims, k_dtype_sizes[dtype], &bytes));
  SRLM_TRY(check_storage(o, bytes));
  void *buf = *data;
  if (!buf) {
    SRLM_TRY(alloc_for_file(bytes, &o->mem));
    buf = o->mem;
  }
  if (bytes > 0) SRLM_H5(H5Dread(o->obj, dtype_mem(dtype), H5S_ALL, H5S_ALL, H5P_DEFAULT, buf));
  *data = buf;
  o->mem = NULL;
  return SRLM_OK;
}

srlm_status srlm_store_read_array(srlm_store *s, const char *path, srlm_store_dtype dtype, int rank, int64_t *dims,
                                  void **data) {
  char p[STORE_PATH_CAP];
  *data = NULL;
  SRLM_TRY(enter(s, path, p, 0));
  h5_objs o = H5_OBJS_INIT;
  srlm_status st = read_array_impl(s, &o, p, dtype, rank, NULL, dims, data);
  h5_release(&o);
  return at_record(st, s, p);
}

srlm_status srlm_store_read_array_into(srlm_store *s, const char *path, srlm_store_dtype dtype, int rank,
                                       const int64_t *dims, void *data) {
  char p[STORE_PATH_CAP];
  SRLM_TRY(enter(s, path, p, 0));
  if (!data) return srlm_error(SRLM_ERR_INTERNAL, s->path, "%s: NULL destination", p);
  int64_t got[SRLM_STORE_MAX_RANK];
  h5_objs o = H5_OBJS_INIT;
  srlm_status st = read_array_impl(s, &o, p, dtype, rank, dims, got, &data);
  h5_release(&o);
  return at_record(st, s, p);
}

/* ---- token sequences ---------------------------------------------------- */

/* Checks the offsets and makes the group; the two datasets are written by the caller. */
static srlm_status seqs_group_impl(srlm_store *s, h5_objs *o, const char *p, int64_t n, const int64_t *offsets) {
  if (n < 0) return srlm_error(SRLM_ERR_RANGE, NULL, "negative sequence count %lld", (long long)n);
  if (!offsets) return srlm_error(SRLM_ERR_INTERNAL, NULL, "NULL offsets");
  if (offsets[0] != 0) return srlm_error(SRLM_ERR_RANGE, NULL, "offsets[0] is %lld, expected 0", (long long)offsets[0]);
  for (int64_t i = 0; i < n; i++)
    if (offsets[i + 1] < offsets[i])
      return srlm_error(SRLM_ERR_RANGE, NULL, "offsets[%lld] = %lld is below offsets[%lld] = %lld", (long long)(i + 1),
                        (long long)offsets[i + 1], (long long)i, (long long)offsets[i]);
  SRLM_TRY(new_record_path(s, p));
  SRLM_H5(o->obj = H5Gcreate2(s->file, p, s->lcpl, H5P_DEFAULT, H5P_DEFAULT));
  return set_attr_str_impl(s, o, p, "srlm_kind", "seqs");
}

srlm_status srlm_store_write_seqs(srlm_store *s, const char *path, int64_t n, const int64_t *offsets,
                                  const int32_t *ids) {
  char p[STORE_PATH_CAP];
  SRLM_TRY(enter(s, path, p, 1));
  h5_objs o = H5_OBJS_INIT;
  srlm_status st = seqs_group_impl(s, &o, p, n, offsets);
  h5_release(&o);
  SRLM_TRY(at_record(st, s, p));
  char sub[STORE_PATH_CAP + 16];
  int64_t d_off = n + 1, d_ids = offsets[n];
  snprintf(sub, sizeof sub, "%s/offsets", p);
  SRLM_TRY(srlm_store_write_array(s, sub, SRLM_STORE_I64, 1, &d_off, offsets));
  snprintf(sub, sizeof sub, "%s/ids", p);
  return srlm_store_write_array(s, sub, SRLM_STORE_I32, 1, &d_ids, ids);
}

static srlm_status read_seqs_impl(srlm_store *s, const char *p, srlm_seqs *q) {
  int kind;
  SRLM_TRY(kind_of(s, p, &kind));
  if (kind == KIND_NONE) return at_record(srlm_error(SRLM_ERR_FORMAT, NULL, "no such sequences record"), s, p);
  if (kind != KIND_GROUP)
    return at_record(srlm_error(SRLM_ERR_FORMAT, NULL, "is %s, not a sequences group", kind_name(kind)), s, p);
  char sub_off[STORE_PATH_CAP + 16], sub_ids[STORE_PATH_CAP + 16];
  snprintf(sub_off, sizeof sub_off, "%s/offsets", p);
  snprintf(sub_ids, sizeof sub_ids, "%s/ids", p);
  int64_t n_off, n_ids;
  SRLM_TRY(srlm_store_read_array(s, sub_off, SRLM_STORE_I64, 1, &n_off, (void **)&q->offsets));
  SRLM_TRY(srlm_store_read_array(s, sub_ids, SRLM_STORE_I32, 1, &n_ids, (void **)&q->ids));
  if (n_off < 1) return at_record(srlm_error(SRLM_ERR_FORMAT, NULL, "is empty, needs n + 1 >= 1 entries"), s, sub_off);
  if (q->offsets[0] != 0)
    return at_record(srlm_error(SRLM_ERR_FORMAT, NULL, "offsets[0] is %lld, expected 0", (long long)q->offsets[0]), s,
                     sub_off);
  for (int64_t i = 1; i < n_off; i++)
    if (q->offsets[i] < q->offsets[i - 1])
      return at_record(srlm_error(SRLM_ERR_FORMAT, NULL, "offsets[%lld] = %lld is below offsets[%lld] = %lld",
                                  (long long)i, (long long)q->offsets[i], (long long)(i - 1),
                                  (long long)q->offsets[i - 1]),
                       s, sub_off);
  if (q->offsets[n_off - 1] != n_ids)
    return at_record(srlm_error(SRLM_ERR_FORMAT, NULL, "last offset is %lld but %s holds %lld ids",
                                (long long)q->offsets[n_off - 1], sub_ids, (long long)n_ids),
                     s, sub_off);
  q->n = n_off - 1;
  return SRLM_OK;
}

srlm_status srlm_store_read_seqs(srlm_store *s, const char *path, srlm_seqs *out) {
  char p[STORE_PATH_CAP];
  *out = (srlm_seqs){0, NULL, NULL};
  SRLM_TRY(enter(s, path, p, 0));
  srlm_status st = read_seqs_impl(s, p, out);
  if (st != SRLM_OK) srlm_seqs_free(out);
  return st;
}

void srlm_seqs_free(srlm_seqs *q) {
  if (!q) return;
  free(q->offsets);
  free(q->ids);
  *q = (srlm_seqs){0, NULL, NULL};
}

/* ---- strings ------------------------------------------------------------ */

static srlm_status write_strings_impl(srlm_store *s, h5_objs *o, const char *p, int64_t n, const char *const *strs) {
  if (n < 0) return srlm_error(SRLM_ERR_RANGE, NULL, "negative string count %lld", (long long)n);
  for (int64_t i = 0; i < n; i++)
    if (!strs[i]) return srlm_error(SRLM_ERR_INTERNAL, NULL, "string %lld is NULL", (long long)i);
  SRLM_TRY(new_record_path(s, p));
  hsize_t d = (hsize_t)n;
  SRLM_H5(o->space = H5Screate_simple(1, &d, NULL));
  SRLM_H5(o->obj = H5Dcreate2(s->file, p, s->strtype, o->space, s->lcpl, H5P_DEFAULT, H5P_DEFAULT));
  if (n > 0) SRLM_H5(H5Dwrite(o->obj, s->strtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, strs));
  return SRLM_OK;
}

srlm_status srlm_store_write_strings(srlm_store *s, const char *path, int64_t n, const char *const *strs) {
  char p[STORE_PATH_CAP];
  SRLM_TRY(enter(s, path, p, 1));
  h5_objs o = H5_OBJS_INIT;
  srlm_status st = write_strings_impl(s, &o, p, n, strs);
  h5_release(&o);
  return at_record(st, s, p);
}

/* A fixed-length string field: up to the first NUL, trailing blanks dropped when space-padded. */
static char *fixed_string(const char *field, size_t size, H5T_str_t pad) {
  size_t len = strnlen(field, size);
  if (pad == H5T_STR_SPACEPAD)
    while (len > 0 && field[len - 1] == ' ') len--;
  char *out = srlm_xmalloc(len + 1);
  memcpy(out, field, len);
  out[len] = '\0';
  return out;
}

/* Reads n strings of the opened string type o->ftype (dataset or attribute) into o->strs. */
static srlm_status read_string_values(h5_objs *o, hid_t src, int is_attr, int64_t n) {
  htri_t var;
  SRLM_H5(var = H5Tis_variable_str(o->ftype));
  o->strs = srlm_xcalloc((size_t)n, sizeof(char *));
  if (var) {
    SRLM_H5(o->mtype = H5Tcopy(H5T_C_S1));
    SRLM_H5(H5Tset_size(o->mtype, H5T_VARIABLE));
    SRLM_H5(H5Tset_cset(o->mtype, H5Tget_cset(o->ftype)));
    o->vlen = srlm_xcalloc((size_t)n, sizeof(char *));
    if (is_attr)
      SRLM_H5(H5Aread(src, o->mtype, o->vlen));
    else
      SRLM_H5(H5Dread(src, o->mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, o->vlen));
    char **v = o->vlen;
    for (int64_t i = 0; i < n; i++) {
      o->strs[i] = srlm_xstrdup(v[i] ? v[i] : "");
      o->nstrs = i + 1;
    }
    return SRLM_OK;
  }
  size_t size = H5Tget_size(o->ftype), bytes;
  if (size == 0) return srlm_error(SRLM_ERR_FORMAT, NULL, "string type has size 0");
  if (__builtin_mul_overflow(size, (size_t)n, &bytes)) return srlm_error(SRLM_ERR_FORMAT, NULL, "too large for memory");
  SRLM_H5(o->mtype = H5Tcopy(o->ftype));
  SRLM_TRY(alloc_for_file(bytes, &o->mem));
  if (is_attr)
    SRLM_H5(H5Aread(src, o->mtype, o->mem));
  else
    SRLM_H5(H5Dread(src, o->mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, o->mem));
  H5T_str_t pad = H5Tget_strpad(o->ftype);
  for (int64_t i = 0; i < n; i++) {
    o->strs[i] = fixed_string((const char *)o->mem + (size_t)i * size, size, pad);
    o->nstrs = i + 1;
  }
  return SRLM_OK;
}

static srlm_status read_strings_impl(srlm_store *s, h5_objs *o, const char *p, int64_t *n, char ***strs) {
  SRLM_TRY(open_dataset(s, o, p));
  if (H5Tget_class(o->ftype) != H5T_STRING) {
    char buf[32];
    return srlm_error(SRLM_ERR_FORMAT, NULL, "is stored as %s, expected strings", type_name(o->ftype, buf));
  }
  int64_t dims[1];
  SRLM_TRY(check_shape(o, 1, NULL, dims));
  SRLM_TRY(read_string_values(o, o->obj, 0, dims[0]));
  *n = dims[0];
  *strs = o->strs;
  o->strs = NULL;
  o->nstrs = 0;
  return SRLM_OK;
}

srlm_status srlm_store_read_strings(srlm_store *s, const char *path, int64_t *n, char ***strs) {
  char p[STORE_PATH_CAP];
  *n = 0;
  *strs = NULL;
  SRLM_TRY(enter(s, path, p, 0));
  h5_objs o = H5_OBJS_INIT;
  srlm_status st = read_strings_impl(s, &o, p, n, strs);
  h5_release(&o);
  return at_record(st, s, p);
}

void srlm_store_strings_free(char **strs, int64_t n) {
  if (!strs) return;
  for (int64_t i = 0; i < n; i++) free(strs[i]);
  free(strs);
}

/* ---- attributes --------------------------------------------------------- */

static srlm_status attr_target(srlm_store *s, const char *obj) {
  int kind;
  SRLM_TRY(kind_of(s, obj, &kind));
  if (kind == KIND_NONE) return srlm_error(SRLM_ERR_FORMAT, NULL, "no such group or dataset");
  return SRLM_OK;
}

static srlm_status write_attr(srlm_store *s, h5_objs *o, const char *obj, const char *name, hid_t ftype, hid_t mtype,
                              const void *buf) {
  SRLM_TRY(attr_target(s, obj));
  if (!name || !name[0]) return srlm_error(SRLM_ERR_RANGE, NULL, "empty attribute name");
  htri_t ex;
  SRLM_H5(ex = H5Aexists_by_name(s->file, obj, name, H5P_DEFAULT));
  if (ex) SRLM_H5(H5Adelete_by_name(s->file, obj, name, H5P_DEFAULT));
  SRLM_H5(o->space = H5Screate(H5S_SCALAR));
  SRLM_H5(o->attr = H5Acreate_by_name(s->file, obj, name, ftype, o->space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
  SRLM_H5(H5Awrite(o->attr, mtype, buf));
  return SRLM_OK;
}

static srlm_status set_attr_str_impl(srlm_store *s, h5_objs *o, const char *obj, const char *name, const char *value) {
  if (!value) return srlm_error(SRLM_ERR_INTERNAL, NULL, "attribute '%s': NULL value", name);
  return write_attr(s, o, obj, name, s->strtype, s->strtype, &value);
}

static srlm_status set_attr_num_impl(srlm_store *s, h5_objs *o, const char *obj, const char *name, hid_t ftype,
                                     hid_t mtype, const void *value) {
  return write_attr(s, o, obj, name, ftype, mtype, value);
}

/* Opens attribute name of obj into o->attr/o->ftype/o->space; it must hold one value of class cls. */
static srlm_status open_attr(srlm_store *s, h5_objs *o, const char *obj, const char *name, H5T_class_t cls,
                             const char *want) {
  SRLM_TRY(attr_target(s, obj));
  htri_t ex;
  SRLM_H5(ex = H5Aexists_by_name(s->file, obj, name, H5P_DEFAULT));
  if (!ex) return srlm_error(SRLM_ERR_FORMAT, NULL, "attribute '%s' is missing", name);
  SRLM_H5(o->attr = H5Aopen_by_name(s->file, obj, name, H5P_DEFAULT, H5P_DEFAULT));
  SRLM_H5(o->ftype = H5Aget_type(o->attr));
  SRLM_H5(o->space = H5Aget_space(o->attr));
  if (H5Tget_class(o->ftype) != cls) {
    char buf[32];
    return srlm_error(SRLM_ERR_FORMAT, NULL, "attribute '%s' is %s, expected %s", name, type_name(o->ftype, buf), want);
  }
  hssize_t npoints;
  SRLM_H5(npoints = H5Sget_simple_extent_npoints(o->space));
  if (npoints != 1)
    return srlm_error(SRLM_ERR_FORMAT, NULL, "attribute '%s' holds %lld values, expected one", name, (long long)npoints);
  return SRLM_OK;
}

static srlm_status get_attr_str_impl(srlm_store *s, h5_objs *o, const char *obj, const char *name, char **value) {
  SRLM_TRY(open_attr(s, o, obj, name, H5T_STRING, "a string"));
  SRLM_TRY(read_string_values(o, o->attr, 1, 1));
  *value = o->strs[0];
  o->strs[0] = NULL;
  return SRLM_OK;
}

static srlm_status get_attr_i64_impl(srlm_store *s, h5_objs *o, const char *obj, const char *name, int64_t *value) {
  SRLM_TRY(open_attr(s, o, obj, name, H5T_INTEGER, "an integer"));
  if (H5Tget_sign(o->ftype) == H5T_SGN_NONE && H5Tget_size(o->ftype) >= 8) {
    uint64_t u;
    SRLM_H5(H5Aread(o->attr, H5T_NATIVE_UINT64, &u));
    if (u > (uint64_t)INT64_MAX)
      return srlm_error(SRLM_ERR_RANGE, NULL, "attribute '%s' = %llu does not fit in int64", name, (unsigned long long)u);
    *value = (int64_t)u;
    return SRLM_OK;
  }
  SRLM_H5(H5Aread(o->attr, H5T_NATIVE_INT64, value));
  return SRLM_OK;
}

static srlm_status get_attr_f64_impl(srlm_store *s, h5_objs *o, const char *obj, const char *name, double *value) {
  SRLM_TRY(open_attr(s, o, obj, name, H5T_FLOAT, "a float"));
  SRLM_H5(H5Aread(o->attr, H5T_NATIVE_DOUBLE, value));
  return SRLM_OK;
}

/* The six public attribute calls differ only in the impl they run. */
#define STORE_ATTR_CALL(write, impl_call)          \
  do {                                             \
    char p[STORE_PATH_CAP];                        \
    SRLM_TRY(enter(s, obj, p, (write)));           \
    h5_objs o = H5_OBJS_INIT;                      \
    srlm_status st = (impl_call);                  \
    h5_release(&o);                                \
    return at_record(st, s, p);                    \
  } while (0)

srlm_status srlm_store_set_attr_str(srlm_store *s, const char *obj, const char *name, const char *value) {
  STORE_ATTR_CALL(1, set_attr_str_impl(s, &o, p, name, value));
}
srlm_status srlm_store_set_attr_i64(srlm_store *s, const char *obj, const char *name, int64_t value) {
  STORE_ATTR_CALL(1, set_attr_num_impl(s, &o, p, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &value));
}
srlm_status srlm_store_set_attr_f64(srlm_store *s, const char *obj, const char *name, double value) {
  STORE_ATTR_CALL(1, set_attr_num_impl(s, &o, p, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &value));
}
srlm_status srlm_store_get_attr_str(srlm_store *s, const char *obj, const char *name, char **value) {
  *value = NULL;
  STORE_ATTR_CALL(0, get_attr_str_impl(s, &o, p, name, value));
}
srlm_status srlm_store_get_attr_i64(srlm_store *s, const char *obj, const char *name, int64_t *value) {
  STORE_ATTR_CALL(0, get_attr_i64_impl(s, &o, p, name, value));
}
srlm_status srlm_store_get_attr_f64(srlm_store *s, const char *obj, const char *name, double *value) {
  STORE_ATTR_CALL(0, get_attr_f64_impl(s, &o, p, name, value));
}

void srlm_store_library_version(char *out, size_t n) {
  unsigned maj = 0, min = 0, rel = 0;
  if (H5get_libversion(&maj, &min, &rel) < 0) {
    snprintf(out, n, "unknown");
    return;
  }
  snprintf(out, n, "%u.%u.%u", maj, min, rel);
}
