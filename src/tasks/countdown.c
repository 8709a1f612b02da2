/* The Countdown task (include/srlm/countdown.h): generator, texts, checker, solver and
 * judge format. Pure functions of their inputs; no allocation. The data files are in
 * countdown_data.c. */
#include <stdio.h>
#include <string.h>

#include "srlm/countdown.h"

/* The held-out hash's key: fixed, so membership is a property of the puzzle itself. */
#define CD_HOLDOUT_KEY 0xc0d7d0a11e0dd5edULL
#define CD_HOLDOUT_BUCKETS 8u

static const char *const k_verdicts[SRLM_CD_VERDICT_COUNT] = {
    "ok", "malformed", "unknown number", "reused number", "division by zero", "inexact division", "wrong value"};

const char *srlm_cd_verdict_name(srlm_cd_verdict v) {
  return (unsigned)v < SRLM_CD_VERDICT_COUNT ? k_verdicts[v] : "?";
}

static int uniform_int(uint32_t bits, uint32_t n) { return (int)(((uint64_t)bits * n) >> 32); }

/* ---- expressions: parse trees ---------------------------------------------------------- */

/* A parsed expression: nodes in post-order as they complete (operands before their
 * operator), so evaluating them in index order is the checker's order. */
#define CD_MAX_NODES (SRLM_CD_ANSWER_MAX + 1)
typedef struct cd_node {
  char op;     /* 0 for a number */
  int64_t num; /* a number's value */
  int l, r;    /* operand nodes */
} cd_node;

typedef struct cd_parser {
  const char *s;
  size_t n, at;
  cd_node node[CD_MAX_NODES];
  int count;
  int bad;
} cd_parser;

static int is_digit(char c) { return c >= '0' && c <= '9'; }

static int add_node(cd_parser *ps, cd_node nd) {
  if (ps->count >= CD_MAX_NODES) {
    ps->bad = 1;
    return 0;
  }
  ps->node[ps->count] = nd;
  return ps->count++;
}

static int parse_expr(cd_parser *ps, int depth);

static int parse_factor(cd_parser *ps, int depth) {
  if (ps->bad || ps->at >= ps->n || depth > SRLM_CD_ANSWER_MAX) {
    ps->bad = 1;
    return 0;
  }
  const char c = ps->s[ps->at];
  if (c == '(') {
    ps->at++;
    const int e = parse_expr(ps, depth + 1);
    if (ps->bad || ps->at >= ps->n || ps->s[ps->at] != ')') {
      ps->bad = 1;
      return 0;
    }
    ps->at++;
    return e;
  }
  if (!is_digit(c)) {
    ps->bad = 1;
    return 0;
  }
  size_t k = ps->at;
  int64_t v = 0;
  while (k < ps->n && is_digit(ps->s[k]) && k - ps->at < 9) v = v * 10 + (ps->s[k++] - '0');
  if ((k < ps->n && is_digit(ps->s[k])) || (c == '0' && k - ps->at > 1)) { /* > 9 digits, or a leading zero */
    ps->bad = 1;
    return 0;
  }
  ps->at = k;
  return add_node(ps, (cd_node){0, v, -1, -1});
}

static int parse_term(cd_parser *ps, int depth) {
  int a = parse_factor(ps, depth);
  while (!ps->bad && ps->at < ps->n && (ps->s[ps->at] == '*' || ps->s[ps->at] == '/')) {
    const char op = ps->s[ps->at++];
    const int b = parse_factor(ps, depth);
    a = add_node(ps, (cd_node){op, 0, a, b});
  }
  return a;
}

static int parse_expr(cd_parser *ps, int depth) {
  int a = parse_term(ps, depth);
  while (!ps->bad && ps->at < ps->n && (ps->s[ps->at] == '+' || ps->s[ps->at] == '-')) {
    const char op = ps->s[ps->at++];
    const int b = parse_term(ps, depth);
    a = add_node(ps, (cd_node){op, 0, a, b});
  }
  return a;
}

/* len without one trailing EOS written as text */
static size_t strip_eos(const char *s, size_t len) {
  const size_t e = sizeof SRLM_TASK_EOS_TEXT - 1;
  return len >= e && memcmp(s + len - e, SRLM_TASK_EOS_TEXT, e) == 0 ? len - e : len;
}

