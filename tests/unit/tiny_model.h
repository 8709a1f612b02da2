/* The tiny Llama the trainer tests share (include after test.h): 2 layers, width 32,
 * 4 query / 2 key-value heads, 32 positions, an untied head, Philox seed 7; fp32 on the CPU,
 * or any backend and dtype (tiny_model_on). */
#ifndef SRLM_TEST_TINY_MODEL_H
#define SRLM_TEST_TINY_MODEL_H

#include "srlm/backend.h"
#include "srlm/model.h"

static inline srlm_model *tiny_model_on(int64_t vocab, srlm_backend *be, srlm_dtype dtype) {
  srlm_model_config c;
  srlm_model_config_defaults(&c, SRLM_MODEL_LLAMA);
  c.vocab_size = vocab;
  c.hidden_size = 32;
  c.intermediate_size = 64;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.max_position_embeddings = 32;
  c.tie_word_embeddings = false;
  srlm_model *m = NULL;
  srlm_status st = srlm_model_config_finalize(&c, "test");
  if (st == SRLM_OK) st = srlm_model_create(&c, 7, be, dtype, &m);
  EXPECT(st == SRLM_OK, "create: %s", srlm_error_message());
  return m;
}
static inline srlm_model *tiny_model_with_vocab(int64_t vocab) { return tiny_model_on(vocab, srlm_backend_cpu(), SRLM_F32); }

#endif
