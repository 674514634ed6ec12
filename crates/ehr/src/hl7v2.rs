//! HL7 v2.5.1 over MLLP: the planned fallback where an EHR's FHIR API takes neither the note nor
//! the vitals. MDM^T02 carries a signed note (TXA + OBX TX lines), ORU^R01 carries vital signs
//! (OBX NM with LOINC and UCUM); both with MSH, PID and PV1. Messages are framed `VT … FS CR`, and
//! the ACK's MSA-1 decides: AA done, AE/AR refused (with MSA-3 / ERR text).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::EhrError;

const START: u8 = 0x0B;
const END: [u8; 2] = [0x1C, 0x0D];

/// HL7 escape of the delimiters `| ^ ~ \ &` and line breaks inside a field.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\E\\"),
            '|' => out.push_str("\\F\\"),
            '^' => out.push_str("\\S\\"),
            '&' => out.push_str("\\T\\"),
            '~' => out.push_str("\\R\\"),
            '\r' => {}
            '\n' => out.push_str("\\.br\\"),
            c => out.push(c),
        }
    }
    out
}

/// Who and where a message is about.
#[derive(Debug, Clone)]
pub struct Hl7Context<'a> {
    pub sending_facility: &'a str,
    pub receiving_facility: &'a str,
    /// The EHR's patient id (PID-3).
    pub patient_id: &'a str,
    /// The visit number (PV1-19): the EHR's Encounter id when known, else the appointment.
    pub visit_number: &'a str,
    /// `yyyymmddhhmmss`.
    pub timestamp: String,
    pub control_id: &'a str,
}

fn header(ctx: &Hl7Context<'_>, message_type: &str) -> Vec<String> {
    vec![
        format!(
            "MSH|^~\\&|TELECHART|{}|EHR|{}|{}||{message_type}|{}|P|2.5.1",
            escape(ctx.sending_facility),
            escape(ctx.receiving_facility),
            ctx.timestamp,
            escape(ctx.control_id)
        ),
        format!("PID|1||{}", escape(ctx.patient_id)),
        format!("PV1|1|O|||||||||||||||||{}", escape(ctx.visit_number)),
    ]
}

/// MDM^T02: a new, signed document (the visit note), its text as OBX TX lines.
pub fn mdm_t02(ctx: &Hl7Context<'_>, title: &str, author: &str, text: &str) -> String {
    let mut segments = header(ctx, "MDM^T02^MDM_T02");
    segments.insert(1, format!("EVN|T02|{}", ctx.timestamp));
    segments.push(format!(
        "TXA|1|PN^Progress note|TX|{}||||||{}||{}||||||AU",
        ctx.timestamp,
        escape(author),
        escape(ctx.control_id)
    ));
    for (i, line) in std::iter::once(title).chain(text.lines()).enumerate() {
        segments.push(format!("OBX|{}|TX|11506-3^Progress note^LN||{}||||||F", i + 1, escape(line)));
    }
    segments.join("\r")
}

/// One vital sign for ORU^R01: LOINC code and name, value, UCUM unit.
#[derive(Debug, Clone)]
pub struct VitalReading<'a> {
    pub loinc: &'a str,
    pub name: &'a str,
    pub value: String,
    pub ucum: &'a str,
    /// `yyyymmddhhmmss`.
    pub observed: String,
}

/// ORU^R01: vital signs, one OBX NM per value (a blood pressure as its two components).
pub fn oru_r01(ctx: &Hl7Context<'_>, vitals: &[VitalReading<'_>]) -> String {
    let mut segments = header(ctx, "ORU^R01^ORU_R01");
    segments.push(format!("OBR|1|{}||8716-3^Vital signs^LN|||{}", escape(ctx.control_id), ctx.timestamp));
    for (i, v) in vitals.iter().enumerate() {
        segments.push(format!(
            "OBX|{}|NM|{}^{}^LN||{}|{}^{}^UCUM|||||F|||{}",
            i + 1,
            escape(v.loinc),
            escape(v.name),
            escape(&v.value),
            escape(v.ucum),
            escape(v.ucum),
            v.observed
        ));
    }
    segments.join("\r")
}

