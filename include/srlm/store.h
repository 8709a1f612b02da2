/* srlm store: the project's HDF5 records (rollouts, datasets, optimizer state).
 *
 * A store file holds named records under groups ("/iter_0/prompts"); paths may be
 * given with or without the leading '/', and writes create missing parent groups.
 * Record kinds and how they sit in the file (plain HDF5, readable by h5dump/h5py):
 *   array    one dataset, rank 1..SRLM_STORE_MAX_RANK, float32/float64/int32/int64,
 *            contiguous, C order, native little-endian.
 *   seqs     variable-length token sequences as a group with two datasets:
 *              <path>/ids      int32 (offsets[n])  all tokens back to back
 *              <path>/offsets  int64 (n + 1)       sequence i is ids[offsets[i] .. offsets[i+1])
 *            and the group attribute srlm_kind = "seqs". Chosen over HDF5 vlen for speed
 *            (two contiguous reads) and because numpy slices it directly.
 *   strings  a 1-D dataset of variable-length UTF-8 strings (stored as given: callers
 *            pass valid UTF-8 if the file is to be read by h5py as str).
 *   attrs    scalar string / int64 / float64 attributes on any group or dataset ("/" = root).
 *
 * Every file carries root attributes srlm_format (string naming the record kind, e.g.
 * "rollouts") and srlm_version (int64). A reader states the format and version it
 * expects; a missing attribute, another format or another version is an error naming
 * the file and the attribute.
 *
 * Writes go to "<path>.tmp.<pid>" in the same folder; srlm_store_commit flushes, closes,
 * fsyncs and renames it into place, so no reader ever sees a half-written file under
 * the real name. A writer closed without commit (or whose commit fails) removes its
 * temp file.
 *
 * Reads check the stored dtype and rank exactly (no silent float64 -> float32), and
 * validate seqs offsets. A truncated file is an error at open. Files are written with
 * HDF5 1.8 object formats, whose metadata carries checksums, so most damage is an error
 * too; but HDF5 1.10 itself is not hardened against crafted or badly corrupted files
 * (a garbage window in a group's link heap crashed it in testing): store files are
 * trusted input, unlike safetensors/JSON from users.
 * Returned buffers are srlm_xmalloc'd: free them with free() (or the *_free helper).
 *
 * Threads: one store handle is used by one thread, the one that opened it. HDF5 keeps
 * one global state (the Debian build serializes calls with a global lock; other builds
 * are not thread-safe at all), so do not expect parallel speed-up from several stores.
 * Opening a store turns off HDF5's automatic error printing for the calling thread;
 * HDF5 error descriptions are captured into the srlm error message instead.
 */
#ifndef SRLM_STORE_H
#define SRLM_STORE_H

#include <stdint.h>

#include "srlm/core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct srlm_store srlm_store;

typedef enum srlm_store_dtype {
  SRLM_STORE_F32 = 0,
  SRLM_STORE_F64,
  SRLM_STORE_I32,
  SRLM_STORE_I64,
  SRLM_STORE_DTYPE_COUNT
} srlm_store_dtype;

#define SRLM_STORE_MAX_RANK 4

/* Token sequences as read back (see "seqs" above). */
typedef struct srlm_seqs {
  int64_t n;        /* number of sequences */
  int64_t *offsets; /* (n + 1) offsets[0] = 0, non-decreasing */
  int32_t *ids;     /* (offsets[n]) tokens of all sequences, back to back */
} srlm_seqs;

/* ---- open and close ----------------------------------------------------- */

/* Starts writing a new file at path (through path.tmp.<pid>) with the root attributes
 * srlm_format = format and srlm_version = version. */
/* The HDF5 library this process runs with, e.g. "1.10.8" (for `srlm version`). */
void srlm_store_library_version(char *out, size_t n);

srlm_status srlm_store_create(const char *path, const char *format, int64_t version, srlm_store **out);

