//! Table-driven tests of the tenant-file rules (ids, names, references, domains, branding, API
//! keys) and of the typed tenants a valid config produces.

use super::*;

#[test]
fn tenant_ids_and_subdomains_are_unique_labels() {
    assert_rows(&[
        (
            "",
            &[("t.toml", "id = \"Bad\"\nplan = \"p\"\nupstream = \"s\"")],
            T,
            "id",
        ),
        ("", &[("a.toml", TENANT), ("t.toml", TENANT)], T, "id"),
        (
            "",
            &[("t.toml", &tenant("subdomain = \"www\""))],
            T,
            "subdomain",
        ),
        (
            "",
            &[("t.toml", &tenant("subdomain = \"a_B\""))],
            T,
            "subdomain",
        ),
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
    assert_rows(&[
        (
            "",
            &[("t.toml", "id = \"t\"\nplan = \"gold\"\nupstream = \"s\"")],
            T,
            "plan",
        ),
        (
            "",
            &[("t.toml", &tenant("features_enabled = [\"nope\"]"))],
            T,
            "features_enabled[0]",
        ),
        (
            "",
            &[("t.toml", &tenant("features_disabled = [\"nope\"]"))],
            T,
            "features_disabled[0]",
        ),
        (
            "",
            &[(
                "t.toml",
                &tenant("[quotas]\nwidgets = { limit = 1, period = \"day\" }"),
            )],
            T,
            "quotas.widgets",
        ),
        (
            "",
            &[(
                "t.toml",
                &tenant(&format!(
                    "[quotas]\nrequests = {{ limit = {}, period = \"day\" }}",
                    i64::MAX
                )),
            )],
            T,
            "quotas.requests.limit",
        ),
        ("", &[("t.toml", &tenant("schema = \"a-b\""))], T, "schema"),
    ]);
}

#[test]
fn custom_domains_are_dns_names_outside_base_domains_claimed_once() {
    let claimed = tenant("custom_domains = [\"x.com\"]");
    let other = "id = \"a\"\nplan = \"p\"\nupstream = \"s\"\ncustom_domains = [\"X.com\"]";
    assert_rows(&[
        (
            "",
            &[("t.toml", &tenant("custom_domains = [\"nodot\"]"))],
            T,
            "custom_domains[0]",
        ),
        (
            "",
            &[("t.toml", &tenant("custom_domains = [\"a.localhost\"]"))],
            T,
            "custom_domains[0]",
        ),
        (
            "",
            &[("a.toml", other), ("t.toml", &claimed)],
            T,
            "custom_domains[0]",
        ),
    ]);
    let v = validate(
        "",
        &[("t.toml", &tenant("custom_domains = [\"App.Example.com\"]"))],
    )
    .expect("valid");
    assert_eq!(v.tenants[0].custom_domains, ["app.example.com"]);
}

#[test]
fn branding_and_text_are_safe_to_render_and_send() {
    assert_rows(&[
        (
            "",
            &[("t.toml", &tenant("[branding]\nprimary_color = \"red;}\""))],
            T,
            "branding.primary_color",
        ),
        (
            "",
            &[(
                "t.toml",
                &tenant("[branding]\nsecondary_color = \"#12345\""),
            )],
            T,
            "branding.secondary_color",
        ),
        (
            "",
            &[("t.toml", &tenant("[branding]\nlogo = \"http://x/l.png\""))],
            T,
            "branding.logo",
        ),
        (
            "",
            &[(
                "t.toml",
                &tenant("[branding]\nlogo = \"https://x/a b.png\""),
            )],
            T,
            "branding.logo",
        ),
        (
            "",
            &[("t.toml", &tenant("organization_id = \"a\\u0001b\""))],
            T,
            "organization_id",
        ),
        ("", &[("t.toml", &tenant("name = \"a\\nb\""))], T, "name"),
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
    assert_rows(&[
        ("", &[("t.toml", &key("xyz", ""))], T, "api_keys[0].sha256"),
        (
            "",
            &[("t.toml", &key(&"zz".repeat(32), ""))],
            T,
            "api_keys[0].sha256",
        ),
        (
            "",
            &[("a.toml", &other), ("t.toml", &key(&hash, ""))],
            T,
            "api_keys[0].sha256",
        ),
        (
            "",
            &[("t.toml", &key(&hash, "\"bad role\""))],
            T,
            "api_keys[0].roles[0]",
        ),
    ]);
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
