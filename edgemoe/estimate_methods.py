"""What each estimate method is, in one sentence: captions and table notes say which methods their
numbers come from (`edgemoe.estimates.describe`), and every method an estimate names must be here."""

METHODS = {
    "block-median": "median over repetitions with a 95% percentile-bootstrap interval",
    "block-ratio": "ratio of the two models' medians over repetitions, 95% percentile-bootstrap interval "
                   "resampling both models' repetitions independently",
    "rounds-median/order-statistic": "median over rounds of each round's median, 95% distribution-free "
                                     "order-statistic interval over rounds (at least 6 rounds for a finite one)",
    "rounds-ratio/order-statistic": "median over rounds of the ratio paired inside each round (round medians), "
                                    "95% distribution-free order-statistic interval over rounds",
    "rounds-median/two-level-bootstrap": "median over rounds of each round's median, 95% two-level bootstrap "
                                         "interval (rounds, then repetitions inside each round)",
    "rounds-ratio/two-level-bootstrap": "median over rounds of the ratio paired inside each round, 95% two-level "
                                        "bootstrap interval (rounds, then repetitions inside each round)",
    "rounds-median/signed-rank": "Hodges-Lehmann estimate over rounds of each round's median (log scale), 95% exact "
                                 "Wilcoxon signed-rank interval over rounds (at least 6 rounds for a finite one)",
    "rounds-ratio/signed-rank": "Hodges-Lehmann estimate (the median of the pairwise means, log scale) of the ratio "
                                "paired inside each round (round medians), 95% exact Wilcoxon signed-rank interval "
                                "over rounds: distribution-free for noise symmetric on the log scale, narrower than "
                                "the order-statistic one (tools/coverage_simulation.py checks it on this VM's noise)",
    "steps-mean": "mean over profiled decode steps with a 95% percentile-bootstrap interval over steps",
    "rounds-index/order-statistic": "total-tracking index (t_M - t_active) / (t_total - t_active) of per-token "
                                    "times t = 1/tok/s, computed inside each round from the round medians of the MoE "
                                    "member and its two dense brackets; median over rounds, 95% distribution-free "
                                    "order-statistic interval over rounds",
    "roofline-efficiency": "median decode tok/s and its interval divided by the bandwidth limit: the device's "
                           "measured read bandwidth over the weight bytes a decode step reads (used experts only "
                           "for an MoE)",
    "runs-pooled-quantile": "percentile of every inter-token gap pooled (prompt cells: gaps between consecutive "
                            "generated tokens' forward passes in llama-cli's timestamped log; profile cells: decode step "
                            "times with node timing on), 95% bootstrap interval resampling whole runs (one run: blocks "
                            "of 8 consecutive steps)",
    "rounds-ratio-change/order-statistic": "change of a pair's ratio from the reference engine to another: each "
                                           "round's ratio (round medians) on one engine over the same round's on the "
                                           "other; median over rounds, 95% order-statistic interval",
    "block-index": "total-tracking index of the three members' medians over repetitions, 95% percentile-bootstrap "
                   "interval resampling each member's repetitions independently",
}


__all__ = ["METHODS"]
