"""Does the pipeline recover the generator's planted basal-ganglia FA and CBF association?

    python benchmarks/lsa_cohort.py OUT [--subjects 60] [--seed 900] [--resolution 3]
        [--nprocs 2] [--lsa-model] [--engine template|physics]

Generates a cohort (one session per subject, research profile: DWI with 31 directions and
PCASL), runs the participant level (``--markers cmb``, the cheapest marker: the maps need the
reference, template registration and atlas, not the markers) and the group level, then
prints, against each subject's planted severity (derivatives/groundtruth/..._desc-tissue_stats
.json; FA x (1 - 0.25 s), CBF x (1 - 0.35 s) in the true basal ganglia), the Spearman
correlation of the measured mean FA and CBF of the six regions, and their difference between
the participants.tsv groups. The planted direction is negative for severity and lower FA and
CBF in the group with the higher burden. It then prints how the measured basal-ganglia CBF
follows each subject's planted mean CBF of the basal ganglia (``BasalGangliaMeanCBF``; Spearman
rho and the median measured/planted ratio). With ``--engine physics`` every subject has its own
protocol, tensors and perfusion (:mod:`csvd_bids.synth.physics_diffusion`,
:mod:`csvd_bids.synth.physics_asl`), so these follow more than the burden. A re-run reuses
OUT's dataset and outputs.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path

import pandas as pd
from common import csvd_bids, synth
from scipy import stats


def planted(bids: Path) -> pd.DataFrame:
    rows = []
    for path in sorted(
        (bids / "derivatives" / "groundtruth").glob("sub-*/anat/*_desc-tissue_stats.json")
    ):
        truth = json.loads(path.read_text())
        rows.append(
            {
                "participant_id": path.name.split("_")[0],
                "severity": truth["Severity"],
                "planted_cbf": truth["ASL"]["BasalGangliaMeanCBF"],
            }
        )
    return pd.DataFrame(rows)


def measured(out: Path) -> pd.DataFrame:
    table = pd.read_csv(out / "group_basalganglia.tsv", sep="\t", na_values="n/a")
    return table.groupby("participant_id")[["fa_mean", "md_mean", "cbf_mean"]].mean().reset_index()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--subjects", type=int, default=60)
    parser.add_argument("--seed", type=int, default=900)
    parser.add_argument("--resolution", type=float, default=3.0)
    parser.add_argument("--nprocs", type=int, default=2)
    parser.add_argument("--lsa-model", action="store_true", help="also run the group model")
    parser.add_argument("--engine", choices=("template", "physics"), default="template")
    args = parser.parse_args()
    bids, out, work = args.out / "bids", args.out / "derivatives", args.out / "work"
    if not bids.exists():
        command = synth(bids, args.subjects, 1, args.seed, args.resolution)
        subprocess.run([*command, "--engine", args.engine], check=True)
    start = time.perf_counter()
    participant = [str(bids), str(out), "participant", "-w", str(work), "--nprocs"]
    participant += [str(args.nprocs), "--markers", "cmb", "--skip-bids-validation"]
    subprocess.run(csvd_bids(*participant), check=False)
    group = [str(bids), str(out), "group", "-w", str(work)]
    group += ["--lsa-model"] if args.lsa_model else []
    subprocess.run(csvd_bids(*group), check=False)
    wall = time.perf_counter() - start
    table = planted(bids).merge(measured(out), on="participant_id")
    groups = pd.read_csv(bids / "participants.tsv", sep="\t")[["participant_id", "group"]]
    table = table.merge(groups, on="participant_id")
    print(f"{len(table)} subjects, participant + group level {wall / 60:.1f} min")
    for column in ("fa_mean", "md_mean", "cbf_mean"):
        ok = table[column].notna()
        rho, p = stats.spearmanr(table.loc[ok, "severity"], table.loc[ok, column])
        means = table[ok].groupby("group")[column].mean()
        by_group = ", ".join(f"{g} {v:.4g}" for g, v in means.items())
        print(
            f"{column}: Spearman rho vs planted severity {rho:+.3f} (p {p:.2g}, "
            f"n {ok.sum()}); by group: {by_group}"
        )

    ok = table["cbf_mean"].notna() & table["planted_cbf"].notna()
    rho, p = stats.spearmanr(table.loc[ok, "planted_cbf"], table.loc[ok, "cbf_mean"])
    ratio = (table.loc[ok, "cbf_mean"] / table.loc[ok, "planted_cbf"]).median()
    print(
        f"cbf_mean vs planted BasalGangliaMeanCBF: Spearman rho {rho:+.3f} (p {p:.2g}, "
        f"n {ok.sum()}); median measured/planted {ratio:.3f}"
    )


if __name__ == "__main__":
    main()
