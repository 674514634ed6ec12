//! The sandbox's resource store: every version of every resource, an identifier index, and an
//! optional NDJSON journal so a sandbox started with `--data` keeps what it was sent.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::sync::Arc;

use serde_json::{Value, json};

use crate::SandboxError;

#[derive(Default)]
pub struct Db {
    /// type → id → versions (index 0 is version 1).
    resources: HashMap<String, BTreeMap<String, Vec<Arc<Value>>>>,
    /// (type, `system|value` or `|value`-less value) → ids.
    identifiers: HashMap<(String, String), Vec<String>>,
    next_id: u64,
    journal: Option<File>,
    /// Count of writes per type, for `/_sandbox/stats`.
    pub writes: BTreeMap<String, u64>,
}

impl Db {
    /// Opens (or creates) a journal and replays it. Returns the Db and whether it held anything.
    pub fn with_journal(path: &Path) -> Result<(Db, bool), SandboxError> {
        let mut db = Db::default();
        let mut replayed = false;
        if path.exists() {
            let file = File::open(path).map_err(|e| SandboxError::Journal(format!("{}: {e}", path.display())))?;
            for (n, line) in BufReader::new(file).lines().enumerate() {
                let line = line.map_err(|e| SandboxError::Journal(format!("{}: {e}", path.display())))?;
                if line.trim().is_empty() {
                    continue;
                }
                let resource: Value = serde_json::from_str(&line)
                    .map_err(|e| SandboxError::Journal(format!("{} line {}: {e}", path.display(), n + 1)))?;
                db.put_version(resource);
                replayed = true;
            }
        }
        let journal = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| SandboxError::Journal(format!("{}: {e}", path.display())))?;
        db.journal = Some(journal);
        Ok((db, replayed))
    }

    pub fn mint_id(&mut self) -> String {
        self.next_id += 1;
        format!("{}", 10_000 + self.next_id)
    }

    /// Stores a resource that already carries `id` and `meta.versionId` (replay and writes alike).
    fn put_version(&mut self, resource: Value) -> Arc<Value> {
        let rtype = resource["resourceType"].as_str().unwrap_or_default().to_owned();
        let id = resource["id"].as_str().unwrap_or_default().to_owned();
        if let Ok(n) = id.parse::<u64>() {
            self.next_id = self.next_id.max(n.saturating_sub(10_000));
        }
        for token in identifier_tokens(&resource) {
            let ids = self.identifiers.entry((rtype.clone(), token)).or_default();
            if !ids.contains(&id) {
                ids.push(id.clone());
            }
        }
        let resource = Arc::new(resource);
        self.resources.entry(rtype).or_default().entry(id).or_default().push(resource.clone());
        resource
    }

    /// Writes a new version: sets `meta.versionId` and `meta.lastUpdated`, journals, indexes.
    pub fn write(
        &mut self,
        mut resource: Value,
        version: usize,
        last_updated: &str,
    ) -> Result<Arc<Value>, SandboxError> {
        let meta = resource
            .as_object_mut()
            .map(|o| o.entry("meta").or_insert_with(|| json!({})))
            .and_then(Value::as_object_mut)
            .ok_or_else(|| SandboxError::Journal("resource is not an object".into()))?;
        meta.insert("versionId".into(), Value::String(version.to_string()));
        meta.insert("lastUpdated".into(), Value::String(last_updated.to_owned()));
        if let Some(journal) = &mut self.journal {
            let line = serde_json::to_string(&resource).map_err(|e| SandboxError::Journal(e.to_string()))?;
            writeln!(journal, "{line}").map_err(|e| SandboxError::Journal(e.to_string()))?;
        }
        let rtype = resource["resourceType"].as_str().unwrap_or_default().to_owned();
        *self.writes.entry(rtype).or_default() += 1;
        Ok(self.put_version(resource))
    }

    pub fn latest(&self, rtype: &str, id: &str) -> Option<&Arc<Value>> {
        self.resources.get(rtype)?.get(id)?.last()
    }

    pub fn version(&self, rtype: &str, id: &str, version: usize) -> Option<&Arc<Value>> {
        self.resources.get(rtype)?.get(id)?.get(version.checked_sub(1)?)
    }

    pub fn version_count(&self, rtype: &str, id: &str) -> usize {
        self.resources.get(rtype).and_then(|m| m.get(id)).map_or(0, Vec::len)
    }

    pub fn exists(&self, rtype: &str, id: &str) -> bool {
        self.version_count(rtype, id) > 0
    }

    /// Latest versions of every resource of a type, in id order.
    pub fn all(&self, rtype: &str) -> impl Iterator<Item = &Arc<Value>> {
        self.resources.get(rtype).into_iter().flat_map(|m| m.values().filter_map(|v| v.last()))
    }

    /// Ids whose *current* version carries the identifier token.
    pub fn by_identifier(&self, rtype: &str, token: &str) -> Vec<&Arc<Value>> {
        let Some(ids) = self.identifiers.get(&(rtype.to_owned(), token.to_owned())) else {
            return Vec::new();
        };
        ids.iter()
            .filter_map(|id| self.latest(rtype, id))
            .filter(|r| identifier_tokens(r).iter().any(|t| t == token))
            .collect()
    }

    pub fn count(&self, rtype: &str) -> usize {
        self.resources.get(rtype).map_or(0, BTreeMap::len)
    }

    pub fn types(&self) -> impl Iterator<Item = &String> {
        self.resources.keys()
    }
}

/// `system|value` and bare `value` for each identifier.
pub fn identifier_tokens(resource: &Value) -> Vec<String> {
    let mut tokens = Vec::new();
    if let Some(list) = resource.get("identifier").and_then(Value::as_array) {
        for identifier in list {
            let Some(value) = identifier.get("value").and_then(Value::as_str) else { continue };
            if let Some(system) = identifier.get("system").and_then(Value::as_str) {
                tokens.push(format!("{system}|{value}"));
            }
            tokens.push(value.to_owned());
        }
    }
    tokens
}
