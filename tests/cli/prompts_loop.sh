#!/usr/bin/env bash
# The iterations on a prompt set (task.name none): prompts from JSONL ({"prompt"} and
# {"messages"} lines) rendered with the ChatML format, K samples each, judged by the model
# itself through the text judge (configs/judge/additive5.txt through the chat format,
# judge.samples judgments per answer, score = the last regex match, clamped), pairs,
# DPO. A fresh tiny model writes noise, so the score regex here takes any digit: what is
# checked is the machinery, not the quality. Checks: J judgments per response with their
# texts in rollouts.h5, the walk through the prompt set across iterations
# (data.prompts_per_iteration, wrapping), the evaluation on data.eval_prompts (greedy
# answers, self-judged mean score), bit-identical rollouts and weights with 3 MPI ranks,
# and the config errors (a verifier or judge.mode expected without a task, no prompts).
set -u
. "$(dirname "$0")/lib/check.sh"
cli_setup "$1"
mpi_env
no_leak_checks
cat >"$tmp/prompts.jsonl" <<'J'
{"prompt": "Name a prime number."}
{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+2?"}]}
{"prompt": "Say hello."}
{"prompt": "Count to three."}
{"prompt": "Give a color."}
{"prompt": "Pick a digit."}
J
base="$tiny_quickstart model.arch.max_seq_len=2048 task.name=none data.prompts=$tmp/prompts.jsonl
  data.prompts_per_iteration=4 tokenizer.path=tests/fixtures/sft/chatml_tokenizer tokenizer.chat_format=chatml
  run.iterations=2 generate.samples_per_prompt=3
  generate.max_new_tokens=6 judge.samples=2 judge.max_new_tokens=6 judge.temperature=1.0
  judge.score_regex=([0-9]) judge.score_max=9 judge.mode=regex pairs.min_margin=0 train.batch_size=2
  train.lr=1e-3 roles.shard_prompts=2 roles.threads=1"

printf '{"prompt": "Name a fruit."}\n{"prompt": "Say yes."}\n{"prompt": "Add 1 and 1."}\n' >"$tmp/eval.jsonl"
timeout 120 "$srlm" train $base run.name=one data.eval_prompts="$tmp/eval.jsonl" eval.prompts=2 >"$tmp/one.out" 2>"$tmp/one.err"
rc=$?
[ $rc -eq 0 ] || { fail "one process: exit $rc"; tail -5 "$tmp/one.err" >&2; }
for t in 1 2; do "$srlm" rollouts "$tmp/runs/one/iter_$t/rollouts.h5" >"$tmp/one.r$t" || fail "srlm rollouts iter_$t"; done
python3 - "$tmp/one.r1" "$tmp/one.r2" <<'PY' || fails=$((fails + 1))
import json, math, re, sys
bad = []
for t, path in ((1, sys.argv[1]), (2, sys.argv[2])):
    rows = [json.loads(l) for l in open(path)]
    resp = [r for r in rows if "judgments" in r]
    if len(resp) != 12: bad.append("iteration %d: %d responses, want 4 prompts x 3" % (t, len(resp)))
    want = [0, 1, 2, 3] if t == 1 else [4, 5, 0, 1]
    got = sorted(set(r["prompt_index"] for r in resp), key=lambda x: want.index(x) if x in want else 99)
    if got != want: bad.append("iteration %d prompts %s, want %s" % (t, got, want))
    for r in resp:
        if len(r["judgments"]) != 2: bad.append("%d judgments" % len(r["judgments"])); break
        for text, s in zip(r["judgments"], r["judgment_scores"]):
            m = re.findall(r"[0-9]", text)
            want_s = float(m[-1]) if m else None
            if (want_s is None) != (s is None) or (want_s is not None and abs(want_s - s) > 1e-6):
                bad.append("judgment %r scored %r, want %r" % (text, s, want_s))
        ok = [s for s in r["judgment_scores"] if s is not None]
        mean = sum(ok) / len(ok) if ok else None
        if (mean is None) != (r["score"] is None) or (mean is not None and abs(mean - r["score"]) > 1e-5):
            bad.append("mean score %r, want %r" % (r["score"], mean))
    print("iteration %d: %d of %d responses scored, %s" % (t, sum(r["score"] is not None for r in resp), len(resp),
          rows[-1]["pairs"]), file=sys.stderr)
for b in bad[:10]: print("FAIL:", b, file=sys.stderr)
sys.exit(1 if bad else 0)
PY
grep -q "iteration 1 rollouts: 4/4 prompts generated and judged" "$tmp/one.err" || fail "no rollout progress line"
# evaluation of a prompt set: greedy answers to data.eval_prompts (eval.prompts = 2 of 3), self-judged
python3 - "$tmp/runs/one/metrics.jsonl" <<'PY' || fails=$((fails + 1))
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1]) if '"eval"' in l]
bad = [e for e in ev if e["accuracy"] is not None or e["prompts"] != 2 or "mean_score" not in e]
print("eval lines: %s" % [(e["iteration"], e["mean_score"], e["scored"]) for e in ev], file=sys.stderr)
sys.exit(1 if bad or [e["iteration"] for e in ev] != [0, 1, 2] else 0)
PY
grep -q '^model .*eval_score .*mean_score' "$tmp/one.out" || fail "table header: $(head -1 "$tmp/one.out")"
grep -q '^iter 2 ' "$tmp/one.out" || fail "no table row for iteration 2"

