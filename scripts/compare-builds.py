#!/usr/bin/env python3
"""compare.py's workloads for several bench-harness builds and the peers, in one run.

Run from the project root; the peers come from ../shared/peers (compare.py):

    python3 scripts/compare-builds.py before=/tmp/bh-old,after=target/release/bench-harness
    python3 scripts/compare-builds.py a=BIN,b=BIN pingpong,counting 5

Each round runs every build (in alternating order) and then every peer on each
workload, so that drift of a shared machine hits all of them alike. Prints, per
workload, the best peer's median and each build's median and ratio against it.
"""
import os
import statistics
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "peers"))
import compare  # noqa: E402

PEERS = ["tokio", "actix"]


def main():
    if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help"):
        sys.exit(__doc__)
    builds = dict(pair.split("=", 1) for pair in sys.argv[1].split(","))
    workloads = sys.argv[2].split(",") if len(sys.argv) > 2 else list(compare.PEER_SIZE)
    reps = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    compare.build_peers(PEERS)
    ours = {(w, b): [] for w in workloads for b in builds}
    theirs = {(w, p): [] for w in workloads for p in PEERS}
    for rep in range(reps):
        for w in workloads:
            order = list(builds) if rep % 2 == 0 else list(reversed(builds))
            for b in order:
                ours[(w, b)].append(compare.run_ours(builds[b], w)[0])
            for p in PEERS:
                result = compare.run_peer(p, w)
                if result:
                    theirs[(w, p)].append(result[0])
        print(f"round {rep + 1}/{reps} done", file=sys.stderr, flush=True)
    for w in workloads:
        low = w in compare.LOWER_IS_BETTER
        peers = [(statistics.median(v), p) for (ww, p), v in theirs.items() if ww == w and v]
        if not peers:
            print(f"{w:10} no peer result")
            continue
        peer_median, peer = (min if low else max)(peers)
        print(f"{w:10} best peer {peer} {peer_median:.4g} ({'s' if low else '/s'})")
        for b in builds:
            rounds = ours[(w, b)]
            median = statistics.median(rounds)
            ratio = peer_median / median if low else median / peer_median
            print(f"    {b:10} {median:12.4g}  {ratio:5.2f}x  rounds {[round(r, 4) for r in rounds]}")


if __name__ == "__main__":
    main()
