//! Reading Prometheus text exposition: one sample by name and labels, or a family's sum.

/// `name{a="x",b="y"}` → (name, sorted label pairs).
fn parse_sample_key(key: &str) -> (String, Vec<(String, String)>) {
    let key = key.trim();
    let Some((name, rest)) = key.split_once('{') else {
        return (key.to_string(), vec![]);
    };
    let body = rest.trim_end_matches('}');
    let mut labels: Vec<(String, String)> = body
        .split("\",")
        .filter(|p| !p.trim().is_empty())
        .filter_map(|p| {
            let (k, v) = p.split_once('=')?;
            Some((k.trim().to_string(), v.trim().trim_matches('"').to_string()))
        })
        .collect();
    labels.sort();
    (name.to_string(), labels)
}

/// Samples (key, value) of the exposition, comments and blank lines skipped.
fn samples(text: &str) -> impl Iterator<Item = (&str, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            Some((key, value.trim().parse().ok()?))
        })
}

/// Finds one sample, e.g. `gateway_requests_total{tenant="acme",status_class="2xx"}` (label
/// order does not matter).
pub fn find_sample(text: &str, sample: &str) -> Option<f64> {
    let wanted = parse_sample_key(sample);
    samples(text).find_map(|(key, value)| (parse_sample_key(key) == wanted).then_some(value))
}

/// Sum of every sample of a metric family (all label values).
pub fn family_sum(text: &str, family: &str) -> f64 {
    samples(text)
        .filter(|(key, _)| {
            key.strip_prefix(family)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('{'))
        })
        .map(|(_, value)| value)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP x y\nreq{b=\"2\",a=\"1\"} 3\nreq{a=\"9\"} 4\nreq_other 7\nup 1\n";

    #[test]
    fn samples_are_found_by_labels_in_any_order_and_families_summed() {
        assert_eq!(find_sample(TEXT, "req{a=\"1\",b=\"2\"}"), Some(3.0));
        assert_eq!(find_sample(TEXT, "up"), Some(1.0));
        assert_eq!(find_sample(TEXT, "req{a=\"2\"}"), None);
        assert_eq!(family_sum(TEXT, "req"), 7.0);
    }
}
