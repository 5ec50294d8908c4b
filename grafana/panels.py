"""Building blocks of the poolwatch dashboards: queries, panels, variables.

The dashboards themselves are in ``dashboards.py`` beside this module. Every query
goes to the Prometheus datasource chosen by the ``datasource`` variable, and every
selector carries the ``job``, ``instance`` and ``pool`` (and ``task``) variables,
which are regexes: multi-value and "All" selections work unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard, prometheus, stat, table, timeseries
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog.variants import Dataquery
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as models
from grafana_foundation_sdk.models import prometheus as prometheus_models

OVERVIEW_UID = "poolwatch-overview"
POOL_UID = "poolwatch-pool"
TAGS = ["poolwatch"]

DATASOURCE = models.DataSourceRef(type_val="prometheus", uid="${datasource}")

# Label selectors shared by the panels. Every variable is a regex (multi-value or "All").
INSTANCES = 'job=~"$job", instance=~"$instance"'
POOLS = f'{INSTANCES}, pool=~"$pool"'
TASKS = f'{POOLS}, task=~"$task"'
FAILED = 'outcome="failed"'
PAUSED = 'state="paused"'

QUANTILES = (0.5, 0.95, 0.99)

# Thresholds drawn on panels; the alerts in deploy/rules/poolwatch-alerts.yml use the same.
SATURATION_WARN = 0.9
FAILURE_RATIO_WARN = 0.05
OLDEST_QUEUED_WARN = 60.0


# --------------------------------------------------------------------------- helpers


def query(expr: str, legend: str = "__auto", ref_id: str = "A") -> prometheus.Dataquery:
    """A range query against the dashboard's Prometheus datasource."""
    return (
        prometheus.Dataquery()
        .expr(expr)
        .legend_format(legend)
        .ref_id(ref_id)
        .range()
        .datasource(DATASOURCE)
    )


def ref_ids(targets: Sequence[prometheus.Dataquery]) -> list[cogbuilder.Builder[Dataquery]]:
    """Give the targets of one panel the ref ids A, B, C, ... in order."""
    return [t.ref_id(chr(ord("A") + i)) for i, t in enumerate(targets)]


def thresholds(*steps: tuple[float | None, str]) -> dashboard.ThresholdsConfig:
    return (
        dashboard.ThresholdsConfig()
        .mode(models.ThresholdsMode.ABSOLUTE)
        .steps([models.Threshold(value=value, color=color) for value, color in steps])
    )


def warn_at(value: float) -> dashboard.ThresholdsConfig:
    return thresholds((None, "green"), (value, "red"))


def pool_link(source: str = "__field.labels") -> dashboard.DashboardLink:
    """A data link to the Pool dashboard, keeping the time range: from a series (its
    labels, ``__field.labels``) or a table row (its cells, ``__data.fields``)."""
    return dashboard.DashboardLink(f"Open pool ${{{source}.pool}} on ${{{source}.instance}}").url(
        f"/d/{POOL_UID}/poolwatch-pool?var-job=${{{source}.job}}"
        f"&var-instance=${{{source}.instance}}&var-pool=${{{source}.pool}}"
        "&${__url_time_range}&${datasource:queryparam}"
    )


def label_table(
    title: str, description: str, expr: str, columns: Sequence[str], *, height: int = 6
) -> table.Panel:
    """A full-width table of the series ``expr`` selects now, one row per series and one
    column per label in ``columns`` (in that order, with job, instance and pool among
    them); each row links to its pool."""
    shown = {name: index for index, name in enumerate(columns)}
    target = query(expr).instant().format(prometheus_models.PromQueryFormat.TABLE)
    return (
        table.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .with_target(target)
        .span(24)
        .height(height)
        .with_transformation(
            models.DataTransformerConfig(
                id_val="organize",
                # Every column but the labels named is left out (Time, Value, __name__...).
                options={"indexByName": shown, "includeByName": dict.fromkeys(shown, True)},
            )
        )
        .data_links([pool_link("__data.fields")])
    )


def graph(
    title: str,
    description: str,
    targets: Sequence[prometheus.Dataquery],
    *,
    unit: str = "short",
    width: int = 12,
    height: int = 8,
    max_value: float | None = None,
    warn: float | None = None,
    link_to_pool: bool = False,
) -> timeseries.Panel:
    """A time series panel; ``warn`` draws a dashed red threshold line."""
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .targets(ref_ids(targets))
        .unit(unit)
        .min(0)
        .span(width)
        .height(height)
        .line_width(1)
        .fill_opacity(10)
        .show_points(common.VisibilityMode.NEVER)
        .legend(
            common_builders.VizLegendOptions()
            .display_mode(common.LegendDisplayMode.TABLE)
            .placement(common.LegendPlacement.BOTTOM)
            .show_legend(True)
            .calcs(["lastNotNull", "max"])
        )
        .tooltip(
            common_builders.VizTooltipOptions()
            .mode(common.TooltipDisplayMode.MULTI)
            .sort(common.SortOrder.DESCENDING)
        )
    )
    if max_value is not None:
        panel = panel.max(max_value)
    if warn is not None:
        panel = panel.thresholds(warn_at(warn)).thresholds_style(
            common_builders.GraphThresholdsStyleConfig().mode(
                common.GraphThresholdsStyleMode.DASHED
            )
        )
    if link_to_pool:
        panel = panel.data_links([pool_link()])
    return panel


