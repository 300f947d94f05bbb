#!/usr/bin/env python3
"""Writes the Grafana dashboards in grafana/dashboards/ from this one source.

    python3 grafana/generate.py          # rewrite the JSON files
    python3 grafana/generate.py --check  # exit 1 if they differ from this source

Panels use only built-in types and the current dashboard schema; every query
goes through the ${datasource} variable and the namespace, job and account
filters, so two installs in one Prometheus never merge. An HA pair (two
replicas of one install, other instance or pod) counts once: series are
reduced with max over the replicas (once()) before any sum.
"""
import json
import pathlib
import sys

OUT = pathlib.Path(__file__).parent / "dashboards"
DS = {"type": "prometheus", "uid": "${datasource}"}
ACC = 'namespace=~"$namespace",job=~"$job",account=~"$account"'
# The labels that tell an install's accounts apart; replicas differ in others.
INSTALL = "namespace, job, account"


def once(expr, extra=""):
    """`expr` with an HA pair's replicas reduced to one series (the max):
    what one replica shows."""
    by = INSTALL + (f", {extra}" if extra else "")
    return f"max by ({by}) ({expr})"


def target(expr, legend="", ref="A", instant=False, fmt=None, exemplar=False):
    t = {"datasource": DS, "expr": expr, "legendFormat": legend, "refId": ref, "range": not instant, "instant": instant}
    if fmt:
        t["format"] = fmt
    if exemplar:
        # The job behind a bucket (its job_id), from the exporter's
        # OpenMetrics exemplars; Prometheus needs
        # --enable-feature=exemplar-storage.
        t["exemplar"] = True
    return t


# The histograms whose buckets carry exemplars (job ids).
WITH_EXEMPLARS = ("nexrender_job_render_duration_seconds", "nexrender_job_queue_wait_seconds", "nexrender_job_turnaround_seconds")


def quantiles(metric, by="account"):
    return [
        target(
            f"histogram_quantile({q}, sum by ({by}, le) ({once(f'rate({metric}_bucket{{{ACC}}}[$__rate_interval])', 'le')}))",
            f"{{{{{by}}}}} p{int(float(q) * 100)}",
            ref,
            exemplar=metric in WITH_EXEMPLARS and ref == "A",
        )
        for q, ref in (("0.5", "A"), ("0.9", "B"), ("0.99", "C"))
    ]


def panel(kind, title, description, targets, unit=None, w=12, h=8, **extra):
    p = {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DS,
        "targets": targets,
        "gridPos": {"w": w, "h": h},
        "fieldConfig": {"defaults": {}, "overrides": []},
        "options": {},
    }
    if unit:
        p["fieldConfig"]["defaults"]["unit"] = unit
    if kind == "timeseries":
        p["fieldConfig"]["defaults"]["custom"] = {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10, "spanNulls": False}
        p["options"] = {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True}, "tooltip": {"mode": "multi", "sort": "desc"}}
    if kind in ("stat", "gauge", "bargauge"):
        p["options"] = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}}
    if kind == "heatmap":
        p["options"] = {
            "calculate": False,
            "yAxis": {"unit": unit or "s"},
            "cellGap": 1,
            "color": {"mode": "scheme", "scheme": "Oranges", "steps": 64},
            "tooltip": {"mode": "single", "yHistogram": True},
        }
    for k, v in extra.items():
        if k == "thresholds":
            p["fieldConfig"]["defaults"]["thresholds"] = {"mode": "absolute", "steps": v}
        elif k == "mappings":
            p["fieldConfig"]["defaults"]["mappings"] = v
        elif k == "min":
            p["fieldConfig"]["defaults"]["min"] = v
        elif k == "max":
            p["fieldConfig"]["defaults"]["max"] = v
        else:
            p[k] = v
    return p


def steps(*pairs):
    return [{"color": c, "value": v} for v, c in pairs]


