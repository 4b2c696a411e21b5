//! The observability and deployment kit against the real binary and a real PostgreSQL:
//! - every metric a rule of `deploy/prometheus/alerts.yaml` or a panel of
//!   `deploy/grafana/mpp-cancel.json` names is served by `/metrics` once a few cancels went
//!   through (metrics of other exporters are exempt by name, [`EXPORTER_METRICS`]);
//! - every alert follows the conventions and has its runbook;
//! - the PostgreSQL-side query behind MppCancelSyncStandbyMissing runs on a primary;
//! - `mpp_cancel_ready` and `mpp_cancel_oldest_open_age_seconds` say what they mean;
//! - `mpp-cancel health` exits 0 or 1 as the internal listener answers.

mod common;

use common::{ACQUIRER_ID, PSP_ID, ServiceProcess, fresh_database, run_cli};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;

/// Metrics a rule or panel may name that this service does not serve: `up` (made by Prometheus
/// for every scrape) and postgres_exporter's `pg_sync_replication_standbys`
/// (deploy/prometheus/postgres-exporter-queries.yaml).
const EXPORTER_METRICS: &[&str] = &["up", "pg_sync_replication_standbys"];

fn repo_file(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

// --- naming metrics in PromQL -------------------------------------------------------------

/// Keywords and aggregation operators (an aggregation may be followed by `by (...)` rather
/// than by its parenthesis).
const KEYWORDS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
    "inf",
    "nan",
];

/// `text` with every `open`..`close` span (nesting counted) replaced by a space.
fn drop_spans(text: &str, open: char, close: char) -> String {
    let mut out = String::with_capacity(text.len());
    let mut depth = 0usize;
    for c in text.chars() {
        if c == open {
            depth += 1;
        } else if c == close && depth > 0 {
            depth -= 1;
            if depth == 0 {
                out.push(' ');
            }
        } else if depth == 0 {
            out.push(c);
        }
    }
    out
}

/// `text` without string literals ("...", '...', `...`, escapes honoured).
fn drop_strings(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if matches!(c, '"' | '\'' | '`') {
            while let Some(d) = chars.next() {
                if d == '\\' {
                    chars.next();
                } else if d == c {
                    break;
                }
            }
            out.push(' ');
        } else {
            out.push(c);
        }
    }
    out
}

/// The metric names a PromQL expression reads: identifiers that are not functions (followed by
/// `(`), keywords, label names (inside `{}`, or the lists after by/without/on/ignoring/
/// group_left/group_right), durations or Grafana variables.
fn metric_names(promql: &str) -> BTreeSet<String> {
    let text = drop_strings(promql);
    let text = drop_spans(&text, '{', '}');
    let text = drop_spans(&text, '[', ']');
    let chars: Vec<char> = text.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    let mut skip_label_list = false;
    while i < chars.len() {
        let c = chars[i];
        if c == '$' {
            // A Grafana variable ($x, ${x}: braces already gone).
            i += 1;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit()))
        {
            // A number or a duration (5m, 1h30m, 0.99, 1e3).
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut j = i;
            while j < chars.len() && chars[j].is_whitespace() {
                j += 1;
            }
            let call = chars.get(j) == Some(&'(');
            if matches!(
                word.as_str(),
                "by" | "without" | "on" | "ignoring" | "group_left" | "group_right"
            ) {
                skip_label_list = call;
            } else if !call && !KEYWORDS.contains(&word.as_str()) {
                names.insert(word);
            }
        } else if c == '(' && skip_label_list {
            // The label list of a grouping or matching clause: skip to its ')'.
            skip_label_list = false;
            while i < chars.len() && chars[i] != ')' {
                i += 1;
            }
            i += 1;
        } else {
            i += 1;
        }
    }
    names
}

