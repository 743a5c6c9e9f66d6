//! The TOML a tenant file is written as: rendered for a new tenant the way a human would write
//! it, and edited in place (comments and formatting of untouched keys kept) for a patch.

use super::*;

pub(super) fn today_utc() -> String {
    chrono::Utc::now().format("%Y-%m-%d").to_string()
}

/// A TOML basic string, always on one line with `"` quotes (toml_edit would pick a multi-line
/// or literal form for some content, which people do not write).
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn quote_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| quote(s)).collect();
    format!("[{}]", quoted.join(", "))
}

fn period_name(p: Period) -> &'static str {
    match p {
        Period::Second => "second",
        Period::Minute => "minute",
        Period::Hour => "hour",
        Period::Day => "day",
        Period::Month => "month",
    }
}

fn status_name(s: TenantStatus) -> &'static str {
    match s {
        TenantStatus::Active => "active",
        TenantStatus::Suspended => "suspended",
    }
}

fn quota_inline(q: &QuotaLimitConfig) -> String {
    format!(
        "{{ limit = {}, period = \"{}\" }}",
        q.limit,
        period_name(q.period)
    )
}

/// The file a person would write: fixed key order (that of the example `conf/tenants/acme.toml`),
/// a header comment, tables last.
pub(super) fn render(t: &NewTenant, upstream: &str, date: &str) -> String {
    let NewTenant {
        id,
        plan,
        status,
        subdomain,
        organization_id,
        name,
        upstream: _,
        custom_domains,
        features_enabled,
        features_disabled,
        quotas,
        schema,
        branding,
    } = t;
    let mut s = String::new();
    s.push_str(&format!("# created by tenant-gateway on {date} (UTC)\n"));
    s.push_str(&format!("id = {}\n", quote(id)));
    if let Some(org) = organization_id {
        s.push_str(&format!("organization_id = {}\n", quote(org)));
    }
    if let Some(name) = name {
        s.push_str(&format!("name = {}\n", quote(name)));
    }
    s.push_str(&format!("plan = {}\n", quote(plan)));
    s.push_str(&format!(
        "status = \"{}\"  # active | suspended\n",
        status_name(*status)
    ));
    if let Some(sub) = subdomain {
        s.push_str(&format!("subdomain = {}\n", quote(sub)));
    }
    s.push_str(&format!(
        "custom_domains = {}\n",
        quote_list(custom_domains)
    ));
    s.push_str(&format!(
        "features_enabled = {}\n",
        quote_list(features_enabled)
    ));
    s.push_str(&format!(
        "features_disabled = {}\n",
        quote_list(features_disabled)
    ));
    s.push_str(&format!("upstream = {}\n", quote(upstream)));
    if let Some(schema) = schema {
        s.push_str(&format!("schema = {}\n", quote(schema)));
    }
    if !quotas.is_empty() {
        s.push_str("\n[quotas]  # overrides of the plan's quotas\n");
        for (res, q) in quotas {
            s.push_str(&format!(
                "{} = {}\n",
                toml_edit::Key::new(res.as_str()),
                quota_inline(q)
            ));
        }
    }
    if let Some(b) = branding {
        let BrandingConfig {
            logo,
            primary_color,
            secondary_color,
        } = b;
        let lines: Vec<String> = [
            ("logo", logo),
            ("primary_color", primary_color),
            ("secondary_color", secondary_color),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k} = {}\n", quote(v))))
        .collect();
        if !lines.is_empty() {
            s.push_str("\n[branding]\n");
            s.extend(lines);
        }
    }
    s
}

/// Sets a root-level value, keeping the key's comments above it and the comment after the old
/// value; a missing key is appended after the other root keys.
fn set_root_value(doc: &mut toml_edit::DocumentMut, key: &str, value: toml_edit::Value) {
    let root = doc.as_table_mut();
    match root.get_mut(key) {
        Some(toml_edit::Item::Value(old)) => {
            let decor = old.decor().clone();
            *old = value;
            *old.decor_mut() = decor;
        }
        _ => {
            root.insert(key, toml_edit::Item::Value(value));
        }
    }
}

fn string_array(items: &[String]) -> toml_edit::Value {
    let mut a = toml_edit::Array::new();
    for i in items {
        a.push(i.as_str());
    }
    toml_edit::Value::Array(a)
}

fn quota_table(q: &QuotaLimitConfig) -> toml_edit::InlineTable {
    let mut t = toml_edit::InlineTable::new();
    // Both fit i64: limits are far below 2^63 in practice; clamp rather than wrap.
    t.insert("limit", i64::try_from(q.limit).unwrap_or(i64::MAX).into());
    t.insert("period", period_name(q.period).into());
    t.fmt();
    t
}

/// Applies a patch to the text of a tenant file with `toml_edit`, touching only patched keys.
pub(super) fn apply_patch(
    rel: &str,
    text: &str,
    patch: &TenantPatch,
) -> Result<String, ProvisionError> {
    let mut doc: toml_edit::DocumentMut = text.parse().map_err(|e: toml_edit::TomlError| {
        ConfigError::new(rel, "-", e.to_string().trim().to_string())
    })?;
    let TenantPatch {
        plan,
        status,
        features_enabled,
        features_disabled,
        quotas,
    } = patch;
    if let Some(plan) = plan {
        set_root_value(&mut doc, "plan", plan.as_str().into());
    }
    if let Some(status) = status {
        set_root_value(&mut doc, "status", status_name(*status).into());
    }
    if let Some(list) = features_enabled {
        set_root_value(&mut doc, "features_enabled", string_array(list));
    }
    if let Some(list) = features_disabled {
        set_root_value(&mut doc, "features_disabled", string_array(list));
    }
    if let Some(changes) = quotas {
        patch_quotas(rel, &mut doc, changes)?;
    }
    Ok(doc.to_string())
}

fn patch_quotas(
    rel: &str,
    doc: &mut toml_edit::DocumentMut,
    changes: &BTreeMap<String, Option<QuotaLimitConfig>>,
) -> Result<(), ProvisionError> {
    let root = doc.as_table_mut();
    if !root.contains_key("quotas") {
        if changes.values().all(Option::is_none) {
            return Ok(());
        }
        root.insert("quotas", toml_edit::Item::Table(toml_edit::Table::new()));
    }
    let Some(quotas) = root.get_mut("quotas").and_then(|i| i.as_table_like_mut()) else {
        return Err(ConfigError::new(rel, "quotas", "is not a table; edit it by hand").into());
    };
    for (res, change) in changes {
        match change {
            None => {
                quotas.remove(res);
            }
            Some(q) => {
                let inline = quota_table(q);
                match quotas.get_mut(res) {
                    // `[quotas.messages]` sub-table: keep it a table, set its keys.
                    Some(toml_edit::Item::Table(t)) => {
                        t.insert(
                            "limit",
                            toml_edit::value(i64::try_from(q.limit).unwrap_or(i64::MAX)),
                        );
                        t.insert("period", toml_edit::value(period_name(q.period)));
                    }
                    Some(toml_edit::Item::Value(old)) => {
                        let decor = old.decor().clone();
                        *old = toml_edit::Value::InlineTable(inline);
                        *old.decor_mut() = decor;
                    }
                    _ => {
                        quotas.insert(
                            res,
                            toml_edit::Item::Value(toml_edit::Value::InlineTable(inline)),
                        );
                    }
                }
            }
        }
    }
    Ok(())
}
