#!/usr/bin/env bash
# srlm report RUN_DIR (srlm/report.h): `srlm train` writes RUN_DIR/report.html after every
# iteration; the page is self-contained (no script, no src/href, nothing fetched), has an
# SVG chart with one point per metrics.jsonl value for each chart, says "no data" for a
# series metrics.jsonl lacks, has one table row per iteration (plus the start), the run's
# config and sampled prompts with best and worst answers; a hostile prompt
# (<script>, quotes, </pre>) is HTML-escaped; an SFT run folder gets its SFT charts; a report that cannot be written is a
# warning, not a failed run; errors: no run folder, no metrics.jsonl, an empty one, bad
# JSON and a non-object line (file:line), and usage.
set -u
. "$(dirname "$0")/lib/check.sh"
cli_setup "$1"
no_leak_checks
expect_rc() { # expected-rc description command...
  local want=$1 what=$2; shift 2
  "$@" >"$tmp/out" 2>"$tmp/err"; local rc=$?
  [ "$rc" -eq "$want" ] || { fail "$what: exit $rc, expected $want"; cat "$tmp/err" >&2; }
}
expect_err() { grep -qF -- "$1" "$tmp/err" || { fail "stderr lacks '$1':"; cat "$tmp/err" >&2; }; }
small="$tiny_quickstart model.arch.max_seq_len=512
  roles.colocate=true roles.learners=0 roles.generators=0 roles.judges=0 roles.threads=1 run.iterations=2
  generate.samples_per_prompt=4 train.batch_size=4 pairs.min_margin=0"

# structure.py HTML METRICS ITERATIONS CHART...: the charts named have an svg with a point per
# value; checks the table, self-containment, the config and the samples; prints the "no data" lines
cat >"$tmp/structure.py" <<'PY'
import json, sys
from html.parser import HTMLParser
html_path, metrics_path, iterations, charts = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
text = open(html_path, encoding="utf-8").read()
class P(HTMLParser):
    def __init__(self):
        super().__init__(); self.fig = None; self.figs = {}; self.rows = {}; self.tags = []
    def handle_starttag(self, tag, attrs):
        a = dict(attrs); self.tags.append(tag)
        if tag == "figure": self.fig = a.get("id"); self.figs[self.fig] = {"svg": 0, "pt": 0, "lines": 0}
        if self.fig and tag == "svg": self.figs[self.fig]["svg"] += 1
        if self.fig and tag == "circle" and a.get("class") == "pt": self.figs[self.fig]["pt"] += 1
        if self.fig and tag == "polyline": self.figs[self.fig]["lines"] += 1
        if tag == "tr" and a.get("class"): self.rows[a["class"]] = self.rows.get(a["class"], 0) + 1
        for k, v in attrs:
            if k in ("src", "href") or (k.startswith("on")): bad.append("attribute %s=%r" % (k, v))
    def handle_endtag(self, tag):
        if tag == "figure": self.fig = None
bad = []
p = P(); p.feed(text)
for t in ("script", "link", "iframe", "object", "embed", "img"):
    if t in p.tags: bad.append("a <%s> element" % t)
if "url(" in text or "@import" in text: bad.append("a CSS url()/@import")
if text.replace('xmlns="http://www.w3.org/2000/svg"', "").count("http://") + text.count("https://"): bad.append("an http(s) address")
lines = [json.loads(l) for l in open(metrics_path)]
def count(ev, keys):
    return sum(1 for l in lines if l.get("event") == ev for k in keys if isinstance(l.get(k), (int, float)) and not isinstance(l.get(k), bool))
want_pts = {"chart-step_loss": count("learn", ["loss"]), "chart-lengths": count("learn", ["len_chosen", "len_rejected"]),
            "chart-reward_margin": count("learn", ["margin"]), "chart-iteration_loss": count("iteration", ["loss_first", "loss_last"]),
            "chart-heldout_accuracy": count("eval", ["accuracy", "sample_accuracy"])}