#[test]
fn metric_names_skip_functions_labels_keywords_strings_and_durations() {
    let names = metric_names(
        r#"histogram_quantile(0.99, sum by (le, call) (rate(a_bucket{call=~"x(y)", job!="z"}[5m])))
           / on (job) group_left (team) b offset 1h30m > bool 0.5
           and sum(c_total) without(instance) unless max(rate(d:ratio[$__rate_interval] offset 5m))
           or e{instance=~"$instance"} * -1e3 + inf"#,
    );
    let expected: BTreeSet<String> = ["a_bucket", "b", "c_total", "d:ratio", "e"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(names, expected);
}

/// Every PromQL expression of the alert rules, with the alert's name.
fn rule_expressions() -> Vec<(String, String)> {
    let rules: serde_norway::Value =
        serde_norway::from_str(&repo_file("deploy/prometheus/alerts.yaml")).unwrap();
    let mut out = Vec::new();
    for group in rules["groups"].as_sequence().unwrap() {
        for rule in group["rules"].as_sequence().unwrap() {
            let name = rule["alert"]
                .as_str()
                .or(rule["record"].as_str())
                .unwrap()
                .to_owned();
            out.push((name, rule["expr"].as_str().unwrap().to_owned()));
        }
    }
    out
}

/// Every PromQL expression of the dashboard: panel targets (rows included) and the metric
/// inside each `label_values(...)` variable query.
fn dashboard_expressions() -> Vec<(String, String)> {
    let dashboard: Value =
        serde_json::from_str(&repo_file("deploy/grafana/mpp-cancel.json")).unwrap();
    let mut out = Vec::new();
    fn panels(list: &Value, out: &mut Vec<(String, String)>) {
        for panel in list.as_array().into_iter().flatten() {
            for target in panel["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = target["expr"].as_str() {
                    out.push((
                        panel["title"].as_str().unwrap_or("?").to_owned(),
                        expr.to_owned(),
                    ));
                }
            }
            panels(&panel["panels"], out);
        }
    }
    panels(&dashboard["panels"], &mut out);
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        let query = match &variable["query"] {
            Value::String(q) => q.clone(),
            q => q["query"].as_str().unwrap_or_default().to_owned(),
        };
        if let Some(inner) = query
            .strip_prefix("label_values(")
            .and_then(|q| q.strip_suffix(')'))
        {
            // label_values(metric_or_selector, label) or label_values(label).
            if let Some((selector, _label)) = inner.rsplit_once(',') {
                out.push((
                    format!("variable {}", variable["name"]),
                    selector.to_owned(),
                ));
            }
        }
    }
    out
}

/// The sample names an OpenMetrics exposition offers: those with samples, and those its `TYPE`
/// lines promise (a counter family not yet incremented still names `{name}_total`; a histogram
/// names `_bucket`, `_sum` and `_count`).
fn served_names(exposition: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in exposition.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let (name, kind) = (parts.next().unwrap(), parts.next().unwrap_or(""));
            match kind {
                "counter" => {
                    names.insert(format!("{name}_total"));
                }
                "histogram" => {
                    for suffix in ["_bucket", "_sum", "_count"] {
                        names.insert(format!("{name}{suffix}"));
                    }
                }
                _ => {
                    names.insert(name.to_owned());
                }
            }
        } else if !line.starts_with('#') && !line.is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            names.insert(line[..end].to_owned());
        }
    }
    names
}

