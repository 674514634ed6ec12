//! The site blueprint: the Discovery Blueprint of one site as one validated file — its visit
//! types (the note template, the consents a visit of that type needs, how it finishes, which
//! EHR connections receive it and what it produces), who may do what, and its KPI bands —
//! and `telechart blueprint check`, which prints, per visit type, how every artifact will reach
//! each connection (the write planner over the connection's profile narrowed by its stored
//! capability contract).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use telechart_analytics::bands::Band;
use telechart_policy::governed::ConsentCategory;
use telechart_policy::{Permission, Role};

use crate::config::Config;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Blueprint {
    /// The site's name, as people call it.
    pub site: String,
    #[serde(default, rename = "visit_type")]
    pub visit_types: Vec<VisitType>,
    /// Role → the permissions the site counts on it having (`clinician = ["note:sign"]`).
    #[serde(default)]
    pub roles: std::collections::BTreeMap<String, Vec<String>>,
    /// KPI bands; absent: `telechart_analytics::bands::default_bands`.
    #[serde(default, rename = "band")]
    pub bands: Option<Vec<Band>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VisitType {
    /// The Appointment type code as the EHR sends it (`followup`, `walkin`, …).
    pub code: String,
    /// A note template id (`general-follow-up`, `chronic-care`, …).
    pub template: String,
    /// Consent categories a visit of this type asks before the flows they govern.
    #[serde(default)]
    pub required_consents: Vec<String>,
    /// `finish-when-signed` or `finish` (when the call ends).
    pub finishing_rule: telechart_sync::webhooks::OnCallEnded,
    /// EHR connection ids that receive these visits.
    pub connections: Vec<String>,
    /// What these visits produce (`vital`, `note`, `document:pdf`, `diagnosis`, `order`, …).
    pub artifacts: Vec<String>,
}

/// Reads and parses the file; the error names the file and the line.
pub fn load(path: &Path) -> anyhow::Result<Blueprint> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading the blueprint {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("the blueprint {}", path.display()))
}

/// Everything wrong with the blueprint against this deployment, each with where it is.
pub fn problems(blueprint: &Blueprint, config: &Config) -> Vec<String> {
    let mut out = Vec::new();
    let templates = telechart_scribe::template::Templates::builtin().map(|t| t.all().to_vec()).unwrap_or_default();
    let mut codes = std::collections::BTreeSet::new();
    if blueprint.visit_types.is_empty() {
        out.push("visit_type: the blueprint names no visit type".to_owned());
    }
    for (i, v) in blueprint.visit_types.iter().enumerate() {
        let at = format!("visit_type[{i}] ({})", v.code);
        if v.code.trim().is_empty() {
            out.push(format!("{at}.code: empty"));
        }
        if !codes.insert(v.code.to_lowercase()) {
            out.push(format!("{at}.code: {:?} is named twice", v.code));
        }
        if !templates.iter().any(|t| t.id == v.template) {
            let known: Vec<&str> = templates.iter().map(|t| t.id.as_str()).collect();
            out.push(format!("{at}.template: no template {:?}; known: {}", v.template, known.join(", ")));
        }
        for c in &v.required_consents {
            if ConsentCategory::parse(c).is_none() {
                let known: Vec<&str> = ConsentCategory::ALL.iter().map(|c| c.code()).collect();
                out.push(format!(
                    "{at}.required_consents: {c:?} is not a consent category; known: {}",
                    known.join(", ")
                ));
            }
        }
        if v.connections.is_empty() {
            out.push(format!("{at}.connections: none; a visit must reach at least one EHR"));
        }
        for c in &v.connections {
            if !config.connections.iter().any(|k| &k.id == c) {
                out.push(format!("{at}.connections: {c:?} is not a configured [[connections]] id"));
            }
        }
        for a in &v.artifacts {
            if !telechart_sync::plan::artifact_names().any(|n| n == a) {
                let known: Vec<&str> = telechart_sync::plan::artifact_names().collect();
                out.push(format!("{at}.artifacts: {a:?} is not an artifact kind; known: {}", known.join(", ")));
            }
        }
    }
    for (role, permissions) in &blueprint.roles {
        let Ok(r) = role.parse::<Role>() else {
            out.push(format!("roles.{role}: not a role"));
            continue;
        };
        for p in permissions {
            match Permission::ALL.iter().find(|k| k.as_str() == p) {
                None => out.push(format!("roles.{role}: {p:?} is not a permission")),
                Some(k) if !r.allows(*k) => out.push(format!("roles.{role}: the {role} role does not have {p}")),
                Some(_) => {}
            }
        }
    }
    if let Some(bands) = &blueprint.bands
        && let Err(e) = telechart_analytics::bands::validate(bands)
    {
        out.push(e.to_string());
    }
    out
}

