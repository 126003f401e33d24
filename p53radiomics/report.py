"""A self-contained HTML report of a study run: tables and figures in one file, readable offline.

Only the HTML: the tables and figures it shows are made by :mod:`p53radiomics.study`.
"""

import base64
import html
from pathlib import Path

import pandas as pd

__all__ = ["write_report"]

_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1100px;
       color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; font-size: .85em; margin: .5em 0 1em; }
th, td { border: 1px solid #ddd; padding: .25em .6em; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
figure { display: inline-block; margin: .5em 1em 1em 0; max-width: 100%; vertical-align: top; }
figure img { max-width: 520px; width: 100%; } figcaption { font-size: .85em; color: #555; max-width: 520px; }
.note { background: #fff8e1; border-left: 4px solid #f0b400; padding: .5em 1em; }
"""

_SECTIONS = (
    ("table1", "Table 1. Characteristics of the training (TC) and validation (VC) cohorts by P53 status",
     "Mean ± SD or n (%); t-test or Mann-Whitney U for continuous, chi-square or Fisher's exact test for categorical variables."),
    ("table2", "Table 2. Univariable and multivariable logistic regression (training cohort)",
     "Odds ratios with 95% Wald intervals; variables with univariable p < 0.05 enter the multivariable model."),
    ("table3", "Table 3. Multi-channel (MC) deep-learning models", "Threshold chosen on the TC (Youden) and applied to the VC."),
    ("table4", "Table 4. Feature-fusion (FF) deep-learning models", "Threshold chosen on the TC (Youden) and applied to the VC."),
    ("table5", "Table 5. Clinical, radiomics, deep-learning and combined models",
     "AUC with DeLong 95% CI; threshold chosen on the reference cohort (Youden) and applied unchanged to the others. "
     "TC: training cohort; VC: held-out validation cohort; EV (where there is one): external validation cohort, on "
     "scanners absent from the TC and the VC."),
    ("delong", "DeLong tests between the combined model and each single model", "Paired, two-sided."),
    ("harmonisation_effect", "The effect of harmonisation: the radiomics model without and with ComBat",
     "Only the radiomics model is refitted here: the demo's radiomics model (its settings, on the cached features) "
     "fitted on the TC without and with ComBat harmonisation (batch column 'scanner', estimates from the TC's "
     "scanners); the combined model of Table 5 is the demo's, without harmonisation. Rows: no harmonisation; ComBat, "
     "where each external scanner (none of them in the TC) gets the pooled estimates of the TC's scanners; ComBat "
     "adapted to the external scanners from the external patients' features, never their labels "
     "(p53radiomics.harmonization.adapt_to_new_batches; a transductive evaluation: the patients that adapted it are "
     "scored), the VC harmonised as in the row above. AUC with DeLong 95% CI. Between-scanner share: for each "
     "radiomics feature, the share of its variance over the cohort's patients that lies between their scanners "
     "(eta squared: sum over scanners k of n_k (mean_k - mean)^2, divided by the sum over patients i of "
     "(x_i - mean)^2), the median over the features that vary in the cohort, on the features as the model's z-score "
     "step receives them (raw without harmonisation, harmonised with it). Without any scanner effect the share is not 0 "
     "but (k - 1) / (n - 1) on average for k scanners and n patients (the 'by chance' columns), so compare the two. "
     "The pooled estimates apply one affine map to every external scanner, which leaves the external share as it "
     "was raw; adapting removes the external scanners' mean differences on the same patients it is then measured "
     "on, so its share can fall below the chance level."),
    ("harmonisation", "Patients harmonised with pooled ComBat estimates",
     "The radiomics model's ComBat step could not remove these scanners' own effect (the scanner was not in the "
     "training data, or had a single training patient) and applied the training scanners' pooled estimates."),
    ("robustness", "The radiomics model with and without the robustness filter",
     "The radiomics model fitted on the TC with the robustness filter (the features whose ICC over the training "
     "patients' repeated ROIs reaches the threshold) against the same model without it; VC AUC with DeLong 95% CI "
     "and DeLong's paired test between the two."),
)  # fmt: skip
#: Tables written as CSV files but too long for the page: a section of the report summarises them.
_CSV_ONLY = ("reproducibility",)

_DIAGNOSTIC_COLUMNS = [
    "model",
    "cohort",
    "n",
    "accuracy",
    "auc_ci",
    "sensitivity",
    "specificity",
    "threshold",
]


def _table_html(name, table):
    """A table as HTML, after its ``attrs["note"]`` (what it leaves out, and why) where it has one."""
    note = table.attrs.get("note")
    if name in ("table3", "table4", "table5") and set(_DIAGNOSTIC_COLUMNS) <= set(table.columns):
        table = table[_DIAGNOSTIC_COLUMNS].rename(columns={"auc_ci": "AUC (95% CI)"})
    if name == "harmonisation_effect":  # the AUCs as text with their CI, and the shares
        table = table[[c for c in table.columns if c.endswith(("(95% CI)", "share", "chance"))]]
    html_table = table.to_html(float_format=lambda v: f"{v:.3f}", na_rep="", border=0, escape=True)
    return (f'<p class="note">{html.escape(note)}</p>' if note else "") + html_table


def _parts_html(parts):
    """A section's parts as HTML: a paragraph (str), a bullet list (list) or a table (DataFrame)."""
    out = []
    for part in parts:
        if isinstance(part, pd.DataFrame):
            out.append(part.to_html(na_rep="", border=0, escape=True))
        elif isinstance(part, (list, tuple)):
            out.append("<ul>" + "".join(f"<li>{html.escape(str(i))}</li>" for i in part) + "</ul>")
        elif part is not None:
            out.append(f"<p>{html.escape(str(part))}</p>")
    return "".join(out)


def _sections_html(sections):
    """``(heading, parts)`` pairs; a pair whose parts are pairs again is a section of sections."""
    out = []
    for heading, parts in sections:
        out.append(f"<h2>{html.escape(heading)}</h2>")
        for part in parts:
            if isinstance(part, tuple) and len(part) == 2 and isinstance(part[0], str):
                out.append(f"<h3>{html.escape(part[0])}</h3>{_parts_html(part[1])}")
            else:
                out.append(_parts_html([part]))
    return "\n".join(out)


def _image_tag(path):
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(Path(path).stem)}">'


def write_report(
    path,
    *,
    title,
    tables,
    figures,
    profile=None,
    settings=None,
    skipped=None,
    timings=None,
    stages=None,
    sections=(),
):
    """Write the HTML report of a study run.

    Parameters
    ----------
    path : str or os.PathLike
        The ``.html`` file to write.
    title : str
        Heading of the report.
    tables : dict of str to pandas.DataFrame
        Tables by name (``table1`` ... ``table5``, ``delong``, ``robustness``; others are
        appended, but for ``reproducibility``, too long for the page).
    figures : dict of str to (path, caption)
        PNG files, embedded in the page (the report needs no other file).
    profile : Profile, default=None
        The run's settings profile, whose departures from the study are listed.
    settings : dict, default=None
        Other settings to list.
    skipped : pandas.DataFrame, default=None
        Patients left out (index: patient id; ``column``, ``reason``).
    timings : dict of str to float, default=None
        Seconds per stage, shown where `stages` is not given.
    stages : pandas.DataFrame, default=None
        What each stage of the run cost (``run_study``'s ``stages``: one row per stage, its
        ``attrs["n_patients"]`` the run's number of patients), shown as the last table; where
        `settings` has a ``stage_columns`` note, it is written under the table.
    sections : sequence of (str, list), default=()
        Further sections, after the figures: a heading and its parts, each a paragraph (str), a
        bullet list (list of str), a table (DataFrame) or a sub-section (a ``(heading, parts)``
        tuple), e.g. the model card (:func:`~p53radiomics.model_card.model_card_sections`) and
        the reporting checklist.

    Returns
    -------
    path : pathlib.Path

    Examples
    --------
    >>> import tempfile, pathlib, pandas as pd
    >>> from p53radiomics.report import write_report
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "report.html"
    >>> _ = write_report(out, title="Demo", tables={"delong": pd.DataFrame({"z": [1.2]})}, figures={})
    >>> "DeLong tests" in out.read_text()
    True
    """
    path = Path(path)
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>"]  # fmt: skip
    parts.append(
        "<p>Reproduces the analysis of <i>A novel deep learning and radiomics approach based on DCE-MRI for predicting "
        "the P53 mutation status in hepatocellular carcinoma</i> with <code>p53radiomics</code>: a clinical model, a "
        "radiomics model and a CNN model on the arterial, portal venous and delayed phases, fused by logistic regression "
        "on their out-of-fold probabilities.</p>"
    )
    if profile is not None:
        parts.append(f"<div class='note'><b>Profile: {html.escape(profile.name)}.</b>")
        if profile.notes:
            parts.append(" Departures from the study's settings:<ul>")
            parts.extend(f"<li>{html.escape(n)}</li>" for n in profile.notes)
            parts.append("</ul>")
        parts.append(
            f"The deep model of the combined model is fixed beforehand ({html.escape(profile.final_mode.upper())} "
            f"{html.escape(profile.final_backbone)}), not chosen on the validation cohort.</div>"
        )
    if skipped is not None and len(skipped):
        parts.append(f"<h2>Skipped patients ({len(skipped)})</h2>")
        parts.append(skipped.to_html(border=0))
    done = set()
    for name, heading, note in _SECTIONS:
        table = tables.get(name)
        if table is None:
            continue
        done.add(name)
        parts.append(
            f"<h2>{html.escape(heading)}</h2><p>{html.escape(note)}</p>{_table_html(name, table)}"
        )
    for name, table in tables.items():
        if name not in done and name not in _CSV_ONLY and table is not None:
            parts.append(f"<h2>{html.escape(name)}</h2>{_table_html(name, table)}")
    if figures:
        parts.append("<h2>Figures</h2>")
        for _, (file, caption) in figures.items():
            parts.append(
                f"<figure>{_image_tag(file)}<figcaption>{html.escape(caption)}</figcaption></figure>"
            )
    if sections:
        parts.append(_sections_html(sections))
    shown = {k: v for k, v in (settings or {}).items() if k not in ("stages", "stage_columns")}
    if shown:  # the stage table is shown below, as a table
        frame = pd.DataFrame({"value": [str(v) for v in shown.values()]}, index=list(shown))
        parts.append("<h2>Settings</h2>" + frame.to_html(border=0))
    if stages is not None:
        n = stages.attrs.get("n_patients")
        heading = "Run time and memory by stage" + (f" ({n} patients)" if n else "")
        parts.append(f"<h2>{html.escape(heading)}</h2>")
        parts.append(
            stages.to_html(float_format=lambda v: f"{v:.3g}", na_rep="", border=0, escape=True)
        )
        note = (settings or {}).get("stage_columns")
        if note:
            parts.append(f"<p>{html.escape(note)}</p>")
    elif timings:
        frame = pd.DataFrame(
            {"seconds": [round(v, 1) for v in timings.values()]}, index=list(timings)
        )
        parts.append("<h2>Run time</h2>" + frame.to_html(border=0))
    parts.append("</body></html>")
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
