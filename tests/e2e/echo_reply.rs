//! Reading the echo upstream's JSON answer: what it received (header values in order, header
//! names), and the one call that sends a request and expects that answer. Shared by the test
//! modules that check what crossed the gateway.

use serde_json::Value;

/// Every value the echo upstream received for `name` (case-insensitive), in order, from its
/// `header_list`.
pub fn received(echo: &Value, name: &str) -> Vec<String> {
    header_list(echo)
        .iter()
        .filter(|pair| {
            pair[0]
                .as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
        })
        .map(|pair| pair[1].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Names of every received header starting with `prefix`, sorted.
pub fn received_names(echo: &Value, prefix: &str) -> Vec<String> {
    let mut names: Vec<String> = header_list(echo)
        .iter()
        .filter_map(|pair| pair[0].as_str())
        .filter(|n| n.starts_with(prefix))
        .map(str::to_string)
        .collect();
    names.sort();
    names
}

fn header_list(echo: &Value) -> &Vec<Value> {
    echo["header_list"]
        .as_array()
        .unwrap_or_else(|| panic!("no header_list in {echo}"))
}

/// Sends the request, expects 200 from the echo upstream, returns the echo JSON.
pub async fn echo_ok(rb: reqwest::RequestBuilder) -> Value {
    let resp = rb.send().await.expect("request");
    let status = resp.status();
    let body = resp.text().await.expect("body");
    assert_eq!(
        status, 200,
        "expected 200 from the echo upstream, got {status}: {body}"
    );
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("not echo JSON ({e}): {body}"))
}