def single_stat(
    title: str,
    description: str,
    expr: str,
    *,
    unit: str = "short",
    width: int = 3,
    no_value: str | None = "0",
    warn: float | None = None,
    legend: str = "__auto",
    text_mode: common.BigValueTextMode = common.BigValueTextMode.VALUE,
    mappings: list[models.ValueMapping] | None = None,
) -> stat.Panel:
    """A one-number panel; ``no_value`` is shown when the series does not exist yet."""
    panel = (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .with_target(query(expr, legend))
        .unit(unit)
        .span(width)
        .height(4)
        .graph_mode(common.BigValueGraphMode.AREA)
        .color_mode(common.BigValueColorMode.VALUE)
        .text_mode(text_mode)
        .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .thresholds(warn_at(warn) if warn is not None else thresholds((None, "blue")))
    )
    if no_value is not None:
        panel = panel.no_value(no_value)
    if mappings:
        panel = panel.mappings(mappings)
    return panel


def sel(metric: str, matchers: str = POOLS, extra: str = "") -> str:
    """``metric{matchers, extra}``: a series selector with the dashboard's variables."""
    return f"{metric}{{{matchers}, {extra}}}" if extra else f"{metric}{{{matchers}}}"


def quantiles(buckets: str, legend_prefix: str = "") -> list[prometheus.Dataquery]:
    """One ``histogram_quantile`` query per quantile of QUANTILES over ``buckets``."""
    return [
        query(f"histogram_quantile({q}, {buckets})", f"{legend_prefix}p{round(q * 100)}")
        for q in QUANTILES
    ]


def variables(
    *, pool_multi: bool, with_task: bool
) -> list[cogbuilder.Builder[models.VariableModel]]:
    """The template variables: datasource, job, instance, pool (and task)."""

    def label_values(name: str, label: str, metric: str, *, multi: bool) -> dashboard.QueryVariable:
        variable = (
            dashboard.QueryVariable(name)
            .label(label)
            .datasource(DATASOURCE)
            .query(f"label_values({metric}, {name})")
            .refresh(models.VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(models.VariableSort.ALPHABETICAL_ASC)
            .multi(multi)
            .include_all(multi)
        )
        if multi:
            variable = variable.all_value(".*").current(
                models.VariableOption(selected=True, text="All", value="$__all")
            )
        return variable

    result: list[cogbuilder.Builder[models.VariableModel]] = [
        dashboard.DatasourceVariable("datasource")
        .label("Data source")
        .type("prometheus")
        .current(models.VariableOption(selected=True, text="Prometheus", value="prometheus")),
        label_values("job", "Job", "poolwatch_build_info", multi=True),
        label_values("instance", "Instance", 'poolwatch_build_info{job=~"$job"}', multi=True),
        label_values(
            "pool", "Pool", sel("poolwatch_pool_max_workers", INSTANCES), multi=pool_multi
        ),
    ]
    if with_task:
        result.append(
            label_values("task", "Task", sel("poolwatch_task_run_seconds_count"), multi=True)
        )
    return result


_POOL_SERIES = sel("poolwatch_pool_max_workers")

#: Pool changes marked on every graph, derived from the metrics, so they show whatever
#: made them (the console, the API, ``poolwatch ctl``, a config reload):
#: (name, colour, expression, title). The generator adds each one's Prometheus fields.
CHANGE_ANNOTATIONS = (
    (
        "Resized",
        "blue",
        f"changes({sel('poolwatch_pool_max_workers')}[1m]) > 0",
        "max_workers of {{pool}} changed",
    ),
    (
        "Queue capacity changed",
        "purple",
        f"changes({sel('poolwatch_pool_queue_capacity')}[1m]) > 0",
        "queue_capacity of {{pool}} changed",
    ),
    (
        "Paused or resumed",
        "orange",
        f"changes({sel('poolwatch_pool_state', extra=PAUSED)}[1m]) > 0",
        "{{pool}} paused or resumed",
    ),
    (
        "Pools added or removed",
        "green",
        f"({_POOL_SERIES} unless {_POOL_SERIES} offset 1m)"
        f" or ({_POOL_SERIES} offset 1m unless {_POOL_SERIES})",
        "pool {{pool}} added or removed (config reload, API or ctl)",
    ),
)


def change_annotations() -> list[dashboard.AnnotationQuery]:
    return [
        dashboard.AnnotationQuery()
        .name(name)
        .datasource(DATASOURCE)
        .enable(True)
        .icon_color(colour)
        .expr(expr)
        for name, colour, expr, _ in CHANGE_ANNOTATIONS
    ]


def base(uid: str, title: str, description: str) -> dashboard.Dashboard:
    return (
        dashboard.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(TAGS)
        .editable()
        .timezone("browser")
        .refresh("10s")
        .time("now-30m", "now")
        .tooltip(models.DashboardCursorSync.CROSSHAIR)
        .annotations(change_annotations())
        .link(
            dashboard.DashboardLink("poolwatch dashboards")
            .type(models.DashboardLinkType.DASHBOARDS)
            .tags(TAGS)
            .as_dropdown(True)
            .include_vars(True)
            .keep_time(True)
        )
    )