/* Opens path for reading; checks srlm_format == format and srlm_version == version. */
srlm_status srlm_store_open(const char *path, const char *format, int64_t version, srlm_store **out);

/* Writer: flush, close, fsync and rename the temp file to the real path. Always frees s;
 * on failure the temp file is removed and the real path is left as it was. */
srlm_status srlm_store_commit(srlm_store *s);

/* Frees s. For a reader, closes the file; for an uncommitted writer, discards the temp
 * file (the real path is left as it was). NULL is a no-op. */
void srlm_store_close(srlm_store *s);

/* The real path the store was created or opened with. */
const char *srlm_store_path(const srlm_store *s);

/* 1 when a group or dataset exists at path, else 0 (also for malformed paths). */
int srlm_store_has(srlm_store *s, const char *path);

/* Names of the direct children of a group, in name order (so "iter_10" < "iter_2").
 * Free with srlm_store_strings_free(names, n). */
srlm_status srlm_store_list(srlm_store *s, const char *group, int64_t *n, char ***names);

/* Creates a group (and missing parents); an existing group is fine. */
srlm_status srlm_store_group(srlm_store *s, const char *path);

/* ---- arrays ------------------------------------------------------------- */

/* Writes a new dataset of shape dims[0..rank) from data (C order). A dim may be 0. */
srlm_status srlm_store_write_array(srlm_store *s, const char *path, srlm_store_dtype dtype, int rank,
                                   const int64_t *dims, const void *data);

/* Reads a dataset that must have exactly this dtype and rank; fills dims[0..rank) and
 * sets *data to a new buffer (free()). */
srlm_status srlm_store_read_array(srlm_store *s, const char *path, srlm_store_dtype dtype, int rank,
                                  int64_t *dims, void **data);

/* Reads into caller memory; the stored dtype, rank and shape must equal dtype, rank, dims. */
srlm_status srlm_store_read_array_into(srlm_store *s, const char *path, srlm_store_dtype dtype, int rank,
                                       const int64_t *dims, void *data);

/* ---- token sequences ---------------------------------------------------- */

/* offsets: (n + 1), offsets[0] = 0, non-decreasing; ids: (offsets[n]). n may be 0. */
srlm_status srlm_store_write_seqs(srlm_store *s, const char *path, int64_t n, const int64_t *offsets,
                                  const int32_t *ids);
srlm_status srlm_store_read_seqs(srlm_store *s, const char *path, srlm_seqs *out);
void srlm_seqs_free(srlm_seqs *q);

/* ---- strings ------------------------------------------------------------ */

/* strs: (n) NUL-terminated UTF-8 strings, none NULL ("" is fine). */
srlm_status srlm_store_write_strings(srlm_store *s, const char *path, int64_t n, const char *const *strs);
/* Reads a 1-D string dataset (variable or fixed length); free with srlm_store_strings_free. */
srlm_status srlm_store_read_strings(srlm_store *s, const char *path, int64_t *n, char ***strs);
void srlm_store_strings_free(char **strs, int64_t n);

/* ---- attributes (scalar, on the group or dataset at obj; "/" is the root) ---- */

/* Setting an attribute that exists replaces it. */
srlm_status srlm_store_set_attr_str(srlm_store *s, const char *obj, const char *name, const char *value);
srlm_status srlm_store_set_attr_i64(srlm_store *s, const char *obj, const char *name, int64_t value);
srlm_status srlm_store_set_attr_f64(srlm_store *s, const char *obj, const char *name, double value);
/* *value is a new string (free()). */
srlm_status srlm_store_get_attr_str(srlm_store *s, const char *obj, const char *name, char **value);
srlm_status srlm_store_get_attr_i64(srlm_store *s, const char *obj, const char *name, int64_t *value);
srlm_status srlm_store_get_attr_f64(srlm_store *s, const char *obj, const char *name, double *value);

#ifdef __cplusplus
}
#endif
#endif