fn sample(exposition: &str, name: &str) -> Option<f64> {
    exposition
        .lines()
        .find(|l| l.starts_with(&format!("{name} ")))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

fn demo_env() -> Vec<(&'static str, String)> {
    vec![
        ("APP_ENV", "local".into()),
        ("MPP_CANCEL__WALLET__KIND", "demo".into()),
        ("MPP_CANCEL__WALLET__ALLOW_DEMO", "true".into()),
    ]
}

async fn cancel(service: &ServiceProcess, id: &str) -> String {
    let body =
        serde_json::json!({"acquirerId": ACQUIRER_ID, "pspId": PSP_ID, "paymentRequestId": id});
    reqwest::Client::new()
        .post(service.cancel_url())
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn scrape(service: &ServiceProcess) -> String {
    reqwest::get(format!("{}/metrics", service.internal))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn seed_payment(pool: &sqlx::PgPool, id: &str) {
    sqlx::query(
        "INSERT INTO demo_payments (payment_request_id, payment_id, status, amount_value, currency, created_at)
         VALUES ($1, 'demo-' || $1, 'SUCCESS', 1000, 'JPY', now())",
    )
    .bind(id)
    .execute(pool)
    .await
    .unwrap();
}

#[tokio::test]
async fn every_metric_a_rule_or_a_panel_names_is_served() {
    let (db_url, pool) = fresh_database().await;
    let service = ServiceProcess::start(&db_url, &demo_env());
    service.wait_until_up().await;
    for i in 0..3 {
        let id = format!("kit-{i}");
        seed_payment(&pool, &id).await;
        let answer = cancel(&service, &id).await;
        assert!(answer.contains(r#""resultStatus":"S""#), "{answer}");
    }

    // The refunds done, so the engine's steps are counted too.
    let mut exposition = String::new();
    for _ in 0..100 {
        exposition = scrape(&service).await;
        if exposition.contains("mpp_cancel_refund_engine_steps_total{") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let served = served_names(&exposition);
    assert!(
        exposition
            .contains(r#"mpp_cancel_requests_total{result_code="SUCCESS",result_status="S"} 3"#),
        "{exposition}"
    );

    let expressions: Vec<_> = rule_expressions()
        .into_iter()
        .map(|(n, e)| (format!("rule {n}"), e))
        .chain(
            dashboard_expressions()
                .into_iter()
                .map(|(n, e)| (format!("panel {n}"), e)),
        )
        .collect();
    assert!(
        expressions.len() > 20,
        "rules and panels were read: {expressions:?}"
    );
    let mut named = BTreeSet::new();
    let mut missing = Vec::new();
    for (source, expr) in &expressions {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "{source} names no metric: {expr}");
        for name in names {
            if !served.contains(&name) && !EXPORTER_METRICS.contains(&name.as_str()) {
                missing.push(format!("{source}: {name}"));
            }
            named.insert(name);
        }
    }
    assert!(
        missing.is_empty(),
        "named but not served: {missing:#?}\n{exposition}"
    );
    // The exemptions are used (a stale one would hide nothing), and the kit covers the basics.
    for name in EXPORTER_METRICS {
        assert!(
            named.contains(*name),
            "{name} is exempt but no rule names it"
        );
    }
    for name in [
        "mpp_cancel_requests_total",
        "mpp_cancel_request_duration_seconds_bucket",
        "mpp_cancel_open_cancellations",
        "mpp_cancel_oldest_due_age_seconds",
        "mpp_cancel_wallet_call_errors_total",
        "mpp_cancel_refund_engine_steps_total",
        "mpp_cancel_ready",
    ] {
        assert!(named.contains(name), "no rule or panel uses {name}");
    }
}

#[test]
fn every_alert_is_named_labelled_and_has_its_runbook() {
    let rules: serde_norway::Value =
        serde_norway::from_str(&repo_file("deploy/prometheus/alerts.yaml")).unwrap();
    let tests = repo_file("deploy/prometheus/tests/alerts_test.yaml");
    let mut alerts = 0;
    for group in rules["groups"].as_sequence().unwrap() {
        for rule in group["rules"].as_sequence().unwrap() {
            let Some(name) = rule["alert"].as_str() else {
                continue;
            };
            alerts += 1;
            assert!(
                name.starts_with("MppCancel") && name.chars().all(|c| c.is_ascii_alphanumeric()),
                "{name}: CamelCase with the MppCancel prefix"
            );
            let severity = rule["labels"]["severity"].as_str().unwrap_or_default();
            assert!(
                ["critical", "warning", "info"].contains(&severity),
                "{name}: severity {severity:?}"
            );
            let annotations = &rule["annotations"];
            for key in ["summary", "description"] {
                assert!(
                    annotations[key].as_str().is_some_and(|s| !s.is_empty()),
                    "{name}: no {key}"
                );
            }
            let runbook = annotations["runbook_url"].as_str().unwrap_or_default();
            assert_eq!(
                runbook,
                format!("docs/runbooks/{name}.md"),
                "{name}: runbook_url"
            );
            let page = repo_file(runbook);
            assert!(
                page.starts_with(&format!("# {name}\n")),
                "{runbook}: titled by its alert"
            );
            for section in [
                "**What it means.**",
                "**Where to look.**",
                "**What to do.**",
            ] {
                assert!(page.contains(section), "{runbook}: no {section}");
            }
            // promtool tests it, firing and not firing (deploy/prometheus/tests, run by .ci/run).
            assert!(
                tests.contains(&format!("alertname: {name}\n        exp_alerts: []"))
                    && tests.contains(&format!(
                        "alertname: {name}\n        exp_alerts:\n          - exp_labels"
                    )),
                "{name}: no promtool case where it fires and one where it does not"
            );
        }
    }
    assert!(alerts >= 8, "{alerts} alerts");
}

/// The query postgres_exporter runs for MppCancelSyncStandbyMissing works on a primary: one row,
/// and the test server has no standby, so 0 (the alert's condition).
#[tokio::test]
async fn the_sync_standby_query_runs_on_a_primary() {
    let (_db_url, pool) = fresh_database().await;
    let queries: serde_norway::Value = serde_norway::from_str(&repo_file(
        "deploy/prometheus/postgres-exporter-queries.yaml",
    ))
    .unwrap();
    let query = queries["pg_sync_replication"]["query"].as_str().unwrap();
    let rows: Vec<(i64,)> = sqlx::query_as(sqlx::AssertSqlSafe(query.to_owned()))
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(rows, vec![(0,)]);
    let column = queries["pg_sync_replication"]["metrics"][0]
        .as_mapping()
        .and_then(|m| m.keys().next())
        .and_then(|k| k.as_str())
        .unwrap();
    assert_eq!(
        format!("pg_sync_replication_{column}"),
        "pg_sync_replication_standbys"
    );
}

/// `mpp_cancel_oldest_open_age_seconds` counts from the cancel's arrival for pending work, and
/// `mpp_cancel_ready` follows /readyz, down to the database going away; `mpp-cancel health`
/// answers 0 or 1 accordingly.
#[tokio::test]
async fn readiness_and_pending_age_metrics_and_the_health_command() {
    let (db_url, pool) = fresh_database().await;
    let mut env = demo_env();
    env.push(("MPP_CANCEL__REFUNDS__WORKERS", "0".into()));
    let service = ServiceProcess::start(&db_url, &env);
    service.wait_until_up().await;

    let exposition = scrape(&service).await;
    assert_eq!(
        sample(&exposition, "mpp_cancel_ready"),
        Some(1.0),
        "{exposition}"
    );
    assert_eq!(
        sample(&exposition, "mpp_cancel_oldest_open_age_seconds"),
        Some(0.0),
        "{exposition}"
    );

    // A refund left pending (no workers), received two hours ago.
    seed_payment(&pool, "old-1").await;
    assert!(
        cancel(&service, "old-1")
            .await
            .contains(r#""resultStatus":"S""#)
    );
    sqlx::query("UPDATE cancellations SET requested_at = now() - interval '2 hours' WHERE payment_request_id = 'old-1'")
        .execute(&pool)
        .await
        .unwrap();
    let exposition = scrape(&service).await;
    let age = sample(&exposition, "mpp_cancel_oldest_open_age_seconds").unwrap();
    assert!((7200.0..7300.0).contains(&age), "{age}\n{exposition}");

    let internal_port = service.internal.rsplit(':').next().unwrap().to_owned();
    let health = |args: &[&str], extra: &[(&'static str, String)]| {
        let mut args = args.to_vec();
        args.insert(0, "health");
        run_cli(&args, extra)
    };
    let (ok, stdout, stderr) = health(&["--url", &service.internal], &[]);
    assert!(ok, "{stdout}{stderr}");
    let (ok, stdout, stderr) = health(&["--ready", "--url", &service.internal], &[]);
    assert!(ok && stdout.contains("/readyz: 200"), "{stdout}{stderr}");
    // Without --url: internal.listen from the environment, a wildcard reached through loopback.
    let (ok, stdout, stderr) = health(
        &["--ready"],
        &[(
            "MPP_CANCEL__INTERNAL__LISTEN",
            format!("0.0.0.0:{internal_port}"),
        )],
    );
    assert!(ok, "{stdout}{stderr}");
    // Nothing listening: 1.
    let dead = format!("http://127.0.0.1:{}", common::free_port());
    let (ok, _, stderr) = health(&["--url", &dead], &[]);
    assert!(!ok && stderr.contains("no answer"), "{stderr}");

    // The database goes away: not ready (503, health --ready 1, the gauge 0); alive still.
    let name = db_url
        .split('?')
        .next()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    let admin = std::env::var("DATABASE_URL").unwrap();
    let admin = sqlx::PgPool::connect(&admin).await.unwrap();
    pool.close().await;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        r#"DROP DATABASE "{name}" WITH (FORCE)"#
    )))
    .execute(&admin)
    .await
    .unwrap();
    let (ok, _, stderr) = health(&["--ready", "--url", &service.internal], &[]);
    assert!(!ok && stderr.contains("503"), "{stderr}");
    let (ok, stdout, stderr) = health(&["--url", &service.internal], &[]);
    assert!(ok, "the process is alive: {stdout}{stderr}");
    let exposition = scrape(&service).await;
    assert_eq!(
        sample(&exposition, "mpp_cancel_ready"),
        Some(0.0),
        "{exposition}"
    );
}
