/* srlm report: RUN_DIR/report.html, one self-contained page about a run (no network,
 * no scripts, no external fonts: HTML + CSS + inline SVG).
 *
 * It reads RUN_DIR/metrics.jsonl (every line must be a JSON object: an error names
 * file:line), RUN_DIR/config.yaml and the last iter_<t>/rollouts.h5 (decoded with the
 * tokenizer files saved in iter_<t>/model or iter_0/model), and shows: line charts per
 * iteration (held-out accuracy, judge agreement, loss, mean judged score, throughput)
 * and per learner step (loss, reward margin, reward accuracy, chosen/rejected lengths,
 * throughput; steps counted across iterations as in the TensorBoard file), SFT charts
 * for an SFT run folder, the per-iteration table, the config, and a few prompts with
 * their best and worst answers and judgments. A chart whose series metrics.jsonl lacks
 * says so in its place. Every text from the run is HTML-escaped.
 * The page is written to report.html.tmp.<pid> and renamed into place.
 */
#ifndef SRLM_REPORT_H
#define SRLM_REPORT_H

#include "srlm/core.h"

/* Prompts shown with their best and worst answers. */
#define SRLM_REPORT_SAMPLES 4

/* Writes run_dir/report.html; *out_path (may be NULL) receives its path (malloc'ed).
 * A missing run folder or metrics.jsonl, a metrics.jsonl without any line, or a line
 * that is not a JSON object is an error naming the file (and line). */
srlm_status srlm_report_write(const char *run_dir, char **out_path);

#endif
