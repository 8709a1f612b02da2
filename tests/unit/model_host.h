/* White-box views of a CPU model's parameters and gradients for the tests: the model's
 * fp32 master and gradient buffers (backend memory, srlm_model_master /
 * srlm_model_grad_buffer), which on a host-memory backend the test may read and write
 * directly. Fatal on a device backend or a bf16 model (whose compute copy a write would
 * leave stale): tests for those go through srlm_model_get/set_params. */
#ifndef SRLM_TEST_MODEL_HOST_H
#define SRLM_TEST_MODEL_HOST_H

#include "srlm/model.h"

static inline float *test_w(srlm_model *m) {
  SRLM_CHECK(srlm_model_backend(m)->host_memory && srlm_model_dtype(m) == SRLM_F32,
             "a host view of the weights needs an fp32 model on a host-memory backend");
  return srlm_model_master(m);
}

static inline float *test_g(srlm_model *m) {
  float *g = NULL;
  SRLM_CHECK(srlm_model_backend(m)->host_memory, "a host view of the gradients needs a host-memory backend");
  SRLM_CHECK(srlm_model_grad_buffer(m, &g) == SRLM_OK, "gradients: %s", srlm_error_message());
  return g;
}

#endif
