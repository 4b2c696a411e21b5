//! The conformance report: one row per check, PASS, FAIL or SKIP, with the evidence that
//! decided it; printed as a table for people or JSON for pipelines.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Verdict {
    Pass,
    Fail,
    Skip,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "PASS",
            Self::Fail => "FAIL",
            Self::Skip => "SKIP",
        }
    }
}

/// One check's outcome. `check` names the rule (what a FAIL points at).
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub check: String,
    pub verdict: Verdict,
    pub evidence: String,
}

impl Row {
    pub fn pass(check: impl Into<String>, evidence: impl Into<String>) -> Self {
        Self::new(check, Verdict::Pass, evidence)
    }
    pub fn fail(check: impl Into<String>, evidence: impl Into<String>) -> Self {
        Self::new(check, Verdict::Fail, evidence)
    }
    pub fn skip(check: impl Into<String>, evidence: impl Into<String>) -> Self {
        Self::new(check, Verdict::Skip, evidence)
    }
    fn new(check: impl Into<String>, verdict: Verdict, evidence: impl Into<String>) -> Self {
        Self {
            check: check.into(),
            verdict,
            evidence: evidence.into(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub rows: Vec<Row>,
}

impl Report {
    pub fn failed(&self) -> bool {
        self.rows.iter().any(|r| r.verdict == Verdict::Fail)
    }

    /// The row of a check, by name.
    pub fn row(&self, check: &str) -> Option<&Row> {
        self.rows.iter().find(|r| r.check == check)
    }

    pub fn count(&self, verdict: Verdict) -> usize {
        self.rows.iter().filter(|r| r.verdict == verdict).count()
    }

    /// A fixed-width table; evidence on one line, cut at 160 characters.
    pub fn table(&self) -> String {
        let width = self
            .rows
            .iter()
            .map(|r| r.check.len())
            .max()
            .unwrap_or(5)
            .max(5);
        let mut out = format!("{:<width$}  {:<6}  evidence\n", "check", "result");
        for row in &self.rows {
            let evidence: String = row.evidence.replace('\n', " ").chars().take(160).collect();
            out.push_str(&format!(
                "{:<width$}  {:<6}  {evidence}\n",
                row.check,
                row.verdict.as_str()
            ));
        }
        out.push_str(&format!(
            "{} passed, {} failed, {} skipped\n",
            self.count(Verdict::Pass),
            self.count(Verdict::Fail),
            self.count(Verdict::Skip)
        ));
        out
    }

    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|_| "{}".into())
    }
}