/* Parses s (n bytes) into ps; 0 when malformed. */
static int parse(const char *s, size_t n, cd_parser *ps) {
  memset(ps, 0, sizeof *ps);
  if (!s || n == 0 || n > SRLM_CD_ANSWER_MAX) return 0;
  ps->s = s;
  ps->n = n;
  parse_expr(ps, 0);
  return !ps->bad && ps->at == n;
}

/* Usage of the given numbers: MALFORMED never; UNKNOWN_NUMBER, REUSED_NUMBER or OK. */
static srlm_cd_verdict check_usage(const srlm_cd_puzzle *p, const cd_parser *ps) {
  int used[SRLM_CD_MAX_NUMS] = {0};
  srlm_cd_verdict v = SRLM_CD_OK;
  for (int i = 0; i < ps->count; i++) {
    if (ps->node[i].op) continue;
    int known = 0, slot = -1;
    for (int k = 0; k < p->n; k++)
      if (p->num[k] == ps->node[i].num) {
        known = 1;
        if (!used[k]) {
          slot = k;
          break;
        }
      }
    if (!known) return SRLM_CD_UNKNOWN_NUMBER;
    if (slot < 0) v = SRLM_CD_REUSED_NUMBER; /* an unknown number later still wins */
    else used[slot] = 1;
  }
  return v;
}

/* Evaluates the nodes in order; vals (count) get the values. Returns OK, DIV_ZERO or
 * INEXACT_DIV; *failed = the failing node (else -1). */
static srlm_cd_verdict evaluate(const cd_parser *ps, int64_t *vals, int *failed) {
  *failed = -1;
  for (int i = 0; i < ps->count; i++) {
    const cd_node *nd = &ps->node[i];
    if (!nd->op) {
      vals[i] = nd->num;
      continue;
    }
    const int64_t a = vals[nd->l], b = vals[nd->r];
    switch (nd->op) {
      case '+': vals[i] = a + b; break;
      case '-': vals[i] = a - b; break;
      case '*': vals[i] = a * b; break;
      default:
        if (b == 0 || a % b != 0) {
          *failed = i;
          return b == 0 ? SRLM_CD_DIV_ZERO : SRLM_CD_INEXACT_DIV;
        }
        vals[i] = a / b;
    }
  }
  return SRLM_CD_OK;
}

srlm_cd_verdict srlm_cd_check(const srlm_cd_puzzle *p, const char *answer, size_t len, int64_t *value) {
  cd_parser ps;
  if (!answer || !parse(answer, strip_eos(answer, len), &ps)) return SRLM_CD_MALFORMED;
  srlm_cd_verdict v = check_usage(p, &ps);
  if (v != SRLM_CD_OK) return v;
  int64_t vals[CD_MAX_NODES];
  int failed;
  v = evaluate(&ps, vals, &failed);
  if (v != SRLM_CD_OK) return v;
  const int64_t x = vals[ps.count - 1];
  if (value) *value = x;
  return x == p->target ? SRLM_CD_OK : SRLM_CD_WRONG_VALUE;
}

/* ---- solver ----------------------------------------------------------------------------- */

/* Can some combination of the k values (and any sub-multiset of them) reach target? */
static int solve(const int64_t *v, int k, int64_t target) {
  for (int i = 0; i < k; i++)
    if (v[i] == target) return 1;
  for (int i = 0; i < k; i++)
    for (int j = 0; j < k; j++) {
      if (i == j) continue;
      int64_t rest[SRLM_CD_MAX_NUMS];
      int m = 0;
      for (int q = 0; q < k; q++)
        if (q != i && q != j) rest[m++] = v[q];
      const int64_t a = v[i], b = v[j];
      int64_t cand[4];
      int nc = 0;
      cand[nc++] = a + b;
      cand[nc++] = a - b;
      cand[nc++] = a * b;
      if (b != 0 && a % b == 0) cand[nc++] = a / b;
      for (int c = 0; c < nc; c++) {
        rest[m] = cand[c];
        if (solve(rest, m + 1, target)) return 1;
      }
    }
  return 0;
}

int srlm_cd_solvable(const srlm_cd_puzzle *p) {
  int64_t v[SRLM_CD_MAX_NUMS];
  for (int k = 0; k < p->n; k++) v[k] = p->num[k];
  return solve(v, p->n, p->target);
}