def layout(panels):
    """Left to right, top to bottom, on Grafana's 24-column grid."""
    x = y = row_h = 0
    for i, p in enumerate(panels, start=1):
        g = p["gridPos"]
        if x + g["w"] > 24:
            x, y, row_h = 0, y + row_h, 0
        g["x"], g["y"] = x, y
        x += g["w"]
        row_h = max(row_h, g["h"])
        p["id"] = i
    return panels


def datasource_var():
    return {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus", "current": {}, "hide": 0, "refresh": 1}


def query_var(name, label, query, multi=True):
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DS,
        "query": {"query": query, "refId": f"{name}-var"},
        "definition": query,
        "refresh": 2,
        "multi": multi,
        "includeAll": True,
        "allValue": ".*",
        "current": {},
        "sort": 1,
        "hide": 0,
    }


def install_vars():
    """namespace and job (which install), then account within them."""
    sel = 'namespace=~"$namespace",job=~"$job"'
    return [
        query_var("namespace", "Namespace", "label_values(nexrender_up, namespace)"),
        query_var("job", "Job", 'label_values(nexrender_up{namespace=~"$namespace"}, job)'),
        query_var("account", "Account", f"label_values(nexrender_up{{{sel}}}, account)"),
        {"name": "runbook", "label": "Runbook URL", "type": "textbox", "query": "docs/runbook.md",
         "current": {"text": "docs/runbook.md", "value": "docs/runbook.md"}, "hide": 2,
         "description": "Where docs/runbook.md is hosted (the dashboards' Runbook link)."},
    ]


def dashboard(uid, title, description, panels, variables):
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["nexrender", "render-farm"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "graphTooltip": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": variables},
        "annotations": {"list": []},
        "links": [
            {"type": "dashboards", "tags": ["nexrender"], "asDropdown": False, "includeVars": True, "keepTime": True,
             "title": "Nexrender dashboards", "icon": "external link", "targetBlank": False},
            {"type": "link", "url": "${runbook}", "title": "Runbook (what each alert means)", "icon": "doc", "targetBlank": True,
             "tooltip": "docs/runbook.md; set the runbook variable to where you host it"},
        ],
        "panels": layout(panels),
    }


