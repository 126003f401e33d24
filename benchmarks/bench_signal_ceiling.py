"""The synthetic cohort's class signal in its clinical variables: the AUC that LTD, rim-APHE and
both reach on a very large draw, the ceiling against which Table 5 is read (issue 18, item 2).

The images carry LTD (the tumour's size), rim-APHE (the arterial rim around a darker core) and a
weak texture difference. So a radiomics model that reads the tumour's size is near the LTD-only
AUC, a CNN whose crops are scaled to the tumour (no size) near the rim-APHE-only AUC, and no model
far above the two variables together unless it reads the texture. Only the clinical table is drawn
(no images), with the generator's own function, so the figures are the population's, not a
96-patient validation cohort's (whose AUCs vary by about +-0.05).

    python benchmarks/bench_signal_ceiling.py [--n-patients 200000] [--seed 0]
"""

import argparse

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

# The generator's clinical draw (a benchmark may read the package's private modules, as the tests
# do; no module of the package does).
from p53radiomics.datasets._clinical import STUDY_PREVALENCE, draw_clinical


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-patients", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    X, y = draw_clinical(args.n_patients, rng, STUDY_PREVALENCE)
    y = np.asarray(y)
    both = X[["ltd", "rim_aphe"]].to_numpy(dtype=float)
    fused = LogisticRegression().fit(both, y).predict_proba(both)[:, 1]
    print(f"synthetic clinical draw of {args.n_patients} patients (seed {args.seed}):")
    print(f"  LTD alone                AUC {roc_auc_score(y, X['ltd']):.3f}")
    print(f"  rim-APHE alone           AUC {roc_auc_score(y, X['rim_aphe']):.3f}")
    print(f"  LTD + rim-APHE (logistic) AUC {roc_auc_score(y, fused):.3f}")
    share = X.groupby(y)["rim_aphe"].mean()
    print(f"  rim-APHE in wild type {share[0]:.3f}, in mutated {share[1]:.3f}")


if __name__ == "__main__":
    main()
