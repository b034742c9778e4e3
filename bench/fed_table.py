#!/usr/bin/env python3
"""Renders fed_bench's JSON rows (ronghe/fed/bench.h) as the Markdown table of docs/benchmarks.md."""
import json
import sys

rows = json.load(open(sys.argv[1]))
print("`fed_bench` (`ronghe fed bench` for one size): per role, the phases through the scheme")
print("interface on an update of the model's size, each role on all cores as on its own machine:")
print("a participant's seal (mean of five), the coordinator's parse-check-add of five uploads, one")
print("decrypting party's partial decryption with its proof, the coordinator's finish (three proofs")
print("verified, shares combined, the sum unmasked or unpacked and range-checked). Round: a real")
print("federated round of the coordinator and five participants in one process over the in-memory")
print("transport (every message serialised as on gRPC), MLPs on synthetic data, 256 examples and one")
print("local epoch per party, each participant on one thread (five share the cores); the second of two")
print("rounds, or the only one from 1M parameters up. 2048-bit key, 16-bit quantisation;")
print("paillier-masked: N = 2048, q = 2^32, eta = 40.")
print()
print("| params | scheme | seal (s) | accumulate (s) | decrypt per party (s) | finish (s) | round (s) | round vs none | upload (bytes) | upload vs none |")
print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
none = {r["params"]: r for r in rows if r["scheme"] == "none"}
for r in rows:
    base = none.get(r["params"])
    ratio = f"{r['round_s'] / base['round_s']:.1f}x" if base and base["round_s"] > 0 and r["round_s"] >= 0 else "-"
    up = f"{r['upload_bytes'] / base['upload_bytes']:.3f}x" if base else "-"
    rnd = f"{r['round_s']:.2f}" if r["round_s"] >= 0 else "-"
    print(f"| {r['params']:,} | {r['scheme']} | {r['seal_s']:.3f} | {r['accumulate_s']:.3f} | "
          f"{r['decrypt_party_s']:.3f} | {r['finish_s']:.3f} | {rnd} | {ratio} | {r['upload_bytes']:,} | {up} |")
