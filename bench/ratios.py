#!/usr/bin/env python3
"""ratios.py - server CPU per round trip relative to ref_epoll, paired by
repetition: for each scenario and server, srv_ns_rt / ref_epoll's srv_ns_rt
in the same repetition, then the median over repetitions.  Pairing cancels
the drift between repetitions that makes medians of raw values noisy.

usage: bench/ratios.py RAW.TXT     (the yardstick's raw.txt, one run per line)
"""
import re
import statistics
import sys


def main(path):
    rows = [dict(re.findall(r"(\w+)=([^ ]+)", line)) for line in open(path)
            if line.startswith("rep=")]
    rows = [r for r in rows if "srv_ns_rt" in r]
    scenarios = list(dict.fromkeys(r["sc"] for r in rows))
    servers = [s for s in dict.fromkeys(r["server"] for r in rows) if s != "epoll"]
    print("| conns:size | " + " | ".join(servers) + " |")
    print("|---|" + "---:|" * len(servers))
    for sc in scenarios:
        cells = []
        for srv in servers:
            ratios = []
            for rep in sorted({r["rep"] for r in rows if r["sc"] == sc}):
                base = [r for r in rows if r["rep"] == rep and r["sc"] == sc and r["server"] == "epoll"]
                mine = [r for r in rows if r["rep"] == rep and r["sc"] == sc and r["server"] == srv]
                if base and mine and float(base[0]["srv_ns_rt"]) > 0:
                    ratios.append(float(mine[0]["srv_ns_rt"]) / float(base[0]["srv_ns_rt"]))
            if ratios:
                cells.append("%.2f (%s)" % (statistics.median(ratios),
                                            " ".join("%.2f" % x for x in ratios)))
            else:
                cells.append("-")
        print("| %s | %s |" % (sc, " | ".join(cells)))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