def overview():
    # Waiting: the Cloud's queued and pending; a self-hosted server's
    # created, queued and picked (the recording rules' backlog).
    waiting = once(f'nexrender_jobs{{{ACC},status=~"queued|pending|created|picked"}}', "status")
    ended = once(f'rate(nexrender_jobs_completed_total{{{ACC},status=~"finished|error"}}[$__rate_interval])', "status")
    errors = once(f'rate(nexrender_jobs_completed_total{{{ACC},status="error"}}[$__rate_interval])')
    ended30 = once(f'rate(nexrender_jobs_completed_total{{{ACC},status=~"finished|error"}}[30m])', "status")
    errors30 = once(f'rate(nexrender_jobs_completed_total{{{ACC},status="error"}}[30m])')
    fresh_age = f"min by ({INSTALL}) (time() - nexrender_exporter_last_poll_success_timestamp_seconds{{{ACC}}})"
    slo = ACC
    # In progress: every status neither waiting nor ended (render:dorender;
    # a self-hosted server's started and render:* stages).
    rendering = once(f'nexrender_jobs{{{ACC},status!~"queued|pending|created|picked|finished|error|manually_cancelled"}}', "status")
    oldest_queued = once(f'time() - nexrender_oldest_job_created_timestamp_seconds{{{ACC},status="queued"}}')
    panels = [
        panel("stat", "Numbers as of", "Age of the freshest replica's last good poll, for the stalest account shown. Every number on this dashboard is at most this old. Over 5 minutes the alerts stop judging the farm (the numbers are frozen) and NexrenderPollStale follows at 15; see Nexrender / Exporter for why.",
              [target(f"max({fresh_age})", "age")], unit="s", w=4, h=4,
              thresholds=steps((None, "green"), (120, "orange"), (300, "red"))),
        panel("stat", "Jobs waiting", "Jobs queued for a worker plus parent jobs pending on their children (a self-hosted server: created, queued, and picked by a worker not started yet), now. A number that keeps rising means the farm is short of workers.",
              [target(f"sum({waiting})", "waiting")], w=4, h=4, thresholds=steps((None, "green"), (50, "orange"), (200, "red"))),
        panel("stat", "Rendering now", "Jobs being worked on now: render:dorender, and a self-hosted server's started and render:* stages. Zero while jobs wait means no worker is picking jobs up (NexrenderThroughputStopped).",
              [target(f"sum({rendering})", "rendering")], w=4, h=4),
        panel("stat", "Oldest queued job age", "How long the oldest queued job has waited. Over 30 minutes fires NexrenderQueueStale.",
              [target(f"max({oldest_queued})", "age")], unit="s", w=4, h=4,
              thresholds=steps((None, "green"), (600, "orange"), (1800, "red"))),
        panel("gauge", "Error ratio (30m)", "Share of jobs that ended in error among those that finished or failed in the last 30 minutes. Cancellations are not failures. Above 10% (with 20+ jobs) fires NexrenderJobErrorRatioHigh.",
              [target(f"sum({errors30}) / sum({ended30})", "error ratio")], unit="percentunit", w=4, h=4, min=0, max=1,
              thresholds=steps((None, "green"), (0.05, "orange"), (0.1, "red"))),
        panel("stat", "Error budget left", "Share of each objective's 30-day error budget left at the last 3 days' rate (1 = all of it; below 0 = overspent). The objectives (99% of ended jobs finish; 95% start within 5 minutes) are set once in the recording rules; needs deploy/prometheus/nexrender.rules.yml loaded.",
              [target(f"min by (slo) (account_slo:nexrender_slo_error_budget_remaining:ratio{{{slo}}})", "{{slo}}")], unit="percentunit", w=4, h=4,
              thresholds=steps((None, "red"), (0, "orange"), (0.25, "green"))),
        panel("bargauge", "Jobs by status now", "Jobs created inside the exporter's window by current status, plus every job that has not ended whatever its age. Undocumented statuses appear under their own name.",
              [target(f"sum by (status) ({once(f'nexrender_jobs{{{ACC}}}', 'status')})", "{{status}}", instant=True)], w=8),
        panel("timeseries", "Jobs by status", "The same counts over time, per account. Finished and error counts follow the window; the waiting and in-progress statuses are the live backlog.",
              [target(once(f"nexrender_jobs{{{ACC}}}", "status"), "{{account}} {{status}}")], w=16),
        panel("timeseries", "Completions per minute", "Jobs reaching finished, error or manually_cancelled per minute, each job counted once. A drop to zero while jobs wait means rendering has stopped.",
              [target(once(f"rate(nexrender_jobs_completed_total{{{ACC}}}[$__rate_interval])", "status") + " * 60", "{{account}} {{status}}")], unit="short"),
        panel("timeseries", "Error ratio", "Share of ended jobs (finished or error) that failed. Spikes point at a broken template, asset or worker.",
              [target(f"sum by ({INSTALL}) ({errors}) / sum by ({INSTALL}) ({ended})", "{{account}}")],
              unit="percentunit", min=0),
        panel("timeseries", "Error budget burn rate", "Each objective's bad share over the last hour divided by its error budget (recording rules). 1 spends the month's budget in a month; 14.4 over an hour (and 5 minutes) pages (NexrenderErrorBudgetBurnFast); 6 over 6 hours is a ticket.",
              [target(f"account_slo:nexrender_slo_errors:ratio_rate1h{{{slo}}} / on (slo) group_left () (1 - nexrender:slo_objective:ratio)", "{{account}} {{slo}}")],
              min=0, thresholds=steps((None, "green"), (6, "orange"), (14.4, "red"))),
        panel("timeseries", "Backlog (jobs waiting)", "Jobs waiting for a worker, per account (a self-hosted server's created, queued and picked). A steady climb fires NexrenderBacklogGrowing.",
              [target(f"sum by ({INSTALL}) ({waiting})", "{{account}}")], w=8),
        panel("timeseries", "Oldest job age by status", "Age (since creation) of the oldest job in each non-terminal status. Queued ages show waiting time (NexrenderQueueStale).",
              [target(once(f"time() - nexrender_oldest_job_created_timestamp_seconds{{{ACC}}}", "status"), "{{account}} {{status}}")], unit="s", w=8),
        panel("timeseries", "Longest-running job by status", "How long the longest-running job in each status of a job in progress has been at it, since its startedAt (not its creation: time spent queued does not count). A render:dorender line past 3 hours fires NexrenderJobStuckRendering.",
              [target(once(f"time() - nexrender_oldest_job_started_timestamp_seconds{{{ACC}}}", "status"), "{{account}} {{status}}")], unit="s", w=8),
        panel("timeseries", "Stale jobs (self-hosted servers)", "Jobs of a self-hosted server (kind: server) whose updatedAt has not moved for the account's stale_after, by state: a worker died holding them, and the server never times them out. Any line above 0 in picked, started or a render:* stage for 10 minutes fires NexrenderJobsStale. Empty for Cloud accounts.",
              [target(once(f"nexrender_jobs_stale{{{ACC}}}", "status") + " > 0", "{{account}} {{status}}")], w=24),
        panel("timeseries", "Queue wait p50 / p90 / p99", "Time from job creation to render start, for jobs the exporter saw start. Rising percentiles mean jobs wait longer for workers. Dots are exemplars: a recent job of each bucket by its job_id, linked to the job where the data source's exemplar link is set (grafana/provisioning).",
              quantiles("nexrender_job_queue_wait_seconds"), unit="s"),
        panel("timeseries", "Render duration p50 / p90 / p99", "stats.renderDuration of finished jobs. A p90 far above its usual level fires NexrenderRenderDurationHigh. Dots are exemplars: a recent job of each bucket by its job_id, linked to the job where the data source's exemplar link is set (grafana/provisioning).",
              quantiles("nexrender_job_render_duration_seconds"), unit="s"),
        panel("timeseries", "Turnaround p50 / p90 / p99", "Time from job creation to its end (finishedAt, else errorAt): the wait a customer feels, queue and render together, for jobs the exporter saw end. Dots are exemplars: a recent job of each bucket by its job_id, linked to the job where the data source's exemplar link is set (grafana/provisioning).",
              quantiles("nexrender_job_turnaround_seconds"), unit="s", w=24),
        panel("heatmap", "Queue wait distribution", "Jobs per second that waited up to each bucket's bound before rendering, per time slice (a rate, so zooming does not change it). Bright cells high up are long waits. Dots are exemplars: a recent job of each bucket by its job_id, linked to the job where the data source's exemplar link is set (grafana/provisioning).",
              [target(f"sum by (le) ({once(f'rate(nexrender_job_queue_wait_seconds_bucket{{{ACC}}}[$__rate_interval])', 'le')})", "{{le}}", fmt="heatmap", exemplar=True)], unit="s"),
        panel("heatmap", "Render duration distribution", "Jobs per second that rendered up to each bucket's bound, per time slice. A band moving up means renders got slower. Dots are exemplars: a recent job of each bucket by its job_id, linked to the job where the data source's exemplar link is set (grafana/provisioning).",
              [target(f"sum by (le) ({once(f'rate(nexrender_job_render_duration_seconds_bucket{{{ACC}}}[$__rate_interval])', 'le')})", "{{le}}", fmt="heatmap", exemplar=True)], unit="s"),
        panel("table", "Jobs per account and status", "Current job counts per account and status, as a table.",
              [target(once(f"nexrender_jobs{{{ACC}}}", "status"), "", instant=True, fmt="table")], w=24),
    ]
    return dashboard("nexrender-overview", "Nexrender / Overview",
                     "Render jobs by status, throughput, errors, backlog, queue wait and render duration, per Nexrender account, with how fresh the numbers are and the error budgets. Source: nexrender-exporter.",
                     panels, [datasource_var(), *install_vars()])


