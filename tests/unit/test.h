/* Minimal unit-test helpers: each check prints what was wrong with the numbers,
 * counts failures, and TEST_MAIN_END returns non-zero when any check failed. */
#ifndef SRLM_TEST_H
#define SRLM_TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int g_test_failures = 0;
static int g_test_checks = 0;

#define EXPECT(cond, ...)                                                   \
  do {                                                                      \
    g_test_checks++;                                                        \
    if (!(cond)) {                                                          \
      g_test_failures++;                                                    \
      fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);      \
      fprintf(stderr, " " __VA_ARGS__);                                      \
      fprintf(stderr, "\n");                                                \
    }                                                                       \
  } while (0)

#define EXPECT_EQ_INT(a, b)                                                           \
  do {                                                                                \
    long long ea_ = (long long)(a), eb_ = (long long)(b);                             \
    EXPECT(ea_ == eb_, "%s = %lld, expected %s = %lld", #a, ea_, #b, eb_);            \
  } while (0)

#define EXPECT_STR_EQ(a, b)                                                           \
  do {                                                                                \
    const char *ea_ = (a), *eb_ = (b);                                                \
    EXPECT(ea_ && eb_ && strcmp(ea_, eb_) == 0, "got \"%s\", expected \"%s\"",        \
           ea_ ? ea_ : "(null)", eb_ ? eb_ : "(null)");                               \
  } while (0)

#define EXPECT_CONTAINS(hay, needle)                                                  \
  do {                                                                                \
    const char *eh_ = (hay), *en_ = (needle);                                         \
    EXPECT(eh_ && strstr(eh_, en_) != NULL, "\"%s\" does not contain \"%s\"",         \
           eh_ ? eh_ : "(null)", en_);                                                \
  } while (0)

#define EXPECT_NEAR(a, b, tol)                                                        \
  do {                                                                                \
    double ea_ = (double)(a), eb_ = (double)(b);                                      \
    EXPECT(ea_ - eb_ <= (tol) && eb_ - ea_ <= (tol), "%s = %.9g, expected %.9g (tol %g)", \
           #a, ea_, eb_, (double)(tol));                                              \
  } while (0)

#define TEST_MAIN_END()                                                               \
  do {                                                                                \
    fprintf(stderr, "%d checks, %d failed\n", g_test_checks, g_test_failures);        \
    return g_test_failures ? 1 : 0;                                                   \
  } while (0)

/* Path of a file under the shared/ folder (SRLM_SHARED, set by ctest). */
static inline const char *test_shared_path(char *buf, size_t n, const char *rel) {
  const char *root = getenv("SRLM_SHARED");
  snprintf(buf, n, "%s/%s", root ? root : "../shared", rel);
  return buf;
}
/* A scratch path under SRLM_TMP. */
static inline const char *test_tmp_path(char *buf, size_t n, const char *rel) {
  const char *root = getenv("SRLM_TMP");
  snprintf(buf, n, "%s/%s", root ? root : "/tmp", rel);
  return buf;
}

#endif
