//! Table-driven tests of the tenant-file rules (ids, names, references, domains, branding, API
//! keys) and of the typed tenants a valid config produces.

use super::*;

#[test]
fn tenant_ids_and_subdomains_are_unique_labels() {
    assert_tenant_rows(&[
        ("id = \"Bad\"\nplan = \"p\"\nupstream = \"s\"", "id"),
        (&tenant("subdomain = \"www\""), "subdomain"),
        (&tenant("subdomain = \"a_B\""), "subdomain"),
    ]);
    assert_rows(&[
        ("", &[("a.toml", TENANT), ("t.toml", TENANT)], T, "id"),
        (
            "",
            &[
                (
                    "a.toml",
                    "id = \"a\"\nplan = \"p\"\nupstream = \"s\"\nsubdomain = \"t\"",
                ),
                ("t.toml", TENANT),
            ],
            T,
            "id",
        ),
    ]);
}

#[test]
fn tenant_references_name_known_plans_features_and_resources() {
    assert_tenant_rows(&[
        ("id = \"t\"\nplan = \"gold\"\nupstream = \"s\"", "plan"),
        (
            &tenant("features_enabled = [\"nope\"]"),
            "features_enabled[0]",
        ),
        (
            &tenant("features_disabled = [\"nope\"]"),
            "features_disabled[0]",
        ),
        (
            &tenant("[quotas]\nwidgets = { limit = 1, period = \"day\" }"),
            "quotas.widgets",
        ),
        (
            &tenant(&format!(
                "[quotas]\nrequests = {{ limit = {}, period = \"day\" }}",
                i64::MAX
            )),
            "quotas.requests.limit",
        ),
        (&tenant("schema = \"a-b\""), "schema"),
    ]);
}

#[test]
fn custom_domains_are_dns_names_outside_base_domains_claimed_once() {
    let claimed = tenant("custom_domains = [\"x.com\"]");
    let other = "id = \"a\"\nplan = \"p\"\nupstream = \"s\"\ncustom_domains = [\"X.com\"]";
    assert_tenant_rows(&[
        (&tenant("custom_domains = [\"nodot\"]"), "custom_domains[0]"),
        (
            &tenant("custom_domains = [\"a.localhost\"]"),
            "custom_domains[0]",
        ),
    ]);
    assert_rows(&[(
        "",
        &[("a.toml", other), ("t.toml", &claimed)],
        T,
        "custom_domains[0]",
    )]);
    let v = validate(
        "",
        &[("t.toml", &tenant("custom_domains = [\"App.Example.com\"]"))],
    )
    .expect("valid");
    assert_eq!(v.tenants[0].custom_domains, ["app.example.com"]);
}

#[test]
fn branding_and_text_are_safe_to_render_and_send() {
    assert_tenant_rows(&[
        (
            &tenant("[branding]\nprimary_color = \"red;}\""),
            "branding.primary_color",
        ),
        (
            &tenant("[branding]\nsecondary_color = \"#12345\""),
            "branding.secondary_color",
        ),
        (
            &tenant("[branding]\nlogo = \"http://x/l.png\""),
            "branding.logo",
        ),
        (
            &tenant("[branding]\nlogo = \"https://x/a b.png\""),
            "branding.logo",
        ),
        (
            &tenant("organization_id = \"a\\u0001b\""),
            "organization_id",
        ),
        (&tenant("name = \"a\\nb\""), "name"),
    ]);
}

#[test]
fn feature_names_that_cannot_be_a_header_value_name_the_tenant_key() {
    let plan = "[plans.h]\nfeatures = [\"a\\u0001\"]";
    let t = "id = \"t\"\nplan = \"h\"\nupstream = \"s\"";
    assert_rows(&[(plan, &[("t.toml", t)], T, "features_enabled")]);
}

#[test]
fn api_keys_are_decoded_hashes_owned_by_one_tenant() {
    let hash = "ab".repeat(32);
    let key = |h: &str, roles: &str| {
        tenant(&format!(
            "[[api_keys]]\nsha256 = \"{h}\"\nname = \"ci\"\nroles = [{roles}]"
        ))
    };
    let other = format!(
        "id = \"a\"\nplan = \"p\"\nupstream = \"s\"\n[[api_keys]]\nsha256 = \"{}\"\nname = \"x\"",
        hash.to_uppercase()
    );
    assert_tenant_rows(&[
        (&key("xyz", ""), "api_keys[0].sha256"),
        (&key(&"zz".repeat(32), ""), "api_keys[0].sha256"),
        (&key(&hash, "\"bad role\""), "api_keys[0].roles[0]"),
    ]);
    assert_rows(&[(
        "",
        &[("a.toml", &other), ("t.toml", &key(&hash, ""))],
        T,
        "api_keys[0].sha256",
    )]);
    let v = validate("", &[("t.toml", &key(&hash, "\"admin\""))]).expect("valid");
    assert_eq!(v.tenants[0].api_keys[0].hash, [0xab; 32]);
}

#[test]
fn valid_tenants_carry_effective_features_and_header_values() {
    let v = validate(
        "[plans.q]\nfeatures = [\"chat\", \"analytics\", \"chat\"]",
        &[("t.toml", "id = \"t\"\nplan = \"q\"\nupstream = \"s\"\nfeatures_enabled = [\"extra\"]\nfeatures_disabled = [\"chat\"]\nschema = \"t_1\"\n"), ("u.toml", "id = \"u\"\nplan = \"q\"\nupstream = \"s\"\n")],
    );
    // `extra` is not in the implicit catalogue.
    assert!(v.is_err());
    let v = validate(
        "[plans.q]\nfeatures = [\"chat\", \"analytics\", \"chat\"]",
        &[("t.toml", "id = \"t\"\nplan = \"q\"\nupstream = \"s\"\nfeatures_disabled = [\"chat\"]\nschema = \"t_1\"\n")],
    )
    .expect("valid");
    assert_eq!(v.plans["q"].features, ["analytics", "chat"]);
    let t = &v.tenants[0];
    assert_eq!(t.features, ["analytics"]);
    assert_eq!(t.headers.features, "analytics");
    assert_eq!(
        t.headers.schema.as_ref().map(|h| h.to_str().unwrap()),
        Some("t_1")
    );
    assert_eq!(t.name, "t", "the name defaults to the id");
}