def exporter():
    panels = [
        panel("stat", "API reachable", "1 (UP) if the last poll of the account fully succeeded. DOWN means the job numbers are frozen at their last good values; see Poll failures by reason.",
              [target(f"nexrender_up{{{ACC}}}", "{{account}}")], w=8, h=4,
              mappings=[{"type": "value", "options": {"0": {"text": "DOWN", "color": "red"}, "1": {"text": "UP", "color": "green"}}}],
              thresholds=steps((None, "red"), (1, "green"))),
        panel("stat", "Last successful poll", "Time since the last fully successful poll. More than a few poll intervals means the numbers are stale (NexrenderPollStale at 15 minutes).",
              [target(f"time() - nexrender_exporter_last_poll_success_timestamp_seconds{{{ACC}}}", "{{account}}")], unit="s", w=8, h=4,
              thresholds=steps((None, "green"), (300, "orange"), (900, "red"))),
        panel("stat", "Tracked jobs", "Jobs the exporter remembers to count each exactly once. It follows the number of jobs in the window, not uptime; steady growth without more jobs would be a leak.",
              [target(f"nexrender_exporter_tracked_jobs{{{ACC}}}", "{{account}}")], w=8, h=4),
        panel("timeseries", "Poll duration", "Wall time of the last poll cycle. A poll longer than the poll interval delays the next one.",
              [target(f"nexrender_exporter_poll_duration_seconds{{{ACC}}}", "{{account}}")], unit="s"),
        panel("timeseries", "Age of the last successful poll", "Seconds since the last successful poll, over time. A sawtooth up to the poll interval is healthy; a ramp means polls are failing.",
              [target(f"time() - nexrender_exporter_last_poll_success_timestamp_seconds{{{ACC}}}", "{{account}}")], unit="s"),
        panel("timeseries", "API requests by code", "HTTP calls to the Nexrender API per second by endpoint and status code (or timeout, connect, decode). 401/403 mean the token is refused; 429 rate limiting; 5xx trouble at Nexrender.",
              [target(f"sum by (account, endpoint, code) (rate(nexrender_exporter_api_requests_total{{{ACC}}}[$__rate_interval]))", "{{account}} {{endpoint}} {{code}}")], unit="reqps"),
        panel("timeseries", "API traffic", "Bytes per second of API answers the exporter reads, by endpoint: its cost to the API besides the request count. At steady state a poll reads from the oldest running job on, so this follows the jobs started and ended, not the size of the window; the hourly full rescan shows as a spike.",
              [target(f"sum by (account, endpoint) (rate(nexrender_exporter_api_response_bytes_total{{{ACC}}}[$__rate_interval]))", "{{account}} {{endpoint}}")], unit="Bps"),
        panel("timeseries", "API latency p50 / p99", "Duration of calls to the Nexrender API by endpoint. High latency makes polls slow.",
              [target(f"histogram_quantile({q}, sum by (account, endpoint, le) (rate(nexrender_exporter_api_request_duration_seconds_bucket{{{ACC}}}[$__rate_interval])))",
                      f"{{{{account}}}} {{{{endpoint}}}} p{p}", ref) for q, p, ref in (("0.5", 50, "A"), ("0.99", 99, "B"))], unit="s"),
        panel("timeseries", "Poll failures by reason", "Failed polls per minute by reason: unauthorized (token), rate_limited, timeout, connect, server_error, client_error, decode, too_large, transport. All zero is healthy.",
              [target(f"sum by (account, reason) (rate(nexrender_exporter_poll_errors_total{{{ACC}}}[$__rate_interval])) * 60", "{{account}} {{reason}}")]),
        panel("timeseries", "Jobs skipped in API answers", "Jobs per minute the exporter could not use (no id, no status, not an object, the same id twice). Non-zero means the API sent data it should not.",
              [target(f"sum by (account, reason) (rate(nexrender_exporter_jobs_skipped_total{{{ACC}}}[$__rate_interval])) * 60", "{{account}} {{reason}}")]),
        panel("timeseries", "Webhook deliveries by result", "Job webhook deliveries per minute, for accounts with a webhook_secret. accepted: a completion counted the moment it was delivered; duplicate: counted already (by a poll or an earlier delivery; the API retries and may send twice); not_counted: left to the polls (the job ended before the exporter's baseline, or its look-up failed); unknown_job: the account's API does not have the job; unauthorized, bad_request, too_large: refused (check the job's webhook headers and body); queue_full: answered 503, the API retries. No accepted or duplicate while jobs end fires NexrenderWebhookDeliveriesStopped.",
              [target(f"sum by (account, result) (rate(nexrender_exporter_webhook_deliveries_total{{{ACC}}}[$__rate_interval])) * 60", "{{account}} {{result}}")]),
        panel("stat", "Last webhook delivery", "Time since the account's last webhook delivery was counted or judged. Compare with how often jobs end: long silence while jobs end means deliveries do not reach the exporter.",
              [target(f"time() - nexrender_exporter_webhook_last_delivery_timestamp_seconds{{{ACC}}}", "{{account}}")], unit="s", w=12, h=8),
        panel("timeseries", "Exporter memory", "Resident memory of the exporter process, and its cgroup's memory limit where it has one. It should follow the number of tracked jobs, not grow with uptime; over 80% of the limit fires NexrenderExporterMemoryNearLimit.",
              [target('process_resident_memory_bytes{namespace=~"$namespace",job=~"$job"}', "{{instance}}"),
               target('nexrender_exporter_memory_limit_bytes{namespace=~"$namespace",job=~"$job"}', "{{instance}} limit", "B")], unit="bytes"),
        panel("timeseries", "Exporter CPU", "CPU time the exporter uses per second. Near zero between polls; a constant high value means polls are too frequent or the window too large.",
              [target('rate(process_cpu_seconds_total{namespace=~"$namespace",job=~"$job"}[$__rate_interval])', "{{instance}}")], unit="percentunit"),
        panel("table", "Exporter build", "Version and git revision of each running exporter.",
              [target('nexrender_exporter_build_info{namespace=~"$namespace",job=~"$job"}', "", instant=True, fmt="table")], w=12, h=8),
        panel("stat", "Configuration", "Whether each exporter took its last configuration (at start, or the last SIGHUP): Applied, or Rejected when the last reload was refused or partly failed and it runs the one before (NexrenderExporterConfigReloadFailed; its log names the key).",
              [target('nexrender_exporter_config_last_reload_successful{namespace=~"$namespace",job=~"$job"}', "{{instance}}")], w=12, h=8,
              mappings=[{"type": "value", "options": {"0": {"text": "Rejected", "color": "red"}, "1": {"text": "Applied", "color": "green"}}}],
              thresholds=steps((None, "red"), (1, "green"))),
    ]
    return dashboard("nexrender-exporter", "Nexrender / Exporter",
                     "Health of nexrender-exporter itself: API reachability, poll freshness and duration, API requests and latency, failures, resources.",
                     panels, [datasource_var(), *install_vars()])