for c in charts:
    f = p.figs.get("chart-" + c)
    if not f: bad.append("no figure chart-%s" % c); continue
    if f["svg"] != 1 or f["pt"] == 0 or f["lines"] == 0: bad.append("chart-%s: %s" % (c, f))
    w = want_pts.get("chart-" + c)
    if w is not None and f["pt"] != w: bad.append("chart-%s: %d points, metrics.jsonl has %d values" % (c, f["pt"], w))
start = int(any(l.get("event") == "eval" and l.get("iteration") == 0 for l in lines))  # M0 evaluated
if p.rows.get("iter", 0) != iterations or p.rows.get("start", 0) != start:
    bad.append("table rows %s, want %d iterations and %d start row" % (p.rows, iterations, start))
if 'id="config"' not in text or "seed:" not in text: bad.append("no config section with the config")
if text.count('class="sample"') < 1 or "best answer" not in text: bad.append("no sampled prompt with a best answer")
if bad:
    print("report structure:\n  " + "\n  ".join(bad), file=sys.stderr); sys.exit(1)
for l in text.splitlines():
    if "no data:" in l:
        import re
        for m in re.findall(r"no data: [^<]*", l): print(m)
PY

# 1. a sign-puzzle run: train writes the report after each iteration; every chart has points
"$srlm" train $small run.name=a model.arch.max_seq_len=64 task.prompts_per_iteration=16 task.eval_prompts=16 \
  judge.replay_per_verdict=4 >"$tmp/a.out" 2>"$tmp/a.err" || { fail "train a exited non-zero"; tail -5 "$tmp/a.err" >&2; }
run=$tmp/runs/a
[ "$(grep -c "report: $run/report.html" "$tmp/a.err")" -eq 2 ] || fail "train did not write the report after each of 2 iterations"
ls "$run" | grep -q '\.tmp\.' && fail "temporary files left in $run: $(ls "$run")"
rm "$run/report.html"
expect_rc 0 "srlm report a" "$srlm" report "$run"
[ "$(cat "$tmp/out")" = "$run/report.html" ] || fail "srlm report printed '$(cat "$tmp/out")', not the file"
python3 "$tmp/structure.py" "$run/report.html" "$run/metrics.jsonl" 2 heldout_accuracy judge_agreement iteration_loss \
  mean_score iteration_throughput step_loss reward_margin reward_accuracy lengths step_throughput >"$tmp/nodata" \
  || fail "run a: report structure"
grep -qx "no data: metrics.jsonl has no eval.mean_score values" "$tmp/nodata" \
  || fail "run a: the missing eval.mean_score series is not named: $(cat "$tmp/nodata")"
[ "$(wc -l <"$tmp/nodata")" -eq 1 ] || fail "run a: unexpected missing series: $(cat "$tmp/nodata")"

# 2. a prompt set with a hostile prompt: escaped everywhere; the checker's charts say "no data"
printf '%s\n' '{"prompt": "<script>alert('"'"'x'"'"')</script> & \"quotes\" </pre><b>"}' '{"prompt": "Say hello."}' >"$tmp/hostile.jsonl"
"$srlm" train $small run.name=p model.arch.max_seq_len=2048 task.name=none data.prompts="$tmp/hostile.jsonl" \
  tokenizer.path=tests/fixtures/sft/chatml_tokenizer tokenizer.chat_format=chatml generate.max_new_tokens=6 \
  judge.samples=2 judge.max_new_tokens=6 'judge.score_regex=([0-9])' judge.score_max=9 judge.mode=regex \
  >"$tmp/p.out" 2>"$tmp/p.err" || { fail "train p exited non-zero"; tail -5 "$tmp/p.err" >&2; }
html=$tmp/runs/p/report.html
python3 "$tmp/structure.py" "$html" "$tmp/runs/p/metrics.jsonl" 2 iteration_loss step_loss reward_margin lengths >"$tmp/nodata" \
  || fail "run p: report structure"
grep -q "<script\|<b>\|</pre><b>" "$html" && fail "run p: the hostile prompt is not escaped: $(grep -o '.\{20\}<script.\{40\}' "$html" | head -2)"
grep -qF "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;quotes&quot; &lt;/pre&gt;&lt;b&gt;" "$html" \
  || fail "run p: the escaped hostile prompt is not in the page"
