//! Read-back accuracy: what the EHR kept of what was sent, field by field. Every leaf value we
//! sent (a path like `content[1].attachment.contentType`) is looked up in what the EHR returns
//! on read; missing is *dropped*, different is *changed*. Elements the EHR adds are not ours to
//! judge. Paths only are recorded, never values, so the result holds no PHI.

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Difference {
    Dropped,
    Changed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldDifference {
    pub path: String,
    pub difference: Difference,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadBack {
    pub fields_sent: u32,
    pub fields_kept: u32,
    pub differences: Vec<FieldDifference>,
}

impl ReadBack {
    /// Share of the fields sent that the EHR kept as sent (1.0 when nothing was sent).
    pub fn accuracy(&self) -> f64 {
        if self.fields_sent == 0 { 1.0 } else { f64::from(self.fields_kept) / f64::from(self.fields_sent) }
    }

    pub fn add(&mut self, other: &ReadBack) {
        self.fields_sent += other.fields_sent;
        self.fields_kept += other.fields_kept;
        self.differences.extend(other.differences.iter().cloned());
    }
}

/// Server-owned elements: not what we sent, whatever we put there.
fn server_owned(path: &str) -> bool {
    matches!(path, "id" | "meta.versionId" | "meta.lastUpdated" | "meta.source")
}

/// Compares what was sent with what the EHR kept.
pub fn compare(sent: &Value, kept: &Value) -> ReadBack {
    let mut result = ReadBack::default();
    walk(sent, Some(kept), String::new(), &mut result);
    result
}

fn walk(sent: &Value, kept: Option<&Value>, path: String, out: &mut ReadBack) {
    match sent {
        Value::Object(fields) => {
            for (name, value) in fields {
                let child = if path.is_empty() { name.clone() } else { format!("{path}.{name}") };
                walk(value, kept.and_then(|k| k.get(name)), child, out);
            }
        }
        Value::Array(items) => {
            for (i, value) in items.iter().enumerate() {
                walk(value, kept.and_then(|k| k.get(i)), format!("{path}[{i}]"), out);
            }
        }
        leaf => {
            if server_owned(&path) {
                return;
            }
            out.fields_sent += 1;
            match kept {
                Some(k) if k == leaf => out.fields_kept += 1,
                Some(Value::Null) | None => {
                    out.differences.push(FieldDifference { path, difference: Difference::Dropped })
                }
                Some(_) => out.differences.push(FieldDifference { path, difference: Difference::Changed }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dropped_and_changed_fields_are_named_by_path() {
        let sent = json!({"resourceType": "DocumentReference", "id": "x", "status": "current",
            "content": [{"attachment": {"contentType": "text/plain", "data": "YQ=="}},
                        {"attachment": {"contentType": "application/pdf", "data": "JVBE"}}]});
        let kept = json!({"resourceType": "DocumentReference", "id": "123", "status": "current",
            "meta": {"versionId": "1"},
            "content": [{"attachment": {"contentType": "text/plain; charset=utf-8", "data": "YQ=="}}]});
        let r = compare(&sent, &kept);
        assert_eq!((r.fields_sent, r.fields_kept), (6, 3));
        assert_eq!(
            r.differences[0],
            FieldDifference { path: "content[0].attachment.contentType".into(), difference: Difference::Changed }
        );
        assert_eq!(r.differences[1].path, "content[1].attachment.contentType");
        assert_eq!(r.differences[1].difference, Difference::Dropped);
        assert!((r.accuracy() - 0.5).abs() < 1e-9);
        assert_eq!(compare(&sent, &sent).accuracy(), 1.0);
    }
}
