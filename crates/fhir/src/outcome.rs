//! OperationOutcome: the one shape every FHIR error takes, ours and the EHR's.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IssueSeverity {
    Fatal,
    Error,
    Warning,
    Information,
}

/// R4 `IssueType` codes that Telechart emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IssueType {
    Invalid,
    Structure,
    Required,
    Value,
    Processing,
    NotSupported,
    NotFound,
    Conflict,
    Duplicate,
    BusinessRule,
    Security,
    Forbidden,
    Throttled,
    Exception,
    Transient,
    Timeout,
    Informational,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutcomeIssue {
    pub severity: IssueSeverity,
    pub code: IssueType,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diagnostics: Option<String>,
    /// FHIRPath-ish locations of the offending element(s), e.g. `vitals[0].value`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expression: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OperationOutcome {
    pub resource_type: crate::ResourceTypeTag<OperationOutcomeTag>,
    pub issue: Vec<OutcomeIssue>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OperationOutcomeTag;
impl crate::ResourceName for OperationOutcomeTag {
    const NAME: &'static str = "OperationOutcome";
}

impl OperationOutcome {
    pub fn error(code: IssueType, diagnostics: impl Into<String>, expression: Option<&str>) -> Self {
        OperationOutcome {
            resource_type: Default::default(),
            issue: vec![OutcomeIssue {
                severity: IssueSeverity::Error,
                code,
                diagnostics: Some(diagnostics.into()),
                expression: expression.map(|e| vec![e.to_owned()]).unwrap_or_default(),
            }],
        }
    }

    /// Joins every issue's diagnostics, for error messages built from an EHR's reply.
    pub fn summary(&self) -> String {
        self.issue
            .iter()
            .map(|i| i.diagnostics.clone().unwrap_or_else(|| format!("{:?}", i.code)))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_serializes_as_r4() {
        let outcome = OperationOutcome::error(IssueType::NotFound, "no Appointment/9", Some("appointment"));
        let json = serde_json::to_value(&outcome).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"not-found","diagnostics":"no Appointment/9","expression":["appointment"]}]})
        );
    }
}