/// Sends one message over MLLP and reads its ACK. AA → Ok; AE/AR → Refused with the reason.
pub async fn send(address: &str, message: &str, timeout: Duration) -> Result<(), EhrError> {
    let unreachable = |reason: String| EhrError::Unreachable { method: "mllp", resource_type: "HL7v2".into(), reason };
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(address).await.map_err(|e| unreachable(e.to_string()))?;
        let mut frame = Vec::with_capacity(message.len() + 3);
        frame.push(START);
        frame.extend_from_slice(message.as_bytes());
        frame.extend_from_slice(&END);
        stream.write_all(&frame).await.map_err(|e| unreachable(e.to_string()))?;
        // From here, the EHR may have kept the message: a lost ACK is an unknown outcome.
        let lost = |reason: String| EhrError::OutcomeUnknown {
            method: "mllp",
            resource_type: "HL7v2".into(),
            reason,
            retry_after: None,
        };
        let mut reply = Vec::new();
        let mut buffer = [0_u8; 4096];
        loop {
            let n = stream.read(&mut buffer).await.map_err(|e| lost(e.to_string()))?;
            if n == 0 {
                return Err(lost("the connection closed before an ACK".into()));
            }
            reply.extend_from_slice(&buffer[..n]);
            if reply.ends_with(&END) {
                break;
            }
            if reply.len() > 1 << 20 {
                return Err(lost("an ACK larger than 1 MiB".into()));
            }
        }
        let text = String::from_utf8_lossy(&reply);
        let msa = text
            .trim_matches(|c| c == START as char || c == '\u{1c}' || c == '\r')
            .split('\r')
            .find(|s| s.starts_with("MSA|"));
        let fields: Vec<&str> = msa.map(|m| m.split('|').collect()).unwrap_or_default();
        match fields.get(1).copied() {
            Some("AA" | "CA") => Ok(()),
            Some(code @ ("AE" | "AR" | "CE" | "CR")) => Err(EhrError::Refused {
                method: "mllp",
                resource_type: "HL7v2".into(),
                status: if code.ends_with('R') { 422 } else { 400 },
                message: format!("ACK {code}: {}", fields.get(3).copied().unwrap_or("refused")),
            }),
            _ => Err(lost("the reply has no MSA segment".into())),
        }
    };
    tokio::time::timeout(timeout, exchange).await.map_err(|_| EhrError::OutcomeUnknown {
        method: "mllp",
        resource_type: "HL7v2".into(),
        reason: "timed out".into(),
        retry_after: None,
    })?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Hl7Context<'static> {
        Hl7Context {
            sending_facility: "TELECHART",
            receiving_facility: "CLINIC",
            patient_id: "p-1",
            visit_number: "enc-9",
            timestamp: "20261126100000".into(),
            control_id: "art-1",
        }
    }

    #[test]
    fn messages_have_the_segments_in_order_and_escape_delimiters() {
        let mdm = mdm_t02(&ctx(), "Visit note", "Practitioner/d1", "BP 128/82 | stable\nPlan: follow-up & labs");
        let segments: Vec<&str> = mdm.split('\r').map(|s| &s[..3]).collect();
        assert_eq!(segments, ["MSH", "EVN", "PID", "PV1", "TXA", "OBX", "OBX", "OBX"]);
        assert!(mdm.contains("BP 128/82 \\F\\ stable") && mdm.contains("follow-up \\T\\ labs"));
        let oru = oru_r01(
            &ctx(),
            &[VitalReading {
                loinc: "8867-4",
                name: "Heart rate",
                value: "72".into(),
                ucum: "/min",
                observed: "20261126100000".into(),
            }],
        );
        assert!(oru.starts_with("MSH|^~\\&|TELECHART|") && oru.contains("|ORU^R01^ORU_R01|art-1|P|2.5.1"));
        assert!(oru.contains("OBX|1|NM|8867-4^Heart rate^LN||72|/min^/min^UCUM|||||F|||20261126100000"));
    }
}
