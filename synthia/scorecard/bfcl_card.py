"""BFCL in the reports: the scorecard's BFCL section (per category and summary group, a column per model) and
bfcl.png (each category's rate per model, with its 95% interval).

`columns` = [(model label, BFCL result)], a result as bfcl_score.score_bfcl returns it, in stage order (base first).
"""

from pathlib import Path

METRIC = "pass"  # the name regressions are reported under


def cell(row):
    return f"{100 * row['rate']:.1f}% [{100 * row['low']:.0f}–{100 * row['high']:.0f}] ({row['passed']}/{row['n']})"


def rows_by_name(result):
    """{row key: row}; a group's key is marked, since the group "irrelevance" shares its name with a category."""
    return {row_key(row): row for row in result["rows"]}


def row_key(row):
    return f"{row['name']} (group)" if row["combine"] else row["name"]


def row_label(row, sizes):
    if row["combine"]:
        return f"**{row['name']}** ({row['combine']})"
    return f"{row['name']} (of {sizes.get(row['name'], '?')})"


def regressions(labels, rows, threshold):
    """[(row name, from label, to label, before, after)]: drops of more than `threshold` points between columns."""
    found = []
    names = dict.fromkeys(name for label in labels for name in rows[label])
    for name in names:
        present = [(label, 100 * rows[label][name]["rate"]) for label in labels if name in rows[label]]
        found += [(name, a, b, before, after) for (a, before), (b, after) in zip(present, present[1:])
                  if before - after > threshold]
    return found


def export_differences(labels, rows, is_export):
    """[(row name, MLX label, export label, MLX points, export points)]: exported files' rates outside the 95%
    interval of the last MLX column's rate."""
    mlx = [label for label in labels if not is_export(label)]
    found = []
    for label in [lb for lb in labels if is_export(lb)] if mlx else []:
        for name, row in rows[label].items():
            reference = rows[mlx[-1]].get(name)
            if reference and not reference["low"] - 1e-9 <= row["rate"] <= reference["high"] + 1e-9:
                found.append((name, mlx[-1], label, 100 * reference["rate"], 100 * row["rate"]))
    return found


def bfcl_section(columns, threshold, is_export=lambda label: False):
    """(markdown lines, regressions as (row name, from, to, before, after), exported files' differences as
    (row name, MLX label, export label, before, after)) of the scorecard's BFCL section."""
    labels = [label for label, _ in columns]
    rows = {label: rows_by_name(result) for label, result in columns}
    sizes = {**columns[0][1]["sizes"]}
    found = regressions([label for label in labels if not is_export(label)], rows, threshold)
    differs = export_differences(labels, rows, is_export)
    marks = {**{(name, b): " ⚠" for name, _, b, _, _ in found}, **{(name, b): " ≠" for name, _, b, _, _ in differs}}
    settings = columns[0][1]["settings"]
    limit = "all" if settings["limit"] is None else settings["limit"]
    lines = ["## BFCL (Berkeley Function Calling Leaderboard)", "",
             f"bfcl-eval {settings['bfcl_eval']}, {limit} entries per category (the same for every model), greedy, "
             f"at most {settings['max_new_tokens']} new tokens; pass rate [95% interval] (passed/entries). Groups as "
             "BFCL's summary: mean = unweighted mean of its categories, weighted = by the categories' full sizes. "
             f"Left out: {settings['left_out']}.", "",
             "| category | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
    for name in dict.fromkeys(name for label in labels for name in rows[label]):
        first = next(rows[label][name] for label in labels if name in rows[label])
        texts = [cell(rows[label][name]) + marks.get((name, label), "") if name in rows[label] else "–"
                 for label in labels]
        lines.append(f"| {row_label(first, sizes)} | " + " | ".join(texts) + " |")
    return lines + [""], found, differs


def plot_bfcl(columns, path):
    """bfcl.png: one group of bars per category (and summary group), a bar per model, whiskers at the interval."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = list(dict.fromkeys(row_key(row) for _, result in columns for row in result["rows"]))
    figure = Figure(figsize=(max(8, 0.9 * len(names) * max(1, len(columns)) / 2), 5), dpi=110)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    width = 0.8 / len(columns)
    for k, (label, result) in enumerate(columns):
        rows = rows_by_name(result)
        xs = [i + (k - (len(columns) - 1) / 2) * width for i, name in enumerate(names) if name in rows]
        present = [rows[name] for name in names if name in rows]
        rates = [100 * r["rate"] for r in present]
        errors = [[rate - 100 * r["low"] for rate, r in zip(rates, present)],
                  [100 * r["high"] - rate for rate, r in zip(rates, present)]]
        axes.bar(xs, rates, width, yerr=errors, capsize=2, label=label, color=f"C{k}", error_kw={"linewidth": 0.8})
    axes.set_xticks(range(len(names)), names, rotation=35, ha="right", fontsize=8)
    axes.set_ylim(0, 105)
    axes.set_ylabel("pass rate (%), 95% interval")
    axes.set_title("BFCL per category and summary group")
    axes.grid(axis="y", alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, format="png")
    return Path(path)