/// The bands the alert runner watches: the blueprint's, else the defaults.
pub fn bands(blueprint: Option<&Blueprint>) -> Vec<Band> {
    blueprint.and_then(|b| b.bands.clone()).unwrap_or_else(telechart_analytics::bands::default_bands)
}

/// `telechart blueprint check [FILE]`.
pub async fn check(config: Config, file: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let Some(path) = file.or_else(|| config.blueprint_file.clone()) else {
        eprintln!("error: no blueprint: give its file, or set blueprint_file in the configuration");
        return Ok(ExitCode::from(2));
    };
    let blueprint = match load(&path) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: {e:#}");
            return Ok(ExitCode::from(2));
        }
    };
    let problems = problems(&blueprint, &config);
    if !problems.is_empty() {
        eprintln!("the blueprint {} has {} problem(s):", path.display(), problems.len());
        for p in &problems {
            eprintln!("  {p}");
        }
        return Ok(ExitCode::from(1));
    }
    // Stored contracts, where the database is reachable; the profiles alone otherwise.
    let store = match config.keys.load() {
        Ok(keys) => telechart_store::Store::open(&config.database_url, 1, keys).await.ok(),
        Err(_) => None,
    };
    println!("Site blueprint: {} ({})", blueprint.site, path.display());
    for v in &blueprint.visit_types {
        println!(
            "\nvisit type {:?}: template {}, finishing rule {}",
            v.code,
            v.template,
            match v.finishing_rule {
                telechart_sync::webhooks::OnCallEnded::FinishWhenSigned => "finish when the note is signed",
                telechart_sync::webhooks::OnCallEnded::Finish => "finish when the call ends",
            }
        );
        let consents = if v.required_consents.is_empty() { "none".to_owned() } else { v.required_consents.join(", ") };
        println!("  consents required: {consents}");
        for c in &v.connections {
            let Some(connection) = config.connections.iter().find(|k| &k.id == c) else { continue };
            let profile = telechart_ehr::VendorProfile::parse(&connection.profile)?;
            let stored = match &store {
                Some(s) => s.latest_contract(&config.tenant, c).await.ok().flatten(),
                None => None,
            };
            let (profile, basis) = match stored.and_then(|(v, json)| {
                serde_json::from_str::<telechart_ehr::CapabilityContract>(&json).ok().map(|c| (v, c))
            }) {
                Some((version, contract)) => (contract.narrow(&profile), format!("capability contract v{version}")),
                None => (profile, "its profile alone (no contract yet: `telechart connections show ID`)".to_owned()),
            };
            println!("  → {c} ({}), by {basis}:", connection.profile);
            for a in &v.artifacts {
                if let Some((label, plan)) = telechart_sync::plan::plan_named(a, &profile, connection.mllp.is_some()) {
                    println!("      {a:<20} {label:<40} {}", plan.label());
                }
            }
        }
    }
    println!("\nKPI bands (alerts to the audit alert sinks):");
    for band in bands(Some(&blueprint)) {
        let bound = match (band.below, band.above) {
            (Some(b), _) => format!("below {b}"),
            (_, Some(a)) => format!("above {a}"),
            _ => String::new(),
        };
        let lasting = if band.for_minutes > 0 { format!(" for {} min", band.for_minutes) } else { String::new() };
        println!("  {:<28} {bound} over {} min{lasting}", band.kpi, band.window_minutes);
    }
    if let Some(s) = store {
        s.close().await;
    }
    Ok(ExitCode::SUCCESS)
}
