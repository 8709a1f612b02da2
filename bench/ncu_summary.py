#!/usr/bin/env python3
"""One line per profiled kernel launch from Nsight Compute's CSV (ncu --csv --log-file F, the
details page with --metrics: a row per launch and metric; or the raw page: a row per launch):
launch id, kernel, grid and block, and each metric's value under a short name.

  python3 bench/ncu_summary.py NCU.csv...
"""
import csv
import sys

SHORT = {  # the metrics bench/gpu_check.sh asks for, by what they say
    "sm__throughput.avg.pct_of_peak_sustained_elapsed": "sm%",
    "dram__throughput.avg.pct_of_peak_sustained_elapsed": "dram%",
    "gpu__dram_throughput.avg.pct_of_peak_sustained_elapsed": "dram%",
    "sm__warps_active.avg.pct_of_peak_sustained_active": "occupancy%",
    "sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active": "tensor%",
    "sm__inst_executed_pipe_tensor_op_hmma.avg.pct_of_peak_sustained_active": "tensor_inst%",
    "gpu__time_duration.sum": "time",
}


def rows(path):
    """The CSV rows of an ncu log (lines before the header, ==PROF== and the app's, dropped)."""
    with open(path, newline="") as f:
        lines = [ln for ln in f if ln.startswith('"')]
    return list(csv.DictReader(lines))


def launches(path):
    """{id: {"kernel", "grid", "block", metric: value}} in launch order."""
    out = {}
    for r in rows(path):
        i = r.get("ID", "")
        if not i.isdigit():  # the raw page's units row
            continue
        d = out.setdefault(int(i), {"kernel": r.get("Kernel Name", "?"), "grid": r.get("Grid Size", ""),
                                    "block": r.get("Block Size", "")})
        if "Metric Name" in r:
            unit = r.get("Metric Unit", "")
            d[r["Metric Name"]] = r.get("Metric Value", "") + (f" {unit}" if unit and unit != "%" else "")
        else:
            for k, v in r.items():
                if k in SHORT:
                    d[k] = v
    return out


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: ncu_summary.py NCU.csv...")
    for path in sys.argv[1:]:
        try:
            ls = launches(path)
        except OSError as e:
            print(f"{path}: {e}")
            continue
        print(f"== {path}: {len(ls)} launches" + ("" if ls else " (no CSV rows: see the log)"))
        for i, d in sorted(ls.items()):
            vals = "  ".join(f"{SHORT.get(k, k)}={v}" for k, v in d.items() if k not in ("kernel", "grid", "block"))
            print(f"{i:3d} {d['kernel'][:48]:48s} grid {d['grid']:>16s} block {d['block']:>12s}  {vals}")


if __name__ == "__main__":
    main()
