//! The one validation pass: [`RawConfig::validate`] checks every section (one file each under
//! `validate/`) and returns the typed [`ValidConfig`], or every problem found, each with file
//! and key. No problem is fatal on its own, so `check` prints them all; each rule lives in
//! exactly one section.

use super::{ConfigError, ConfigErrors, RawConfig, Secrets, ValidConfig};

mod auth;
mod plans_routes;
mod provisioning;
mod quota;
mod server;
mod tenants;
mod tls_acme;
mod upstreams;

#[cfg(test)]
mod tests;

/// The problems found so far in one load.
#[derive(Debug, Default)]
pub(super) struct Report {
    errors: Vec<ConfigError>,
}

impl Report {
    pub(super) fn at(&mut self, file: &str, key: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError::new(file, key, message));
    }

    /// Reports every entry of the list at `key` of `file` that is not `valid`, as
    /// `key[i]: {what}: "entry"`.
    pub(super) fn each(
        &mut self,
        file: &str,
        key: &str,
        list: &[String],
        valid: impl Fn(&str) -> bool,
        what: &str,
    ) {
        for (i, entry) in list.iter().enumerate() {
            if !valid(entry) {
                self.at(file, format!("{key}[{i}]"), format!("{what}: {entry:?}"));
            }
        }
    }
}

impl RawConfig {
    /// Validates the whole config and turns it into typed values; every problem is reported,
    /// not just the first.
    pub fn validate(self) -> Result<ValidConfig, ConfigErrors> {
        self.validate_after(Vec::new())
    }

    /// [`Self::validate`], reporting `earlier` (problems found while reading) first.
    pub(super) fn validate_after(
        self,
        earlier: Vec<ConfigError>,
    ) -> Result<ValidConfig, ConfigErrors> {
        let mut r = Report { errors: earlier };
        let main = self.main_file.as_str();
        let g = &self.gateway;
        r.errors.extend(super::limits::validate(&g.limits, main));
        let listeners = server::listeners(&g.server, main, &mut r);
        server::names(&g.server, main, &mut r);
        let upstreams = upstreams::pools(&g.upstreams, &self.dir, main, &mut r);
        quota::check(&g.quota, main, &mut r);
        tls_acme::check(&g.acme, &g.server, &self.dir, main, &mut r);
        let catalogue = plans_routes::Catalogue::of(g, main, &mut r);
        let plans = plans_routes::plans(&g.plans, &catalogue, main, &mut r);
        provisioning::check(&g.provisioning, main, &mut r);
        let routes = plans_routes::routes(g, &catalogue, main, &mut r);
        let tenants = tenants::tenants(&self, &catalogue, &plans, &upstreams, &mut r);
        let secrets = Secrets::read(g);
        let jwt = auth::jwt(
            &g.auth,
            &self.dir,
            main,
            secrets.jwt_hs256.as_deref(),
            &mut r,
        );
        let (Some(listeners), true) = (listeners, r.errors.is_empty()) else {
            return Err(ConfigErrors(r.errors));
        };
        let startup = server::startup(g, listeners);
        Ok(ValidConfig {
            server: server::reloadable(g),
            startup,
            secrets,
            upstreams,
            plans,
            routes,
            tenants,
            jwt,
            dir: self.dir,
            main_file: self.main_file,
            content_hash: self.content_hash,
        })
    }
}