/* ---- generator ---------------------------------------------------------------------------- */

int srlm_cd_puzzle_held_out(const srlm_cd_puzzle *p) {
  int s[SRLM_CD_MAX_NUMS];
  const int n = p->n < 0 ? 0 : p->n > SRLM_CD_MAX_NUMS ? SRLM_CD_MAX_NUMS : p->n;
  memcpy(s, p->num, (size_t)n * sizeof *s);
  for (int i = 1; i < n; i++) /* insertion sort: the multiset, not the order */
    for (int j = i; j > 0 && s[j - 1] > s[j]; j--) {
      const int t = s[j];
      s[j] = s[j - 1];
      s[j - 1] = t;
    }
  uint32_t code = (uint32_t)n;
  for (int k = 0; k < n; k++) code = code * 1000u + (uint32_t)s[k] % 1000u; /* fits: n <= 4, base 1000 wraps harmlessly */
  srlm_philox_out r = srlm_rng_bits(CD_HOLDOUT_KEY, SRLM_CD_RNG_HOLDOUT, code, (uint32_t)p->target, (uint32_t)n);
  return r.v[0] % CD_HOLDOUT_BUCKETS == 0;
}

/* Precedence of an expression text's top level: 3 a number, 2 * or /, 1 + or -. */
typedef struct cd_item {
  int64_t v;
  int prec;
  char text[SRLM_CD_ANSWER_MAX + 1];
} cd_item;

/* a op b with the fewest parentheses that keep the parse: a's side needs them when a
 * binds weaker than op; b's when it binds weaker, or as strongly for - and /. */
static int combine(const cd_item *a, const cd_item *b, char op, cd_item *out) {
  const int prec = op == '+' || op == '-' ? 1 : 2;
  const int pa = a->prec < prec, pb = b->prec < prec || (b->prec == prec && (op == '-' || op == '/'));
  int w = snprintf(out->text, sizeof out->text, "%s%s%s%c%s%s%s", pa ? "(" : "", a->text, pa ? ")" : "", op,
                   pb ? "(" : "", b->text, pb ? ")" : "");
  if (w < 0 || (size_t)w >= sizeof out->text) return 0;
  out->prec = prec;
  switch (op) {
    case '+': out->v = a->v + b->v; break;
    case '-': out->v = a->v - b->v; break;
    case '*': out->v = a->v * b->v; break;
    default: out->v = a->v / b->v; break;
  }
  return 1;
}

static const char k_ops[4] = {'+', '-', '*', '/'};
static const uint32_t k_split_purpose[SRLM_TASK_SPLIT_COUNT] = {SRLM_CD_RNG_TRAIN, SRLM_CD_RNG_EVAL, SRLM_CD_RNG_SFT,
                                                                SRLM_CD_RNG_JUDGE};

/* One attempt: 1 when it gave a puzzle with a target in range. */
static int attempt(uint64_t seed, uint32_t purpose, uint64_t index, uint32_t a, srlm_cd_puzzle *p) {
  uint32_t bits[16];
  for (uint32_t w = 0; w < 4; w++) {
    srlm_philox_out r = srlm_rng_bits(seed, purpose, (uint32_t)index, (uint32_t)(index >> 32), a << 8 | w);
    memcpy(bits + 4 * w, r.v, sizeof r.v);
  }
  p->n = SRLM_CD_MIN_NUMS + (int)(bits[0] & 1u);
  cd_item it[SRLM_CD_MAX_NUMS];
  for (int k = 0; k < p->n; k++) {
    p->num[k] = 1 + uniform_int(bits[1 + k], SRLM_CD_MAX_NUMBER);
    it[k].v = p->num[k];
    it[k].prec = 3;
    snprintf(it[k].text, sizeof it[k].text, "%d", p->num[k]);
  }
  for (int k = p->n; k < SRLM_CD_MAX_NUMS; k++) p->num[k] = 0;
  int m = p->n, b = 5;
  while (m > 1) {
    const int i = uniform_int(bits[b++], (uint32_t)m);
    int j = uniform_int(bits[b++], (uint32_t)(m - 1));
    if (j >= i) j++;
    char op = k_ops[uniform_int(bits[b++], 4)];
    if (op == '/' && (it[j].v == 0 || it[i].v % it[j].v != 0)) op = '*';
    cd_item out;
    if (!combine(&it[i], &it[j], op, &out)) return 0;
    /* the result takes the lower slot, the last item the higher one */
    const int lo = i < j ? i : j, hi = i < j ? j : i;
    it[lo] = out;
    it[hi] = it[m - 1];
    m--;
  }
  if (it[0].v < 1 || it[0].v > SRLM_CD_MAX_TARGET) return 0;
  p->target = (int)it[0].v;
  strncpy(p->solution, it[0].text, sizeof p->solution); /* zero-filled: a puzzle's bytes are a function of its draw */
  return srlm_cd_check(p, p->solution, strlen(p->solution), NULL) == SRLM_CD_OK;
}

