"""The reports a person reads after a run: scorecard.md (every model side by side) and loss.png.

    write_scorecard([("base", base), ("stage 1", s1), ("stage 2", s2)], "scorecard.md")
    plot_losses([("stage 1", train_reports, val_reports), ...], "loss.png")

A model's results are {split name: eval result} (generation.score_conversations's output), or one eval
result, taken as the split "test". Each split gets a table whose columns are the models scored on it.
"""

from pathlib import Path

from synthia.scorecard import bfcl_card
from synthia.scorecard.bfcl_judge import wilson

REGRESSION_POINTS = 2.0  # a drop of more than this many percentage points from one column to the next is flagged
EXPORT_PREFIX = "GGUF "  # columns of exported files: compared with the last MLX column's 95% interval instead
RATES = ("valid", "names", "exact", "schema_ok", "unknown_tool", "truncated")
LOWER_IS_BETTER = {"unknown_tool", "truncated"}
GROUPS = (("overall", "all turns"), ("parallel", "parallel-call turns"), ("text", "text turns"))
LIMITS = (("conversations", "conversations"), ("turns_scored", "turns scored"),
          ("skipped_prompt_too_long", "turns skipped: prompt too long"), ("prompts_cut", "prompts cut to fit"),
          ("truncated", "outputs cut by the token cap"))


def by_split(results):
    return {"test": results} if "metrics" in results else results


def group_summaries(metrics):
    """[(row group label, summary)] in scorecard order: overall, parallel, text, then each category."""
    rows = [(label, metrics[key]) for key, label in GROUPS]
    return rows + [(f"category {name}", summary) for name, summary in sorted(metrics["per_category"].items())]


def metric_points(metrics):
    """{(group label, metric): (points or None, "count/total")} for one eval result."""
    cells = {}
    for label, summary in group_summaries(metrics):
        for name in RATES:
            r = summary[name]
            cells[(label, name)] = (None if r["rate"] is None else 100 * r["rate"], f"{r['count']}/{r['total']}")
        cells[(label, "calls emitted/expected")] = (None, f"{summary['calls_emitted']}/{summary['calls_expected']}")
    return cells


def worsening(metric, before, after):
    """How many points `after` is worse than `before` (positive = worse)."""
    return (after - before) if metric in LOWER_IS_BETTER else (before - after)


def regressions(labels, cells_by_label):
    """[(row, from label, to label, before, after)] for each step between neighbouring columns that worsens a
    rate by more than REGRESSION_POINTS."""
    found = []
    rows = dict.fromkeys(row for label in labels for row in cells_by_label[label])
    for row in rows:
        present = [(lb, cells_by_label[lb][row][0]) for lb in labels
                   if row in cells_by_label[lb] and cells_by_label[lb][row][0] is not None]
        for (a, before), (b, after) in zip(present, present[1:]):
            if worsening(row[1], before, after) > REGRESSION_POINTS:
                found.append((row, a, b, before, after))
    return found


def is_export(label):
    return label.startswith(EXPORT_PREFIX)


def outside(points, low, high):
    """A rate in points outside an interval given as shares (with a little room for rounding)."""
    return not 100 * low - 1e-9 <= points <= 100 * high + 1e-9


def export_differences(labels, cells):
    """[(row, MLX label, export label, MLX points, export points)]: each exported file's rate that lies outside the
    95% interval (Wilson) of the last MLX column's rate on the same turns."""
    mlx = [lb for lb in labels if not is_export(lb)]
    found = []
    for label in [lb for lb in labels if is_export(lb)] if mlx else []:
        for row, (points, _) in cells[label].items():
            reference, counts = cells[mlx[-1]].get(row, (None, ""))
            if points is None or reference is None:
                continue
            count, total = map(int, counts.split("/"))
            if outside(points, *wilson(count / total, total)):
                found.append((row, mlx[-1], label, reference, points))
    return found


def cell_text(points, counts, mark=""):
    if points is None:
        return counts if "/" in counts and not counts.endswith("/0") else "–"
    return f"{points:.1f}% ({counts})" + mark


