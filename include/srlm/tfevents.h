/* TensorBoard event files, written from C (there is no C library for them).
 *
 * A file is a sequence of TFRecords: uint64 length (little endian), uint32 masked
 * CRC32C of those 8 bytes, the data, uint32 masked CRC32C of the data. Each record's
 * data is a tensorflow.Event protobuf, encoded here by hand: the first record is
 * {wall_time, file_version: "brain.Event:2"}, every other one
 * {wall_time (fixed64 double), step (varint), summary {value {tag, simple_value (fixed32
 * float)}}}. TensorBoard reads every file in the folder whose name holds "tfevents";
 * a resumed run opens a new file next to the old ones and continues their steps.
 *
 *   srlm_tfevents *tb;
 *   SRLM_TRY(srlm_tfevents_open(run_dir, &tb));        // events.out.tfevents.<time>.<host>
 *   srlm_tfevents_scalar(tb, "learn/loss", step, 0.69);  // buffered in the stdio stream
 *   SRLM_TRY(srlm_tfevents_flush(tb));                   // after each group of scalars
 *   srlm_tfevents_close(tb);
 */
#ifndef SRLM_TFEVENTS_H
#define SRLM_TFEVENTS_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "srlm/core.h"

typedef struct srlm_tfevents srlm_tfevents;

/* CRC-32C (Castagnoli, reflected polynomial 0x82F63B78) of n bytes; crc32c("123456789")
 * is 0xE3069283. */
uint32_t srlm_crc32c(const void *data, size_t n);
/* TFRecord's masking of a CRC: rotate right by 15 bits, add 0xa282ead8. */
uint32_t srlm_tfevents_mask_crc(uint32_t crc);

/* Creates dir/events.out.tfevents.<unix seconds>.<hostname> (a ".<n>" suffix when that
 * name exists) and writes the file_version record. *out is NULL on error. */
srlm_status srlm_tfevents_open(const char *dir, srlm_tfevents **out);
/* The file's path. */
const char *srlm_tfevents_path(const srlm_tfevents *w);
/* One scalar event at the current wall time (a float in the file, as TensorBoard stores
 * it). A write error is kept and reported by the next flush. */
void srlm_tfevents_scalar(srlm_tfevents *w, const char *tag, int64_t step, double value);
/* One scalar per member of the JSON object o whose value is a number or a boolean (1/0),
 * tagged "<prefix>/<key>", except the keys listed in skip (NULL-terminated; may be NULL),
 * in the object's order, from its from-th such scalar on (0: all); then flushes. null
 * values (a NaN in metrics.jsonl) are left out. */
srlm_status srlm_tfevents_json(srlm_tfevents *w, const char *prefix, int64_t step, const json_t *o,
                               const char *const *skip, int64_t from);
/* How many scalars srlm_tfevents_json writes for o (from 0). */
int64_t srlm_tfevents_json_count(const json_t *o, const char *const *skip);
/* For a resume: keeps the first `keep` scalar events of dir's events files (read in name
 * order, as TensorBoard does) and truncates the rest away (a file keeps at least its
 * file_version record; a record with a bad CRC and all after it count as lost). *kept is
 * how many remain (less than keep when the files lost some: the caller writes them
 * again). Makes the files agree with a metrics.jsonl cut back to a checkpoint. */
srlm_status srlm_tfevents_cut(const char *dir, int64_t keep, int64_t *kept);
/* Pushes what is buffered to the file (fflush); an earlier write error is reported here. */
srlm_status srlm_tfevents_flush(srlm_tfevents *w);
/* Flushes and closes; NULL is allowed. */
srlm_status srlm_tfevents_close(srlm_tfevents *w);

#endif
