/* srlm shard_store: rollout shards (shard.h) as HDF5 groups (srlm_shard_write /
 * srlm_shard_read, one group per shard, e.g. "/iter_0/shard_3",
 * in a store file of format SRLM_SHARD_STORE_FORMAT, version SRLM_SHARD_STORE_VERSION):
 *   group attributes  srlm_kind = "rollout_shard", policy_version, iteration,
 *                     shard_index, judgments_per_response (int64)
 *   prompt_index      int64 (P)             prompts          seqs (P)
 *   response_prompt   int64 (R)             sample_index     int64 (R)
 *   responses         seqs (R)              logprobs         float32 (NRT)
 *   mean_score        float32 (R)           flags            int32 (R) (bit pattern)
 *   judgment_score    float32 (R, J)        judgments        strings (R * J)
 *   judgment_ids      seqs (R * J)
 */
#ifndef SRLM_SHARD_STORE_H
#define SRLM_SHARD_STORE_H

#include "srlm/core.h"
#include "srlm/shard.h"
#include "srlm/store.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SRLM_SHARD_STORE_FORMAT "rollouts"
#define SRLM_SHARD_STORE_VERSION 1

/* Writes the shard as a new group at `group` of a writable store. */
srlm_status srlm_shard_write(srlm_store *st, const char *group, const srlm_shard *s);
/* Reads and validates the shard at `group` into a new shard (free with srlm_shard_free). */
srlm_status srlm_shard_read(srlm_store *st, const char *group, srlm_shard *out);

#ifdef __cplusplus
}
#endif
#endif