def limits_table(labels, results_by_label):
    lines = ["| limit | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
    for key, text in LIMITS:
        lines.append(f"| {text} | " + " | ".join(str(results_by_label[lb]["counts"].get(key, "–")) for lb in labels)
                     + " |")
    for key in ("max_new_tokens", "max_prompt_tokens", "limit"):
        lines.append(f"| {key} | " + " | ".join(str(results_by_label[lb]["settings"].get(key)) for lb in labels)
                     + " |")
    return lines


def split_section(split, labels, results_by_label):
    """The markdown table of one split, its regressions between MLX columns and the exported files' differences."""
    cells = {lb: metric_points(results_by_label[lb]["metrics"]) for lb in labels}
    found = regressions([lb for lb in labels if not is_export(lb)], cells)
    differs = export_differences(labels, cells)
    marks = {**{(row, b): " ⚠" for row, _, b, _, _ in found}, **{(row, b): " ≠" for row, _, b, _, _ in differs}}
    lines = [f"## {split}", "", "| metric | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
    for row in dict.fromkeys(r for lb in labels for r in cells[lb]):
        group, metric = row
        texts = [cell_text(*cells[lb].get(row, (None, "–")), marks.get((row, lb), "")) for lb in labels]
        lines.append(f"| {group}: {metric} | " + " | ".join(texts) + " |")
    lines += ["", *limits_table(labels, results_by_label), ""]
    return lines, found, differs


def scorecard_markdown(columns, bench_columns=()):
    """scorecard.md for `columns` = [(model label, results)] in stage order (base first), and a BFCL section for
    `bench_columns` = [(model label, BFCL result)] when given."""
    results = [(label, by_split(r)) for label, r in columns if r]
    splits = list(dict.fromkeys(split for _, r in results for split in r))
    lines = ["# Tool-calling scorecard", "",
             "Rates in percent (count/total). valid → names → exact is a funnel; schema_ok is over turns that made "
             f"a call; unknown_tool and truncated are better lower. ⚠ marks a change for the worse of more than "
             f"{REGRESSION_POINTS:g} points from the column before: a possible regression.", ""]
    all_found, all_differs = [], []
    for split in splits:
        labels = [label for label, r in results if split in r]
        section, found, differs = split_section(split, labels, {label: r[split] for label, r in results if split in r})
        lines += section
        all_found += [(split, *f) for f in found]
        all_differs += [(split, *d) for d in differs]
    if bench_columns:
        section, found, differs = bfcl_card.bfcl_section(list(bench_columns), REGRESSION_POINTS, is_export)
        lines += section
        all_found += [("BFCL", (name, bfcl_card.METRIC), *rest) for name, *rest in found]
        all_differs += [("BFCL", (name, bfcl_card.METRIC), *rest) for name, *rest in differs]
    lines += ["## Possible regressions", ""]
    lines += [f"- {split}, {group}: {metric} {a} {before:.1f}% → {b} {after:.1f}%"
              f" ({worsening(metric, before, after):.1f} points worse)"
              for split, (group, metric), a, b, before, after in all_found] or ["none"]
    if any(is_export(label) for label, _ in [*columns, *bench_columns]):
        lines += ["", "## The GGUF files against the MLX model", "",
                  "≠ marks a rate of an exported file outside the 95% interval of the MLX model's rate on the same "
                  "prompts.", ""]
        lines += [f"- {split}, {group}: {metric} {mlx} {before:.1f}% → {label} {after:.1f}%"
                  for split, (group, metric), mlx, label, before, after in all_differs] or \
                 ["no difference beyond the interval"]
    return "\n".join(lines) + "\n"


def write_scorecard(columns, path, bench_columns=()):
    text = scorecard_markdown(columns, bench_columns)
    Path(path).write_text(text, encoding="utf-8")
    return text


def stage_length(train_reports, val_reports):
    return max((r["iteration"] for r in [*train_reports, *val_reports]), default=0)


def plot_losses(stages, path):
    """loss.png: train and valid loss of every stage on one chart, stages laid end to end and their boundaries
    marked. `stages` = [(label, [{"iteration", "train_loss"}], [{"iteration", "val_loss"}])]."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 5), dpi=110)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    offset = 0
    for k, (label, train, val) in enumerate(stages):
        color = f"C{k}"
        if k:
            axes.axvline(offset, color="grey", linestyle=":", linewidth=1)
        axes.text(offset, 1.01, f" {label}", transform=axes.get_xaxis_transform(), fontsize=9, va="bottom")
        if train:
            axes.plot([offset + r["iteration"] for r in train], [r["train_loss"] for r in train], color=color,
                      linewidth=1.2, label=f"{label} train")
        if val:
            axes.plot([offset + r["iteration"] for r in val], [r["val_loss"] for r in val], color=color,
                      linestyle="--", marker="o", markersize=3, label=f"{label} valid")
        offset += stage_length(train, val)
    axes.set_title("Train and valid loss, all stages", pad=18)
    axes.set_xlabel("iteration (stages end to end)")
    axes.set_ylabel("loss")
    axes.grid(alpha=0.3)
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, format="png")
    return Path(path)