void srlm_cd_puzzle_make(uint64_t seed, srlm_task_split split, uint64_t index, srlm_cd_puzzle *p) {
  const uint32_t purpose = k_split_purpose[(unsigned)split < SRLM_TASK_SPLIT_COUNT ? split : 0];
  const int want_held_out = split == SRLM_TASK_SPLIT_EVAL;
  memset(p, 0, sizeof *p);
  for (uint32_t a = 0;; a++) {
    SRLM_CHECK(a < (1u << 23), "countdown generator: no puzzle after %u attempts", a);
    if (attempt(seed, purpose, index, a, p) && srlm_cd_puzzle_held_out(p) == want_held_out) return;
  }
}

/* ---- texts ------------------------------------------------------------------------------- */

size_t srlm_cd_prompt(const srlm_cd_puzzle *p, char out[SRLM_CD_PROMPT_MAX + 1]) {
  size_t w = 0;
  out[w++] = 'C';
  for (int k = 0; k < p->n; k++) w += (size_t)snprintf(out + w, SRLM_CD_PROMPT_MAX + 1 - w, "%s%d", k ? "," : "", p->num[k]);
  w += (size_t)snprintf(out + w, SRLM_CD_PROMPT_MAX + 1 - w, "T%dA", p->target);
  return w;
}

/* A number of 1..3 digits without a leading zero at s[*at]; -1 when there is none. */
static int read_number(const char *s, size_t len, size_t *at) {
  size_t k = *at;
  int v = 0;
  while (k < len && is_digit(s[k]) && k - *at < 4) v = v * 10 + (s[k++] - '0');
  const size_t d = k - *at;
  if (d == 0 || d > 3 || (d > 1 && s[*at] == '0')) return -1;
  *at = k;
  return v;
}

srlm_status srlm_cd_prompt_parse(const char *text, size_t len, srlm_cd_puzzle *p) {
  const char *where = "countdown prompt";
  memset(p, 0, sizeof *p);
  if (!text || len < 5 || text[0] != 'C' || text[len - 1] != 'A')
    return srlm_error(SRLM_ERR_FORMAT, where, "expected the form C<numbers joined by ','>T<target>A like C3,7,25,4T53A");
  size_t at = 1;
  for (;;) {
    const int v = read_number(text, len, &at);
    if (v < 0) return srlm_error(SRLM_ERR_FORMAT, where, "byte %zu: expected a number of 1-3 digits", at + 1);
    if (p->n == SRLM_CD_MAX_NUMS) return srlm_error(SRLM_ERR_FORMAT, where, "more than %d numbers", SRLM_CD_MAX_NUMS);
    p->num[p->n++] = v;
    if (at < len && text[at] == ',') {
      at++;
      continue;
    }
    break;
  }
  if (at >= len || text[at] != 'T') return srlm_error(SRLM_ERR_FORMAT, where, "byte %zu: expected T", at + 1);
  at++;
  const int t = read_number(text, len, &at);
  if (t < 0 || at != len - 1) return srlm_error(SRLM_ERR_FORMAT, where, "the target must be 1-3 digits, then A");
  p->target = t;
  return SRLM_OK;
}

/* ---- judge format ------------------------------------------------------------------------- */

static int is_answer_char(char c) {
  return is_digit(c) || c == '+' || c == '-' || c == '*' || c == '/' || c == '(' || c == ')';
}

