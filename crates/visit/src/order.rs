//! Orders placed in the visit — lab, imaging and referral as ServiceRequest, prescriptions as
//! MedicationRequest — tracked to completion: the worker writes them, the order tracker reads
//! back their status and results (DiagnosticReport / Observation `basedOn` them).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use telechart_fhir::parse_reference;

use crate::VisitError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OrderKind {
    Lab,
    Imaging,
    Referral,
    Medication,
}

impl OrderKind {
    pub fn resource_type(self) -> &'static str {
        match self {
            OrderKind::Medication => "MedicationRequest",
            _ => "ServiceRequest",
        }
    }

    /// The code system an order of this kind is coded in.
    fn system(self) -> &'static str {
        match self {
            OrderKind::Lab => telechart_fhir::terminology::LOINC,
            OrderKind::Imaging | OrderKind::Referral => telechart_fhir::terminology::SNOMED,
            OrderKind::Medication => telechart_fhir::terminology::RXNORM,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OrderInput {
    pub kind: OrderKind,
    /// LOINC (lab), SNOMED CT (imaging, referral) or RxNorm (medication) code.
    pub code: String,
    pub display: String,
    /// For medications: the sig, e.g. "1 tablet by mouth daily".
    #[serde(default)]
    pub dosage: Option<String>,
    #[serde(default)]
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OrdersInput {
    pub orders: Vec<OrderInput>,
    /// `Practitioner/{id}` who orders.
    pub requester: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Order {
    /// Not `kind`: that names the artifact variant in the stored form.
    #[serde(rename = "orderKind")]
    pub kind: OrderKind,
    pub system: String,
    pub code: String,
    pub display: String,
    pub dosage: Option<String>,
    pub note: Option<String>,
    pub requester: String,
    pub authored_at: DateTime<Utc>,
}

impl Order {
    /// What was ordered as a person reads it: the display, then the dosage when there is one.
    pub fn display_with_dosage(&self) -> String {
        match &self.dosage {
            Some(dosage) => format!("{} {dosage}", self.display),
            None => self.display.clone(),
        }
    }
}

fn code_ok(kind: OrderKind, code: &str) -> bool {
    match kind {
        // LOINC: digits, a dash, one check digit.
        OrderKind::Lab => code.split_once('-').is_some_and(|(n, c)| {
            !n.is_empty()
                && n.len() <= 7
                && n.chars().all(|d| d.is_ascii_digit())
                && c.len() == 1
                && c.chars().all(|d| d.is_ascii_digit())
        }),
        // SNOMED CT and RxNorm: digits only.
        _ => !code.is_empty() && code.len() <= 18 && code.chars().all(|d| d.is_ascii_digit()),
    }
}

pub fn validate_orders(input: OrdersInput, now: DateTime<Utc>) -> Result<Vec<Order>, VisitError> {
    if input.orders.is_empty() {
        return Err(VisitError::invalid("orders", "at least one order is required"));
    }
    if !matches!(parse_reference(&input.requester), Some(("Practitioner", _))) {
        return Err(VisitError::invalid("requester", "must be a reference Practitioner/{id}"));
    }
    input
        .orders
        .into_iter()
        .enumerate()
        .map(|(i, o)| {
            let path = format!("orders[{i}]");
            if !code_ok(o.kind, o.code.trim()) {
                return Err(VisitError::invalid(
                    format!("{path}.code"),
                    format!("{:?} is not a {} code", o.code, o.kind.system()),
                ));
            }
            if o.display.trim().is_empty() {
                return Err(VisitError::invalid(format!("{path}.display"), "must not be empty"));
            }
            match (o.kind, &o.dosage) {
                (OrderKind::Medication, None) => {
                    return Err(VisitError::invalid(format!("{path}.dosage"), "a prescription needs its dosage"));
                }
                (OrderKind::Medication, _) | (_, None) => {}
                (_, Some(_)) => {
                    return Err(VisitError::invalid(format!("{path}.dosage"), "only medications take a dosage"));
                }
            }
            Ok(Order {
                kind: o.kind,
                system: o.kind.system().to_owned(),
                code: o.code.trim().to_owned(),
                display: o.display.trim().to_owned(),
                dosage: o.dosage,
                note: o.note,
                requester: input.requester.clone(),
                authored_at: now,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(kind: OrderKind, code: &str, dosage: Option<&str>) -> OrderInput {
        OrderInput { kind, code: code.into(), display: "x".into(), dosage: dosage.map(str::to_owned), note: None }
    }

    #[test]
    fn orders_are_coded_in_their_kind_system() {
        let now: DateTime<Utc> = "2026-11-26T10:00:00Z".parse().unwrap();
        let ok = validate_orders(
            OrdersInput {
                orders: vec![
                    order(OrderKind::Lab, "4548-4", None),
                    order(OrderKind::Medication, "860975", Some("1 tab daily")),
                ],
                requester: "Practitioner/d1".into(),
            },
            now,
        )
        .unwrap();
        assert_eq!(ok[0].system, "http://loinc.org");
        assert_eq!(ok[1].kind.resource_type(), "MedicationRequest");
        for (bad, field) in [
            (order(OrderKind::Lab, "HbA1c", None), "orders[0].code"),
            (order(OrderKind::Medication, "860975", None), "orders[0].dosage"),
            (order(OrderKind::Imaging, "363680008", Some("daily")), "orders[0].dosage"),
        ] {
            let err = validate_orders(OrdersInput { orders: vec![bad], requester: "Practitioner/d1".into() }, now)
                .unwrap_err();
            assert_eq!(err.field(), Some(field));
        }
        // Every order survives its stored form.
        for order in ok {
            let stored = serde_json::to_string(&crate::Artifact::Order(order.clone())).unwrap();
            assert_eq!(serde_json::from_str::<crate::Artifact>(&stored).unwrap(), crate::Artifact::Order(order));
        }
    }
}
