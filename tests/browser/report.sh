#!/usr/bin/env bash
# srlm report rendered by headless Chromium (Debian's `chromium`; ctest browser.report,
# registered only where it is installed; launch/install-deps.sh --test installs it):
# the page loads from file:// with no console message at all (no errors, no blocked
# fetches; checked first on a page with a console.error and an exception, which must be
# caught), the rendered DOM has the 10 charts' SVGs with their points, and the screenshot
# shows the charts: their series colours cover far more pixels than the legend swatches
# alone (10 x 100 px blue, 4 x 100 px red).
# usage: bash report.sh SRLM_BIN
set -u
srlm=$1
src=${SRLM_SOURCE_DIR:?}
tmp=${SRLM_TMP:?}
export ASAN_OPTIONS="${ASAN_OPTIONS:-}:detect_leaks=0"
fails=0
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }
chrome=$(command -v chromium || command -v chromium-browser) || { echo "browser.report: no chromium: skipped"; exit 0; }
# root needs --no-sandbox; a fresh profile per call; logging to stderr shows console messages as ":CONSOLE:"
browse() { # OUT_PREFIX URL ARGS...
  local out=$1 url=$2; shift 2
  timeout 120 "$chrome" --headless --no-sandbox --disable-gpu --no-first-run --user-data-dir="$tmp/profile.$$" \
    --enable-logging=stderr --v=0 "$@" "$url" >"$out.out" 2>"$out.err"
}
cd "$src"
rm -rf "$tmp/runs" "$tmp/profile".* && mkdir -p "$tmp/runs"

# the console check catches errors (a page that makes two)
printf '<!DOCTYPE html><html><body><script>console.error("boom"); no_such_function();</script></body></html>\n' >"$tmp/bad.html"
browse "$tmp/bad" "file://$tmp/bad.html" --dump-dom || fail "chromium on bad.html: exit $?"
grep -q ':CONSOLE.*boom' "$tmp/bad.err" && grep -q ':CONSOLE.*no_such_function' "$tmp/bad.err" \
  || fail "the console check does not see a page's console.error and exception: $(grep -v dbus "$tmp/bad.err" | tail -5)"

"$srlm" train -c configs/quickstart.yaml run.out_dir="$tmp/runs" run.name=a model.path= model.arch.hidden_size=32 \
  model.arch.intermediate_size=64 model.arch.num_layers=2 model.arch.num_heads=2 model.arch.max_seq_len=64 \
  roles.colocate=true roles.learners=0 roles.generators=0 roles.judges=0 roles.threads=1 run.iterations=2 \
  task.prompts_per_iteration=16 task.eval_prompts=16 generate.samples_per_prompt=4 judge.replay_per_verdict=4 \
  train.batch_size=4 pairs.min_margin=0 >/dev/null 2>"$tmp/train.err" || { fail "train exited non-zero"; tail -5 "$tmp/train.err" >&2; }
page=$tmp/runs/a/report.html
[ -s "$page" ] || fail "no $page"

browse "$tmp/dom" "file://$page" --dump-dom || fail "chromium --dump-dom: exit $?"
grep ':CONSOLE' "$tmp/dom.err" && fail "console messages while loading the report (above)"
svgs=$(grep -o '<svg' "$tmp/dom.out" | wc -l)
pts=$(grep -o '<circle class="pt"' "$tmp/dom.out" | wc -l)
[ "$svgs" -eq 10 ] || fail "the rendered DOM has $svgs <svg> charts, want 10"
[ "$pts" -ge 30 ] || fail "the rendered DOM has $pts chart points"

browse "$tmp/shot" "file://$page" --screenshot="$tmp/shot.png" --window-size=1280,2400 --hide-scrollbars \
  || fail "chromium --screenshot: exit $?"
grep ':CONSOLE' "$tmp/shot.err" && fail "console messages while taking the screenshot (above)"
if [ -s "$tmp/shot.png" ]; then
  read -r w h nonwhite blue red < <(python3 "$src/tests/browser/png_colors.py" "$tmp/shot.png" 1f77b4 d62728)
  echo "screenshot ${w}x${h}: $nonwhite non-background pixels, $blue series-blue, $red series-red"
  [ "${blue:-0}" -ge 3000 ] && [ "${red:-0}" -ge 1000 ] || fail "the screenshot shows no chart lines (blue $blue, red $red px)"
  [ "${nonwhite:-0}" -ge 100000 ] || fail "the screenshot is nearly blank ($nonwhite non-background pixels)"
else
  fail "no screenshot $tmp/shot.png: $(grep -v dbus "$tmp/shot.err" | tail -3)"
fi
rm -rf "$tmp/profile".*

[ $fails -eq 0 ] && echo "browser.report: all checks passed" || echo "browser.report: $fails failures"
[ $fails -eq 0 ]