size_t srlm_cd_judge_candidate(const char *cand, size_t len, char out[SRLM_CD_ANSWER_MAX + 2]) {
  size_t w = 0;
  if (cand) len = strip_eos(cand, len);
  else len = 0;
  for (size_t i = 0; i < len && w < SRLM_CD_ANSWER_MAX + 1; i++) {
    if (is_answer_char(cand[i])) {
      out[w++] = cand[i];
    } else {
      out[w++] = '?';
      while (i + 1 < len && !is_answer_char(cand[i + 1])) i++;
    }
  }
  out[w] = '\0';
  return w;
}

size_t srlm_cd_judge_prompt(const srlm_cd_puzzle *p, const char *cand, size_t len,
                            char out[SRLM_CD_JUDGE_PROMPT_MAX + 1]) {
  char q[SRLM_CD_PROMPT_MAX + 1], c[SRLM_CD_ANSWER_MAX + 2];
  const size_t ql = srlm_cd_prompt(p, q);
  srlm_cd_judge_candidate(cand, len, c);
  return (size_t)snprintf(out, SRLM_CD_JUDGE_PROMPT_MAX + 1, "%.*s%sS", (int)ql, q, c);
}

size_t srlm_cd_judgment(const srlm_cd_puzzle *p, const char *cand, size_t len, char out[SRLM_CD_JUDGMENT_MAX + 1]) {
  char c[SRLM_CD_ANSWER_MAX + 2];
  const size_t cl = srlm_cd_judge_candidate(cand, len, c);
  cd_parser ps;
  size_t w = 0;
  const size_t cap = SRLM_CD_RATIONALE_MAX + 1;
  int ok = 0;
  if (!parse(c, cl, &ps)) {
    out[w++] = 'X';
  } else if (check_usage(p, &ps) != SRLM_CD_OK) {
    out[w++] = 'N';
  } else {
    int64_t vals[CD_MAX_NODES];
    int failed;
    const srlm_cd_verdict v = evaluate(&ps, vals, &failed);
    const int last = v == SRLM_CD_OK ? ps.count - 1 : failed;
    int steps = 0;
    for (int i = 0; i <= last && w < cap; i++) {
      const cd_node *nd = &ps.node[i];
      if (!nd->op) continue;
      if (i == failed)
        w += (size_t)snprintf(out + w, cap - w, "%s%lld/%lld=X", steps ? "," : "", (long long)vals[nd->l],
                              (long long)vals[nd->r]);
      else
        w += (size_t)snprintf(out + w, cap - w, "%s%lld%c%lld=%lld", steps ? "," : "", (long long)vals[nd->l], nd->op,
                              (long long)vals[nd->r], (long long)vals[i]);
      steps++;
    }
    if (steps == 0) w += (size_t)snprintf(out + w, cap - w, "%lld", (long long)vals[0]);
    SRLM_CHECK(w < cap, "countdown rationale longer than %d bytes", SRLM_CD_RATIONALE_MAX);
    ok = v == SRLM_CD_OK && vals[ps.count - 1] == p->target;
  }
  out[w++] = ';';
  out[w++] = ok ? '5' : '1';
  out[w] = '\0';
  return w;
}

int srlm_cd_judgment_parse(const char *text, size_t len, int *score) {
  if (!text || len < 3 || text[len - 2] != ';' || text[len - 1] < '1' || text[len - 1] > '5') return 0;
  *score = text[len - 1] - '0';
  return 1;
}

/* ---- judge examples ------------------------------------------------------------------------ */

/* Counter word `d` of a judge example's candidate draws (the puzzle's attempts use
 * a << 8 | w with a far below this). */
#define CD_CAND_DRAW 0x40000000u

/* The number tokens of an expression text: start and length of each. */
static int number_spans(const char *s, int *at, int *len) {
  int n = 0;
  for (int i = 0; s[i];) {
    if (!is_digit(s[i])) {
      i++;
      continue;
    }
    at[n] = i;
    while (is_digit(s[i])) i++;
    len[n] = i - at[n];
    n++;
  }
  return n;
}

