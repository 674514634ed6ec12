//! How a connection's EHR wants to be authorized: SMART scope syntax (v1 `.read`/`.write` or v2
//! `.rs`/`.cruds`), the tenant its URLs carry, and how long a token lives when the server does
//! not say. Vendor profiles set these; a connection may override them.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::EhrError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScopeSyntax {
    /// SMART v1: `patient/Observation.read`, `.write`, `.*`.
    V1,
    /// SMART v2: `patient/Observation.rs`, `.cu`, `.cruds`.
    #[default]
    V2,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthProfile {
    pub scope_syntax: ScopeSyntax,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// Substituted for `{tenant}` in the connection's URLs (Oracle Health puts it in the path).
    pub tenant: Option<String>,
    /// Assumed lifetime when a token response has no `expires_in`.
    #[serde(with = "seconds")]
    pub assumed_token_lifetime: Duration,
}

impl Default for AuthProfile {
    fn default() -> Self {
        AuthProfile { scope_syntax: ScopeSyntax::V2, tenant: None, assumed_token_lifetime: Duration::from_secs(300) }
    }
}

mod seconds {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_secs)
    }
}

impl AuthProfile {
    /// `template` with `{tenant}` filled in; a template that needs a tenant without one is an error.
    pub fn expand(&self, template: &str) -> Result<String, EhrError> {
        match (&self.tenant, template.contains("{tenant}")) {
            (_, false) => Ok(template.to_owned()),
            (Some(tenant), true) => {
                if tenant.is_empty() || !tenant.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                    return Err(EhrError::BadBaseUrl(format!("tenant {tenant:?} must be letters, digits, - or _")));
                }
                Ok(template.replace("{tenant}", tenant))
            }
            (None, true) => Err(EhrError::BadBaseUrl(format!("{template} needs a tenant and the profile has none"))),
        }
    }

    /// Scopes written in either syntax, rendered in this EHR's. v2 → v1 keeps the resource and
    /// widens `r`/`s` to `read` and `c`/`u`/`d` to `write` (v1 has nothing finer; query
    /// parameters are dropped, the server then grants the whole type as v1 means it).
    pub fn render_scopes(&self, scopes: &str) -> String {
        let mut out: Vec<String> = Vec::new();
        for scope in scopes.split_whitespace() {
            let rendered = match parse_resource_scope(scope) {
                Some((context, resource, perms, query)) => match self.scope_syntax {
                    ScopeSyntax::V2 => vec![format!("{context}/{resource}.{}{query}", v2_perms(&perms))],
                    ScopeSyntax::V1 => {
                        let read = perms.contains('r') || perms.contains('s');
                        let write = perms.contains('c') || perms.contains('u') || perms.contains('d');
                        match (read, write) {
                            (true, true) => vec![format!("{context}/{resource}.*")],
                            (true, false) => vec![format!("{context}/{resource}.read")],
                            (false, true) => vec![format!("{context}/{resource}.write")],
                            (false, false) => vec![],
                        }
                    }
                },
                None => vec![scope.to_owned()],
            };
            for s in rendered {
                if !out.contains(&s) {
                    out.push(s);
                }
            }
        }
        out.join(" ")
    }
}

/// `patient/Observation.rs?category=…` → ("patient", "Observation", "rs", "?category=…"), v1
/// forms mapped to v2 letters; not a resource scope (`openid`, `launch/patient`) → None.
fn parse_resource_scope(scope: &str) -> Option<(&str, &str, String, &str)> {
    let (context, rest) = scope.split_once('/')?;
    if !matches!(context, "patient" | "user" | "system") {
        return None;
    }
    let (resource, perms) = rest.split_once('.')?;
    let (perms, query) = match perms.find('?') {
        Some(at) => perms.split_at(at),
        None => (perms, ""),
    };
    let letters = match perms {
        "read" => "rs".to_owned(),
        "write" => "cud".to_owned(),
        "*" => "cruds".to_owned(),
        other if !other.is_empty() && other.chars().all(|c| "cruds".contains(c)) => other.to_owned(),
        _ => return None,
    };
    Some((context, resource, letters, query))
}

/// v2 permissions in their required order (c r u d s).
fn v2_perms(perms: &str) -> String {
    "cruds".chars().filter(|c| perms.contains(*c)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_render_in_either_syntax() {
        let v1 = AuthProfile { scope_syntax: ScopeSyntax::V1, ..AuthProfile::default() };
        let v2 = AuthProfile::default();
        let asked = "launch openid fhirUser user/Observation.cu user/Patient.rs system/Encounter.cruds offline_access";
        assert_eq!(
            v1.render_scopes(asked),
            "launch openid fhirUser user/Observation.write user/Patient.read system/Encounter.* offline_access"
        );
        assert_eq!(v2.render_scopes(asked), asked);
        assert_eq!(
            v2.render_scopes("patient/Observation.read patient/Observation.write"),
            "patient/Observation.rs patient/Observation.cud"
        );
        assert_eq!(v2.render_scopes("user/Observation.sr"), "user/Observation.rs", "v2 letters come in cruds order");
        assert_eq!(v1.render_scopes("patient/Observation.rs?category=vital-signs"), "patient/Observation.read");
        assert_eq!(
            v2.render_scopes("patient/Observation.rs?category=vital-signs"),
            "patient/Observation.rs?category=vital-signs",
            "v2 keeps the narrowing"
        );
        assert_eq!(v1.render_scopes("user/Observation.rs user/Observation.read"), "user/Observation.read");
    }

    #[test]
    fn tenants_fill_the_path_or_the_url_is_refused() {
        let oracle = AuthProfile { tenant: Some("ec2458f2-1e24".into()), ..AuthProfile::default() };
        assert_eq!(
            oracle.expand("https://fhir-ehr.example/r4/{tenant}").unwrap(),
            "https://fhir-ehr.example/r4/ec2458f2-1e24"
        );
        assert!(AuthProfile::default().expand("https://fhir-ehr.example/r4/{tenant}").is_err());
        let bad = AuthProfile { tenant: Some("../admin".into()), ..AuthProfile::default() };
        assert!(bad.expand("https://x/{tenant}").is_err());
        assert_eq!(AuthProfile::default().expand("https://x/fhir").unwrap(), "https://x/fhir");
    }
}
