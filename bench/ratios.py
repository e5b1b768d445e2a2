#!/usr/bin/env python3
"""ratios.py - server CPU per round trip relative to ref_epoll, paired by
repetition: for each scenario and server, srv_ns_rt / ref_epoll's srv_ns_rt
in the same repetition, then the median over repetitions.  Pairing cancels
the drift between repetitions that makes medians of raw values noisy.

usage: bench/ratios.py [--base SERVER] RAW.TXT
  RAW.TXT: the yardstick's raw.txt, one run per line.  --base: relative to
  SERVER instead of ref_epoll (weft_base: an earlier build of weft).
"""
import re
import statistics
import sys


def main(path, base="epoll"):
    rows = [dict(re.findall(r"(\w+)=([^ ]+)", line)) for line in open(path)
            if line.startswith("rep=")]
    rows = [r for r in rows if "srv_ns_rt" in r]
    scenarios = list(dict.fromkeys(r["sc"] for r in rows))
    servers = [s for s in dict.fromkeys(r["server"] for r in rows) if s != base]
    print("| conns:size | " + " | ".join(servers) + " |")
    print("|---|" + "---:|" * len(servers))
    for sc in scenarios:
        cells = []
        for srv in servers:
            ratios = []
            for rep in sorted({r["rep"] for r in rows if r["sc"] == sc}):
                ref = [r for r in rows if r["rep"] == rep and r["sc"] == sc and r["server"] == base]
                mine = [r for r in rows if r["rep"] == rep and r["sc"] == sc and r["server"] == srv]
                if ref and mine and float(ref[0]["srv_ns_rt"]) > 0:
                    ratios.append(float(mine[0]["srv_ns_rt"]) / float(ref[0]["srv_ns_rt"]))
            if ratios:
                cells.append("%.2f (%s)" % (statistics.median(ratios),
                                            " ".join("%.2f" % x for x in ratios)))
            else:
                cells.append("-")
        print("| %s | %s |" % (sc, " | ".join(cells)))


if __name__ == "__main__":
    args = sys.argv[1:]
    base = "epoll"
    if len(args) == 3 and args[0] == "--base":
        base, args = args[1], args[2:]
    if len(args) != 1:
        sys.exit(__doc__)
    main(args[0], base)
