"""What a network costs: FLOP rules (flops), parameter and FLOP counts (measure), and
latency measured side by side in one interleaved session, stored for reuse (table), timed
by the one interleaved-round timer (rounds, which benchmarks/ uses too). Imports util/
only; models are handed in."""