def templates():
    """By template and by failure reason: the exporter's opt-in breakdowns
    (metrics.templates, metrics.error_reasons). With them off every panel
    here is empty and the other dashboards are as they were."""
    done = f"nexrender_template_jobs_completed_total{{{ACC}}}"
    errors = f'nexrender_template_jobs_completed_total{{{ACC},status="error"}}'
    ended = f'nexrender_template_jobs_completed_total{{{ACC},status=~"finished|error"}}'
    by = "account, template"
    panels = [
        panel("bargauge", "Top templates by errors", "The ten templates with the most jobs ended in error over the dashboard's time range. template=\"other\" sums the templates past the exporter's series budget (metrics.templates.max_per_account); \"none\" is jobs without a template.",
              [target(f"topk(10, sum by ({by}) ({once(f'increase({errors}[$__range])', 'template, template_id')}))", "{{account}} {{template}}", instant=True)], w=8,
              options={"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}, "orientation": "horizontal", "displayMode": "gradient"}),
        panel("timeseries", "Error ratio by template", "Share of each template's ended jobs (finished or error) that failed. One line far above the others, or far above its own past, is a broken template (NexrenderTemplateErrorRatioHigh).",
              [target(f"sum by ({by}) (rate({errors}[$__rate_interval])) / sum by ({by}) (rate({ended}[$__rate_interval]))", "{{account}} {{template}}")],
              unit="percentunit", w=16, min=0),
        panel("timeseries", "Error ratio against its usual level", "Each template's error ratio over 30 minutes divided by its ratio over the last day (recording rules). Above 3 (and over 10% with 20+ jobs) fires NexrenderTemplateErrorRatioHigh.",
              [target(f"account_template:nexrender_template_jobs_error:ratio_rate30m{{{ACC}}} / on (namespace, cluster, job, account, template_id) group_left account_template_id:nexrender_template_jobs_error:ratio_rate1d{{{ACC}}}", "{{account}} {{template}}")],
              w=12, min=0),
        panel("timeseries", "Completions per minute by template", "Jobs of each template reaching finished, error or manually_cancelled per minute.",
              [target(f"sum by ({by}) ({once(f'rate({done}[$__rate_interval])', 'template, template_id, status')}) * 60", "{{account}} {{template}}")], w=12),
        panel("timeseries", "Render duration p90 by template", "90th percentile of stats.renderDuration of each template's finished jobs. Templates differ by nature; watch a line moving, not the lines' order.",
              [target(f"histogram_quantile(0.9, sum by ({by}, le) (rate(nexrender_template_render_duration_seconds_bucket{{{ACC}}}[$__rate_interval])))", "{{account}} {{template}} p90")], unit="s"),
        panel("timeseries", "Queue wait p90 by template", "90th percentile of the time each template's jobs waited for a worker.",
              [target(f"histogram_quantile(0.9, sum by ({by}, le) (rate(nexrender_template_queue_wait_seconds_bucket{{{ACC}}}[$__rate_interval])))", "{{account}} {{template}} p90")], unit="s"),
        panel("bargauge", "Why jobs fail", "Jobs ended in error over the dashboard's time range by the reason their stats.error gives (metrics.error_reasons; other: no pattern matched; unknown: no error text was read).",
              [target(f"sort_desc(sum by (account, reason) ({once(f'increase(nexrender_job_errors_total{{{ACC}}}[$__range])', 'reason')}))", "{{account}} {{reason}}", instant=True)], w=8,
              options={"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}, "orientation": "horizontal", "displayMode": "gradient"}),
        panel("timeseries", "Failures by reason", "Jobs ended in error per minute, by reason.",
              [target(f"sum by (account, reason) ({once(f'rate(nexrender_job_errors_total{{{ACC}}}[$__rate_interval])', 'reason')}) * 60", "{{account}} {{reason}}")], w=10),
        panel("stat", "Templates with series of their own", "Templates of the account that have series of their own now, out of metrics.templates.max_per_account; the rest are summed under other.",
              [target(f"nexrender_exporter_templates_with_own_series{{{ACC}}}", "{{account}}")], w=6),
    ]
    return dashboard("nexrender-templates", "Nexrender / Templates",
                     "Which template is failing, and why: completions, error ratio, render time and queue wait by template, and failures by reason. Needs metrics.templates (and metrics.error_reasons) on the exporter. Source: nexrender-exporter.",
                     panels, [datasource_var(), *install_vars()])


def main():
    check = "--check" in sys.argv
    stale = []
    for name, d in (("nexrender-overview.json", overview()), ("nexrender-exporter.json", exporter()), ("nexrender-templates.json", templates())):
        text = json.dumps(d, indent=2) + "\n"
        path = OUT / name
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path))
        else:
            path.write_text(text)
    if stale:
        print("out of date, run python3 grafana/generate.py:", *stale)
        sys.exit(1)


if __name__ == "__main__":
    main()