grep -qx "no data: metrics.jsonl has no eval.accuracy values" "$tmp/nodata" || fail "run p: no 'no data' for eval.accuracy"

# 3. a report that cannot be written (report.html is a folder) is a warning; the run succeeds
mkdir -p "$tmp/runs/w/report.html/x"
"$srlm" train $small run.name=w model.arch.max_seq_len=64 task.prompts_per_iteration=8 task.eval_prompts=8 \
  judge.replay_per_verdict=4 run.iterations=1 >/dev/null 2>"$tmp/w.err" || fail "a report that cannot be written failed the run"
grep -q "WARN.*report.html not written\|warning.*report.html not written\|report.html not written" "$tmp/w.err" \
  || fail "no warning for the unwritable report: $(grep -i report "$tmp/w.err")"
[ -f "$tmp/runs/w/summary.json" ] || fail "run w did not finish"

# 4. an SFT run folder: its loss, lr and throughput charts, no iteration charts
"$srlm" task sft-data --seed 3 --instructions 40 --judge 0 --out "$tmp/sft.jsonl" 2>/dev/null || fail "task sft-data"
"$srlm" sft -c configs/sft-tiny.yaml run.out_dir="$tmp/runs" run.name=sft data.sft="$tmp/sft.jsonl" train.epochs=2 \
  train.log_every=1 >/dev/null 2>"$tmp/sft.err" || { fail "sft exited non-zero"; tail -5 "$tmp/sft.err" >&2; }
expect_rc 0 "srlm report on an SFT run" "$srlm" report "$tmp/runs/sft"
python3 - "$tmp/runs/sft/report.html" "$tmp/runs/sft/metrics.jsonl" <<'PY' || fail "SFT report"
import re, sys
html, n = open(sys.argv[1]).read(), sum(1 for _ in open(sys.argv[2]))
figs = re.findall(r'<figure class="chart" id="(chart-[a-z_]+)">(.*?)</figure>', html, re.S)
ids = [f for f, _ in figs]
if ids != ["chart-sft_loss", "chart-sft_lr", "chart-sft_throughput"]: sys.exit("SFT charts %s" % ids)
for f, body in figs:
    if body.count('<circle class="pt"') != n: sys.exit("%s: %d points, %d metrics lines" % (f, body.count('<circle class="pt"'), n))
PY

# 5. errors
expect_rc 2 "no run folder argument" "$srlm" report
expect_err "a run folder is required"
expect_rc 2 "two folders" "$srlm" report "$run" "$run"
expect_rc 1 "missing folder" "$srlm" report "$tmp/nope"
expect_err "$tmp/nope: no such run folder"
rm -rf "$tmp/empty" && mkdir -p "$tmp/empty"
expect_rc 1 "folder without metrics" "$srlm" report "$tmp/empty"
expect_err "$tmp/empty/metrics.jsonl: missing"
: >"$tmp/empty/metrics.jsonl"
expect_rc 1 "empty metrics.jsonl" "$srlm" report "$tmp/empty"
expect_err "$tmp/empty/metrics.jsonl: no metrics yet"
head -2 "$run/metrics.jsonl" >"$tmp/empty/metrics.jsonl"
echo '{"event":"learn","iteration":1,' >>"$tmp/empty/metrics.jsonl"
expect_rc 1 "bad JSON on line 3" "$srlm" report "$tmp/empty"
expect_err "$tmp/empty/metrics.jsonl:3:"
head -2 "$run/metrics.jsonl" >"$tmp/empty/metrics.jsonl"
echo '[1, 2]' >>"$tmp/empty/metrics.jsonl"
expect_rc 1 "a non-object line 3" "$srlm" report "$tmp/empty"
expect_err "$tmp/empty/metrics.jsonl:3: expected a JSON object, got an array"
[ -e "$tmp/empty/report.html" ] && fail "a failed report left report.html"
ls "$tmp/empty" | grep -q '\.tmp\.' && fail "a failed report left a temporary file"

[ $fails -eq 0 ] && echo "report: all checks passed" || echo "report: $fails failures"
[ $fails -eq 0 ]