void srlm_cd_judge_example(uint64_t seed, uint64_t index, srlm_cd_puzzle *p, char cand[SRLM_CD_ANSWER_MAX + 1],
                           srlm_cd_cand_kind *kind) {
  srlm_cd_puzzle_make(seed, SRLM_TASK_SPLIT_JUDGE, index, p);
  uint32_t bits[8];
  for (uint32_t w = 0; w < 2; w++) {
    srlm_philox_out r = srlm_rng_bits(seed, SRLM_CD_RNG_JUDGE, (uint32_t)index, (uint32_t)(index >> 32), CD_CAND_DRAW | w);
    memcpy(bits + 4 * w, r.v, sizeof r.v);
  }
  srlm_cd_cand_kind k = SRLM_CD_CAND_SOLUTION;
  if (index % 2 == 1) {
    const double u = srlm_rng_u01d(bits[0], bits[1]);
    k = u < 0.4 ? SRLM_CD_CAND_OP_SWAP : u < 0.6 ? SRLM_CD_CAND_UNKNOWN : u < 0.8 ? SRLM_CD_CAND_REUSE : SRLM_CD_CAND_RANDOM;
  }
  memcpy(cand, p->solution, SRLM_CD_ANSWER_MAX + 1);
  const size_t n = strlen(cand);
  int at[SRLM_CD_MAX_NUMS * 2], len[SRLM_CD_MAX_NUMS * 2];
  const int nn = number_spans(cand, at, len);
  switch (k) {
    case SRLM_CD_CAND_OP_SWAP: {
      int ops[SRLM_CD_ANSWER_MAX], no = 0;
      for (size_t i = 0; i < n; i++)
        if (cand[i] == '+' || cand[i] == '-' || cand[i] == '*' || cand[i] == '/') ops[no++] = (int)i;
      const int j = ops[uniform_int(bits[2], (uint32_t)no)];
      int o = 0;
      while (k_ops[o] != cand[j]) o++;
      cand[j] = k_ops[(o + 1 + uniform_int(bits[3], 3)) % 4]; /* one of the other three */
      break;
    }
    case SRLM_CD_CAND_UNKNOWN: {
      /* a number 1..MAX_NUMBER that is not given, in place of one number token */
      int v;
      for (uint32_t t = 0;; t++) {
        v = 1 + uniform_int(bits[2] ^ (t * 0x9e3779b9u), SRLM_CD_MAX_NUMBER);
        int given = 0;
        for (int q = 0; q < p->n; q++) given |= p->num[q] == v;
        if (!given) break;
      }
      const int j = uniform_int(bits[3], (uint32_t)nn);
      char tail[SRLM_CD_ANSWER_MAX + 1];
      snprintf(tail, sizeof tail, "%s", cand + at[j] + len[j]);
      snprintf(cand + at[j], (size_t)(SRLM_CD_ANSWER_MAX + 1 - at[j]), "%d%s", v, tail);
      break;
    }
    case SRLM_CD_CAND_REUSE: {
      const int j = uniform_int(bits[2], (uint32_t)p->n);
      snprintf(cand + n, (size_t)(SRLM_CD_ANSWER_MAX + 1) - n, "%c%d", k_ops[uniform_int(bits[3], 4)], p->num[j]);
      break;
    }
    case SRLM_CD_CAND_RANDOM: {
      cd_item it[SRLM_CD_MAX_NUMS];
      for (int q = 0; q < p->n; q++) {
        it[q].v = p->num[q];
        it[q].prec = 3;
        snprintf(it[q].text, sizeof it[q].text, "%d", p->num[q]);
      }
      int m = p->n, b = 2;
      while (m > 1 && b + 1 < 8) {
        const int i = uniform_int(bits[b++], (uint32_t)m);
        int j = uniform_int(bits[b++], (uint32_t)(m - 1));
        if (j >= i) j++;
        char op = k_ops[(bits[b - 1] >> 8) & 3u];
        if (op == '/' && (it[j].v == 0 || it[i].v % it[j].v != 0)) op = '-';
        cd_item out;
        if (!combine(&it[i], &it[j], op, &out)) break;
        const int lo = i < j ? i : j, hi = i < j ? j : i;
        it[lo] = out;
        it[hi] = it[m - 1];
        m--;
      }
      strncpy(cand, it[0].text, SRLM_CD_ANSWER_MAX + 1);
      break;
    }
    default:
      break;
  }
  if (kind) *kind = k;
}
