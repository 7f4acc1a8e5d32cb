//! Metrics: scraping `--metrics-listen` and reading the Prometheus text.

use super::*;

/// One sample: its metric name, its labels and its value.
type Sample = (String, Vec<(String, String)>, f64);

/// One scrape of `/metrics`: the exposition text and its samples.
#[derive(Debug, Clone)]
pub struct Scrape {
    pub text: String,
    samples: Vec<Sample>,
}

impl Scrape {
    /// GETs `url` (the metrics listener's `/metrics`) and parses it.
    pub async fn get(url: &str) -> Result<Self> {
        let res = reqwest::get(url).await?;
        if !res.status().is_success() {
            bail!("{url} answered {}", res.status());
        }
        Ok(Self::parse(&res.text().await?))
    }

    /// Parses the Prometheus text format (the subset an exporter writes: no
    /// escaped quotes or commas inside label values).
    pub fn parse(text: &str) -> Self {
        let mut samples = Vec::new();
        for line in text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else { continue };
            let Ok(value) = value.parse::<f64>() else { continue };
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => {
                    let labels = rest
                        .trim_end_matches('}')
                        .split(',')
                        .filter_map(|pair| pair.split_once('='))
                        .map(|(k, v)| (k.to_owned(), v.trim_matches('"').to_owned()))
                        .collect();
                    (name.to_owned(), labels)
                }
                None => (series.to_owned(), Vec::new()),
            };
            samples.push((name, labels, value));
        }
        Self { text: text.to_owned(), samples }
    }

    /// The sum of the samples named `name` whose labels include `labels`;
    /// 0 when there is none (a counter that never moved is not written).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|(n, l, _)| n == name && labels.iter().all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v)))
            .map(|(_, _, v)| v)
            .sum()
    }

    /// Whether any sample is named `name`.
    pub fn has(&self, name: &str) -> bool {
        self.samples.iter().any(|(n, _, _)| n == name)
    }

    /// Every label value of every sample, to check what never appears.
    pub fn label_values(&self) -> Vec<&str> {
        self.samples.iter().flat_map(|(_, l, _)| l.iter().map(|(_, v)| v.as_str())).collect()
    }
}

/// Runs `promtool check metrics` on `text`; fails with promtool's complaint.
/// promtool comes from the `prometheus` package, which scripts/test installs.
pub fn promtool_check(text: &str) -> Result<()> {
    use std::io::Write as _;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run promtool (install it: apt-get install prometheus)")?;
    child.stdin.take().context("promtool stdin")?.write_all(text.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "promtool check metrics failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}
