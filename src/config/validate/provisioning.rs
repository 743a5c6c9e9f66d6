//! `[provisioning]`: the hook programs and their timeout.

use super::Report;
use crate::config::ProvisioningConfig;

pub(super) fn check(hooks: &ProvisioningConfig, main: &str, r: &mut Report) {
    for (key, argv) in [
        ("on_create", &hooks.on_create),
        ("on_update", &hooks.on_update),
        ("on_delete", &hooks.on_delete),
    ] {
        if argv.first().is_some_and(|p| p.trim().is_empty()) {
            r.at(
                main,
                format!("provisioning.{key}[0]"),
                "the program to run: a path or a name in PATH",
            );
        }
    }
    if hooks.timeout.is_zero() {
        r.at(main, "provisioning.timeout", "must be longer than 0s");
    }
}