if command -v mpirun >/dev/null 2>&1; then
  timeout 120 mpirun --oversubscribe -np 3 "$srlm" train $base run.name=sep3 roles.colocate=false roles.learners=1 \
    roles.generators=1 roles.judges=1 >"$tmp/sep3.out" 2>"$tmp/sep3.err"
  rc=$?
  [ $rc -eq 0 ] || { fail "3 ranks: exit $rc"; tail -5 "$tmp/sep3.err" >&2; }
  for t in 1 2; do
    "$srlm" rollouts "$tmp/runs/sep3/iter_$t/rollouts.h5" >"$tmp/sep3.r$t" || fail "srlm rollouts sep3 iter_$t"
    cmp -s "$tmp/one.r$t" "$tmp/sep3.r$t" || fail "iteration $t rollouts differ between 1 process and 3 ranks"
  done
  cmp -s "$tmp/runs/one/iter_2/model/model.safetensors" "$tmp/runs/sep3/iter_2/model/model.safetensors" \
    || fail "final weights differ between 1 process and 3 ranks"
fi

"$srlm" train $base run.name=v judge.source=verifier >/dev/null 2>"$tmp/v.err"
rc=$?
[ $rc -eq 2 ] || fail "verifier without a task or checker: exit $rc, want 2"
grep -q "judge.source: verifier needs a checker: a built-in task (task.name) or a prompt set.s data.checker" "$tmp/v.err" || fail "verifier error: $(tail -1 "$tmp/v.err")"
"$srlm" train $base run.name=em judge.mode=expected >/dev/null 2>"$tmp/em.err"
rc=$?
[ $rc -eq 2 ] || fail "judge.mode expected on a prompt set: exit $rc, want 2"
grep -q "judge.mode: expected needs a built-in task's judge format" "$tmp/em.err" || fail "mode error: $(tail -1 "$tmp/em.err")"
"$srlm" train $base run.name=np data.prompts= >/dev/null 2>"$tmp/np.err"
rc=$?
[ $rc -eq 2 ] || fail "no prompts: exit $rc, want 2"
grep -q "data.prompts: the iterations need prompts" "$tmp/np.err" || fail "no-prompts error: $(tail -1 "$tmp/np.err")"

echo "prompts_loop.sh: $fails failed"
[ "$fails" -eq 0 ]
