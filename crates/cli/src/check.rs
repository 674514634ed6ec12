//! `telechart check`: the deployment's security controls, each passed or failed with its fix.
//! Exits non-zero when any control fails, so a CI/CD pipeline can stop an unsafe release.

use std::net::IpAddr;

use crate::config::Config;

pub struct Finding {
    pub control: &'static str,
    pub passed: bool,
    /// Passed, but something needs doing soon (printed WARN).
    pub warning: bool,
    pub detail: String,
    pub fix: &'static str,
}

fn finding(control: &'static str, passed: bool, detail: String, fix: &'static str) -> Finding {
    Finding { control, passed, warning: false, detail, fix }
}

/// A BAA this close to its end is reported, so it is renewed before egress stops.
const BAA_WARNING_DAYS: i64 = 30;

fn is_loopback_host(host: &str) -> bool {
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Evaluates every control against `config` on `today` (reading the key and certificate files
/// it names).
pub fn run(config: &Config, today: chrono::NaiveDate) -> Vec<Finding> {
    let mut findings = Vec::new();

    // Transmission security (45 CFR 164.312(e)).
    let tls = &config.tls;
    let tls_detail = match (&tls.cert_file, &tls.key_file, tls.self_signed) {
        (Some(cert), Some(key), false) => match telechart_server::TlsSettings::from_pem_files(cert, key) {
            Ok(_) => Ok(format!("certificate {}", cert.display())),
            Err(e) => Err(format!("the certificate or key does not load: {e}")),
        },
        (_, _, true) => Err("a self-signed development certificate is configured".to_owned()),
        _ if config.listen.ip().is_loopback() => Err(format!("plain HTTP on {} (loopback only)", config.listen)),
        _ if tls.allow_plain_http => Err("plain HTTP is allowed (tls.allow_plain_http)".to_owned()),
        _ => Err("no certificate is configured".to_owned()),
    };
    findings.push(match tls_detail {
        Ok(d) => finding("tls", true, d, ""),
        Err(d) => finding("tls", false, d, "set tls.cert_file and tls.key_file to a CA-issued certificate"),
    });

    // Encryption at rest: a real key-encryption key, not the development one.
    let keys = &config.keys;
    let key_result = if keys.kek.is_none() && keys.kek_file.is_none() {
        Err("no key-encryption key is configured: the development key would be used".to_owned())
    } else if keys.kek_file.as_ref().is_some_and(|f| f == &keys.development_kek_file) {
        Err("the development key file is configured as the production key".to_owned())
    } else {
        match keys.load() {
            Ok(k) => Ok(format!("key-encryption key {}", k.current.id())),
            Err(e) => Err(format!("the key-encryption key does not load: {e:#}")),
        }
    };
    findings.push(match key_result {
        Ok(d) => finding("encryption-key", true, d, ""),
        Err(d) => finding(
            "encryption-key",
            false,
            d,
            "run `telechart keys generate --out /etc/telechart/kek` and set keys.kek_file (mode 0600)",
        ),
    });
    let loose: Vec<String> = keys
        .kek_file
        .iter()
        .filter(|f| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(f).is_ok_and(|m| m.permissions().mode() & 0o077 != 0)
        })
        .map(|f| f.display().to_string())
        .collect();
    findings.push(finding(
        "key-file-permissions",
        loose.is_empty(),
        if loose.is_empty() {
            "key files are readable by their owner only".to_owned()
        } else {
            format!("readable by others: {}", loose.join(", "))
        },
        "chmod 600 the key file",
    ));

    // Database: remote PostgreSQL over TLS, no inline password.
    let db_result = match url::Url::parse(&config.database_url) {
        Ok(url) if url.scheme().starts_with("postgres") => {
            let host = url.host_str().unwrap_or("localhost");
            let sslmode = url.query_pairs().find(|(k, _)| k == "sslmode").map(|(_, v)| v.into_owned());
            if !is_loopback_host(host) && !matches!(sslmode.as_deref(), Some("require" | "verify-ca" | "verify-full")) {
                Err(format!("PostgreSQL at {host} without sslmode=verify-full"))
            } else if url.password().is_some() {
                Err("the database password is written in database_url".to_owned())
            } else {
                Ok(format!("PostgreSQL at {host}"))
            }
        }
        _ => Ok("embedded SQLite (a single instance)".to_owned()),
    };
    findings.push(match db_result {
        Ok(d) => finding("database-transport", true, d, ""),
        Err(d) => finding(
            "database-transport",
            false,
            d,
            "use sslmode=verify-full and pass the password via PGPASSFILE or TELECHART_DATABASE_URL from a secret store",
        ),
    });

    // Outbound PHI only over TLS.
    let plain: Vec<String> = config
        .connections
        .iter()
        .filter(|c| {
            url::Url::parse(&c.base_url)
                .map(|u| u.scheme() != "https" && !u.host_str().is_some_and(is_loopback_host))
                .unwrap_or(true)
        })
        .map(|c| c.id.clone())
        .collect();
    findings.push(finding(
        "ehr-transport",
        plain.is_empty(),
        if plain.is_empty() {
            format!("{} EHR connection(s), all over HTTPS", config.connections.len())
        } else {
            format!("EHR connections without HTTPS: {}", plain.join(", "))
        },
        "give every connection an https:// base_url",
    ));

    // BAA-gated egress: every EHR connection's and platform webhook's origin is covered by a BAA.
    let registry = config.egress_registry();
    let uncovered: Vec<String> = config
        .connections
        .iter()
        .map(|c| (c.id.as_str(), c.base_url.as_str()))
        .chain(config.platforms.iter().filter_map(|p| p.webhook_url.as_deref().map(|u| (p.id.as_str(), u))))
        .filter_map(|(id, url)| registry.check(url, today).err().map(|e| format!("{id} ({e})")))
        .collect();
    findings.push(finding(
        "egress-baa",
        uncovered.is_empty(),
        if uncovered.is_empty() {
            format!("{} registered destination(s); every connection covered", config.egress.len())
        } else {
            format!("destinations without a BAA: {}", uncovered.join("; "))
        },
        "add an [[egress]] entry (origin and BAA reference) for each EHR connection and platform webhook",
    ));

    // Every BAA with its counterparty and term: expired or undated fails, ending soon warns.
    let mut failing = Vec::new();
    let mut ending = Vec::new();
    for e in registry.entries() {
        match (&e.counterparty, e.expires, e.not_in_force(today)) {
            (None, _, _) => failing.push(format!("{} ({}) names no counterparty", e.baa, e.origin)),
            (_, None, _) => failing.push(format!("{} ({}) has no expiry date", e.baa, e.origin)),
            (_, _, Some(reason)) => failing.push(format!("{reason} ({})", e.origin)),
            (_, Some(expires), None) => {
                let left = (expires - today).num_days();
                if left <= BAA_WARNING_DAYS {
                    ending.push(format!("{} ({}) expires on {expires}, in {left} day(s)", e.baa, e.origin));
                }
            }
        }
    }
    let mut baa_term = finding(
        "baa-term",
        failing.is_empty(),
        if !failing.is_empty() {
            failing.join("; ")
        } else if !ending.is_empty() {
            ending.join("; ")
        } else {
            format!("{} BAA(s) in force, none ending within {BAA_WARNING_DAYS} days", registry.entries().len())
        },
        "record counterparty, starts and expires for each [[egress]] BAA and renew it before it expires: egress stops the day after, and an ended one opens a return-or-destroy task (telechart baa tasks)",
    );
    baa_term.warning = failing.is_empty() && !ending.is_empty();
    findings.push(baa_term);

    // Retention: PHI purged once delivered, audit kept six years.
    let retention = &config.retention;
    let retention_problems: Vec<String> = [
        retention.delivered_payload_days.is_none().then(|| "delivered payloads are kept forever".to_owned()),
        (retention.audit_log_years < 6)
            .then(|| format!("the audit log is kept {} year(s), under six", retention.audit_log_years)),
    ]
    .into_iter()
    .flatten()
    .collect();
    findings.push(finding(
        "retention",
        retention_problems.is_empty(),
        if retention_problems.is_empty() {
            format!(
                "delivered PHI purged after {} days; audit kept {} years",
                retention.delivered_payload_days.unwrap_or_default(),
                retention.audit_log_years
            )
        } else {
            retention_problems.join("; ")
        },
        "set retention.delivered_payload_days, and retention.audit_log_years to at least 6",
    ));

    // Person authentication: privileged roles must prove a second factor.
    let privileged = ["integration-admin", "compliance-officer", "clinician"];
    findings.push(match &config.oidc {
        None => finding("mfa", true, "no interactive logins configured (API tokens only)".to_owned(), ""),
        Some(_) => {
            let mfa_roles = &config.sessions.mfa_roles;
            let missing: Vec<&str> = privileged.into_iter().filter(|r| !mfa_roles.iter().any(|m| m == r)).collect();
            finding(
                "mfa",
                missing.is_empty(),
                if missing.is_empty() {
                    format!("a second factor is required of {}", mfa_roles.join(", "))
                } else {
                    format!("no second factor required of {}", missing.join(", "))
                },
                "list integration-admin, compliance-officer and clinician in sessions.mfa_roles",
            )
        }
    });

    // Reconciliation depends on a stable, deployment-specific identifier system.
    let default_system = config.identifier_system == "urn:telechart:artifact";
    findings.push(finding(
        "identifier-system",
        !default_system,
        format!("identifier_system = {}", config.identifier_system),
        "set identifier_system to a URI your organisation owns, and never change it",
    ));
    findings
}
